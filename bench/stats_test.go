package bench

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 100 * time.Millisecond}, {99, 198 * time.Millisecond}, {100, 200 * time.Millisecond}, {0.1, time.Millisecond}} {
		if got := Percentile(d, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	five := []time.Duration{1, 2, 3, 4, 5}
	if got := Percentile(five, 99); got != 5 {
		t.Errorf("p99 of 5 values = %v, want the maximum", got)
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v", got)
	}
}

func TestSummarize(t *testing.T) {
	if s := Summarize([]float64{3, 1, 2}); s != (Summary{1, 2, 3}) {
		t.Errorf("odd count: %+v", s)
	}
	if s := Summarize([]float64{4, 1, 2, 3}); s != (Summary{1, 2.5, 4}) {
		t.Errorf("even count: %+v", s)
	}
	s := Summarize(nil)
	if !math.IsNaN(s.Median) {
		t.Errorf("empty: %+v", s)
	}
	b, err := json.Marshal(s)
	if err != nil || string(b) != `{"max":null,"median":null,"min":null}` {
		t.Errorf("empty summary as JSON = %s, %v", b, err)
	}
}

func TestLoadCountsWindowsAndErrors(t *testing.T) {
	l := Load{
		Workers: 4, Warmup: 20 * time.Millisecond, Window: 50 * time.Millisecond, Reps: 3,
		Op: func(ctx context.Context, w, seq int) error {
			time.Sleep(time.Millisecond)
			if w == 0 {
				return errors.New("worker 0 always fails")
			}
			return nil
		},
	}
	reps, err := l.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 3 {
		t.Fatalf("%d reps, want 3", len(reps))
	}
	for i, r := range reps {
		if r.Ops == 0 || r.Errors == 0 || r.Rate <= 0 || r.P50ms <= 0 || r.P99ms < r.P50ms {
			t.Errorf("rep %d: %+v", i, r)
		}
	}
	row := newRow("x", reps)
	if row.Ops() == 0 || row.Errors == 0 || row.Rate.Min > row.Rate.Median || row.Rate.Median > row.Rate.Max {
		t.Errorf("row: %+v", row)
	}
}

func TestLoadStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l := Load{Workers: 2, Window: time.Hour, Reps: 1, Op: func(ctx context.Context, _, _ int) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	if _, err := l.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestRecordSize(t *testing.T) {
	b, err := json.Marshal(newRecord("w001-000000042"))
	if err != nil || len(b) != recordBytes {
		t.Fatalf("record is %d bytes (%v), want %d", len(b), err, recordBytes)
	}
}

func TestBenchPublicKeyIsAuthorizedKeysLine(t *testing.T) {
	f := strings.Fields(benchPublicKey())
	if len(f) != 3 || f[0] != "ssh-ed25519" {
		t.Fatalf("key = %q", f)
	}
	blob, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		t.Fatal(err)
	}
	n := binary.BigEndian.Uint32(blob)
	if string(blob[4:4+n]) != "ssh-ed25519" || binary.BigEndian.Uint32(blob[4+n:]) != 32 || len(blob) != 4+int(n)+4+32 {
		t.Fatalf("blob does not hold an ed25519 key: %x", blob)
	}
}
