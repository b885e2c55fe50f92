package upstream

import "time"

// Backoff returns the delay before retry number n (1 for the first retry):
// fully jittered exponential back-off, as Envoy computes it. The delay is
// uniform in [0, (2^n - 1) x base), capped at max; rnd is a uniformly random
// 64-bit value supplied by the caller, so the function is pure.
func Backoff(n int, base, max time.Duration, rnd uint64) time.Duration {
	if base <= 0 {
		return 0
	}
	if n < 1 {
		n = 1
	}
	if max < base {
		max = base
	}
	// Once (2^n - 1) x base exceeds max, growing n changes nothing.
	ceiling := base
	for i := 1; i < n && ceiling <= max; i++ {
		ceiling = ceiling*2 + base
	}
	d := time.Duration(rnd % uint64(ceiling))
	return min(d, max)
}
