package stats

import (
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
)

// DefaultBounds returns the bucket upper bounds Envoy gives its latency
// histograms: 0.5, 1, 5, 10, 25, 50, 100, 250, 500 ms, 1, 2.5, 5, 10, 30,
// 60 s, 5, 10, 30, 60 min. Observations above the last land in the
// overflow (+Inf) bucket.
func DefaultBounds() []time.Duration {
	ms := []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
		30000, 60000, 300000, 600000, 1800000, 3600000}
	out := make([]time.Duration, len(ms))
	for i, v := range ms {
		out[i] = time.Duration(v * float64(time.Millisecond))
	}
	return out
}

// Histogram records durations into fixed buckets. The zero Histogram
// discards observations, so optional stats need no nil checks.
type Histogram struct{ h *histogram }

// histogram is a registered histogram's bounds and slots. Buckets are not
// cumulative: buckets[i] counts observations d with bounds[i-1] < d <=
// bounds[i], and the last one those above every bound. The count is the
// buckets' sum, so a reader never sees a count that disagrees with them.
type histogram struct {
	bounds  []time.Duration
	buckets []*atomic.Uint64 // len(bounds)+1
	sumUs   *atomic.Uint64   // sum of observations in microseconds
}

// Observe records one duration: a scan of the bounds (short ones, the
// common case, stop early) and two atomic adds. It takes no lock and does
// not allocate. A negative duration counts as zero.
func (h Histogram) Observe(d time.Duration) {
	hh := h.h
	if hh == nil {
		return
	}
	if d < 0 {
		d = 0
	}
	i := 0
	for i < len(hh.bounds) && d > hh.bounds[i] {
		i++
	}
	hh.buckets[i].Add(1)
	// Microseconds: a uint64 of them holds 584,000 years of summed
	// latency, where nanoseconds would wrap within months on a busy proxy.
	hh.sumUs.Add(uint64(d / time.Microsecond))
}

// Snapshot returns the histogram's current counts.
func (h Histogram) Snapshot() HistogramSnapshot {
	if h.h == nil {
		return HistogramSnapshot{}
	}
	return h.h.snapshot()
}

// HistogramSnapshot is a histogram's counts at one moment.
type HistogramSnapshot struct {
	// Bounds are the bucket upper bounds, ascending.
	Bounds []time.Duration
	// Counts has one entry per bucket, not cumulative: Counts[i] counts
	// observations d with Bounds[i-1] < d <= Bounds[i]; the last entry
	// (index len(Bounds)) counts those above every bound.
	Counts []uint64
	// Count is the number of observations, the sum of Counts.
	Count uint64
	// Sum is the sum of the observations (to the microsecond).
	Sum time.Duration
}

func (hh *histogram) snapshot() HistogramSnapshot {
	s := HistogramSnapshot{Bounds: slices.Clone(hh.bounds), Counts: make([]uint64, len(hh.buckets))}
	for i, b := range hh.buckets {
		s.Counts[i] = b.Load()
		s.Count += s.Counts[i]
	}
	s.Sum = time.Duration(hh.sumUs.Load()) * time.Microsecond
	return s
}

// Cumulative returns, for each bound, the number of observations at or
// below it (Prometheus' le buckets; the +Inf bucket is Count).
func (s HistogramSnapshot) Cumulative() []uint64 {
	out := make([]uint64, len(s.Bounds))
	var c uint64
	for i := range s.Bounds {
		c += s.Counts[i]
		out[i] = c
	}
	return out
}

// Quantile estimates the q-quantile (0 <= q <= 1) from the buckets as
// Prometheus' histogram_quantile does: linear interpolation inside the
// bucket that holds the rank, the first bucket starting at zero. A rank in
// the overflow bucket yields the highest bound, all that is known of it. An
// empty histogram yields 0.
func (s HistogramSnapshot) Quantile(q float64) time.Duration {
	if s.Count == 0 || len(s.Bounds) == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := q * float64(s.Count)
	var cum uint64
	for i, c := range s.Counts {
		if c == 0 {
			continue
		}
		if float64(cum+c) >= rank {
			if i == len(s.Bounds) {
				break
			}
			var lo time.Duration
			if i > 0 {
				lo = s.Bounds[i-1]
			}
			hi := s.Bounds[i]
			frac := (rank - float64(cum)) / float64(c)
			return lo + time.Duration(frac*float64(hi-lo))
		}
		cum += c
	}
	return s.Bounds[len(s.Bounds)-1]
}

