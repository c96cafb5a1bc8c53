package memory_test

import (
	"testing"

	"github.com/vdc-project/vdc/sta/target"
	"github.com/vdc-project/vdc/sta/target/memory"
	"github.com/vdc-project/vdc/sta/target/targettest"
)

func TestConformance(t *testing.T) {
	targettest.Run(t, targettest.Options{
		New:    func(t *testing.T) target.Target { return memory.New(nil) },
		Prefix: "iqn.2026-01.test.st",
	})
}
