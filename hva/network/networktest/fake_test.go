package networktest

import (
	"testing"

	"github.com/vdc-project/vdc/hva/network"
)

func TestFakeConformance(t *testing.T) {
	Run(t, Harness{
		New: func(t *testing.T) network.Links { return NewFake() },
		AddDevice: func(t *testing.T, l network.Links, name string) {
			l.(*Fake).AddDevice(name, "dummy")
		},
	})
}
