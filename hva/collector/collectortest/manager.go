package collectortest

import (
	"testing"

	"github.com/vdc-project/vdc/common/agent/agenttest"
)

// Manager stands in for a dcmgr on loopback (common/agent/agenttest).
type Manager = agenttest.Manager

// StartManager serves f as a manager until the test ends. token, if set, is
// required from callers.
func StartManager(t testing.TB, f *Fake, token string) *Manager {
	return agenttest.StartManager(t, f, token)
}
