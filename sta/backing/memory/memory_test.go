package memory_test

import (
	"testing"

	"github.com/vdc-project/vdc/sta/backing"
	"github.com/vdc-project/vdc/sta/backing/backingtest"
	"github.com/vdc-project/vdc/sta/backing/memory"
)

func TestConformance(t *testing.T) {
	backingtest.Run(t, backingtest.Options{
		New: func(t *testing.T) backing.Store { return memory.New(1 << 30) },
		WriteAt: func(t *testing.T, s backing.Store, v backing.Volume, off int64, p []byte) {
			if err := s.(*memory.Store).WriteAt(v.ID, off, p); err != nil {
				t.Fatal(err)
			}
		},
	})
}