// Histogram registers (or finds) a histogram with the given bucket upper
// bounds (ascending, positive; DefaultBounds gives Envoy's). It takes
// len(bounds)+2 slots: one counter per bucket, the overflow bucket and the
// sum. With an Allocator they are allocated as counters under the metric's
// key plus "\x01le=<bound in ms>", "\x01le=+Inf" and "\x01sum_us", so a hot
// restart child that registers the same histogram continues its counts.
// It panics only on programming errors: bad bounds, the same metric
// registered as another kind or with other bounds, or no slot left.
func (s *Store) Histogram(name, help string, bounds []time.Duration, labels ...Label) Histogram {
	h, err := s.registerHistogram(name, help, bounds, labels)
	if err != nil {
		panic(err)
	}
	return Histogram{h}
}

func (s *Store) registerHistogram(name, help string, bounds []time.Duration, labels []Label) (*histogram, error) {
	if len(bounds) == 0 {
		return nil, fmt.Errorf("stats: histogram %s: no bucket bounds", name)
	}
	for i, b := range bounds {
		if b <= 0 || (i > 0 && b <= bounds[i-1]) {
			return nil, fmt.Errorf("stats: histogram %s: bounds must be positive and ascending; bound %d is %v", name, i, b)
		}
	}
	k := key(name, labels)
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.byKey[k]; ok {
		if m.Kind != KindHistogram {
			return nil, fmt.Errorf("stats: %s registered as two kinds", name)
		}
		if !slices.Equal(m.hist.bounds, bounds) {
			return nil, fmt.Errorf("stats: histogram %s registered twice with different bounds", name)
		}
		return m.hist, nil
	}
	h := &histogram{bounds: slices.Clone(bounds), buckets: make([]*atomic.Uint64, len(bounds)+1)}
	for i := range h.buckets {
		le := "+Inf"
		if i < len(bounds) {
			le = strconv.FormatFloat(float64(bounds[i])/float64(time.Millisecond), 'g', -1, 64)
		}
		p, err := s.slot(k+"\x01le="+le, KindCounter)
		if err != nil {
			return nil, fmt.Errorf("stats: register histogram %s: %w", name, err)
		}
		h.buckets[i] = p
	}
	p, err := s.slot(k+"\x01sum_us", KindCounter)
	if err != nil {
		return nil, fmt.Errorf("stats: register histogram %s: %w", name, err)
	}
	h.sumUs = p
	m := &Metric{Name: name, Help: help, Kind: KindHistogram, Labels: slices.Clone(labels), hist: h, key: k}
	s.metrics = append(s.metrics, m)
	s.byKey[k] = m
	return h, nil
}

// EachHistogram calls f for every registered histogram, in registration
// order, with its current counts.
func (s *Store) EachHistogram(f func(m *Metric, h HistogramSnapshot)) {
	s.mu.Lock()
	ms := slices.Clone(s.metrics)
	s.mu.Unlock()
	for _, m := range ms {
		if m.Kind == KindHistogram {
			f(m, m.hist.snapshot())
		}
	}
}

// LookupHistogram returns the current counts of a registered histogram,
// for tests and the admin API.
func (s *Store) LookupHistogram(name string, labels ...Label) (HistogramSnapshot, bool) {
	s.mu.Lock()
	m, ok := s.byKey[key(name, labels)]
	s.mu.Unlock()
	if !ok || m.Kind != KindHistogram {
		return HistogramSnapshot{}, false
	}
	return m.hist.snapshot(), true
}
