package filtertest

import (
	"testing"

	"github.com/vdc-project/vdc/hva/filter"
)

func TestRecorderConformance(t *testing.T) {
	Run(t, func(t *testing.T) filter.Filter { return NewRecorder() })
}
