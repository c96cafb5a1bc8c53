package bench

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc CPU times (100 on Linux).
const clockTicks = 100

// cpuSample is the machine's busy CPU time and this process's CPU time.
type cpuSample struct {
	at        time.Time
	busy, own float64 // ticks
	ok        bool
}

// sampleCPU reads /proc/stat and /proc/self/stat; ok is false off Linux.
func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	f := strings.Fields(line)
	// cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return s
	}
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, _ := strconv.ParseFloat(f[i], 64)
		s.busy += v
	}
	self, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return s
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th fields of the whole line.
	rest := string(self)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	g := strings.Fields(rest)
	if len(g) < 13 {
		return s
	}
	ut, _ := strconv.ParseFloat(g[11], 64)
	st, _ := strconv.ParseFloat(g[12], 64)
	s.own = ut + st
	s.ok = true
	return s
}

// cpuUse is the average number of cores used between two samples by this
// process and by everything else on the machine.
type cpuUse struct {
	Own   float64 `json:"own_cores"`
	Other float64 `json:"other_cores"`
}

func cpuSince(a cpuSample) (cpuUse, bool) {
	b := sampleCPU()
	secs := b.at.Sub(a.at).Seconds()
	if !a.ok || !b.ok || secs <= 0 {
		return cpuUse{}, false
	}
	own := (b.own - a.own) / clockTicks / secs
	other := (b.busy-a.busy)/clockTicks/secs - own
	return cpuUse{Own: own, Other: max(other, 0)}, true
}
