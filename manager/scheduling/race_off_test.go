//go:build !race

package scheduling

// raceEnabled is set when the tests run under the race detector, which
// slows the loopback RPC and raft path several times over.
const raceEnabled = false
