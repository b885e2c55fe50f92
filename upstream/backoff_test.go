package upstream

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestBackoffBounds checks the delays over many samples against Envoy's
// bounds: retry n is uniform in [0, (2^n-1) x base), capped at max.
func TestBackoffBounds(t *testing.T) {
	const base, max = 25 * time.Millisecond, 250 * time.Millisecond
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		n     int
		upper time.Duration
	}{
		{1, 25 * time.Millisecond},
		{2, 75 * time.Millisecond},
		{3, 175 * time.Millisecond},
		{4, max},
		{10, max},
	} {
		var lo, hi time.Duration = 1 << 62, 0
		var sum time.Duration
		const samples = 20000
		for range samples {
			d := Backoff(c.n, base, max, r.Uint64())
			if d < 0 || d > c.upper || (c.upper < max && d >= c.upper) {
				t.Fatalf("retry %d: delay %v outside [0, %v)", c.n, d, c.upper)
			}
			lo, hi = min(lo, d), maxDur(hi, d)
			sum += d
		}
		// Spread: the samples reach near both ends of the interval.
		if lo > c.upper/20 || hi < c.upper*9/10 {
			t.Errorf("retry %d: samples span [%v, %v], want close to [0, %v)", c.n, lo, hi, c.upper)
		}
		if c.n <= 3 {
			mean := sum / samples
			if want := c.upper / 2; mean < want*9/10 || mean > want*11/10 {
				t.Errorf("retry %d: mean %v, want about %v (uniform)", c.n, mean, want)
			}
		}
	}
}

func maxDur(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

func TestBackoffDegenerate(t *testing.T) {
	if d := Backoff(3, 0, time.Second, 12345); d != 0 {
		t.Errorf("zero base: %v, want 0", d)
	}
	if d := Backoff(0, 10*time.Millisecond, 5*time.Millisecond, 7); d >= 10*time.Millisecond {
		t.Errorf("max below base: %v", d)
	}
}

func BenchmarkBackoff(b *testing.B) {
	b.ReportAllocs()
	for i := range b.N {
		Backoff(i%8+1, 25*time.Millisecond, 250*time.Millisecond, uint64(i)*0x9e3779b97f4a7c15)
	}
}
