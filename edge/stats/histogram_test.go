package stats

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	s := NewStore(64)
	bounds := []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond}
	h := s.Histogram("rq_time", "help", bounds, Label{"listener", "public"})
	for _, d := range []time.Duration{
		0, 500 * time.Microsecond, time.Millisecond, // <= 1ms (the bound itself included)
		time.Millisecond + time.Nanosecond, 10 * time.Millisecond, // <= 10ms
		50 * time.Millisecond,  // <= 100ms
		time.Second, time.Hour, // overflow
		-time.Second, // counts as zero
	} {
		h.Observe(d)
	}
	snap, ok := s.LookupHistogram("rq_time", Label{"listener", "public"})
	if !ok {
		t.Fatal("LookupHistogram found nothing")
	}
	if got, want := snap.Counts, []uint64{4, 2, 1, 2}; !slices.Equal(got, want) {
		t.Errorf("Counts = %v, want %v", got, want)
	}
	if got, want := snap.Cumulative(), []uint64{4, 6, 7}; !slices.Equal(got, want) {
		t.Errorf("Cumulative = %v, want %v", got, want)
	}
	if snap.Count != 9 {
		t.Errorf("Count = %d, want 9", snap.Count)
	}
	wantSum := 500*time.Microsecond + time.Millisecond + time.Millisecond + 10*time.Millisecond +
		50*time.Millisecond + time.Second + time.Hour // 1ms+1ns truncates to 1ms
	if snap.Sum != wantSum {
		t.Errorf("Sum = %v, want %v", snap.Sum, wantSum)
	}
	if got := h.Snapshot(); got.Count != snap.Count {
		t.Errorf("Histogram.Snapshot().Count = %d, LookupHistogram's %d", got.Count, snap.Count)
	}
	if _, ok := s.Lookup("rq_time", Label{"listener", "public"}); ok {
		t.Error("Lookup found a histogram; it reads counters and gauges only")
	}
}

func TestHistogramQuantile(t *testing.T) {
	bounds := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}
	snap := HistogramSnapshot{Bounds: bounds, Counts: []uint64{10, 10, 0, 0}, Count: 20}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{
		{0, 0},
		{0.25, 5 * time.Millisecond},  // rank 5 of the first 10, in (0, 10ms]
		{0.5, 10 * time.Millisecond},  // rank 10: the first bucket's top
		{0.75, 15 * time.Millisecond}, // rank 15: halfway through (10ms, 20ms]
		{1, 20 * time.Millisecond},
		{2, 20 * time.Millisecond}, // clamped to 1
	} {
		if got := snap.Quantile(c.q); got != c.want {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	over := HistogramSnapshot{Bounds: bounds, Counts: []uint64{0, 0, 0, 3}, Count: 3}
	if got := over.Quantile(0.5); got != 40*time.Millisecond {
		t.Errorf("Quantile in the overflow bucket = %v, want the highest bound 40ms", got)
	}
	if got := (HistogramSnapshot{Bounds: bounds, Counts: make([]uint64, 4)}).Quantile(0.5); got != 0 {
		t.Errorf("Quantile of an empty histogram = %v, want 0", got)
	}
}

func TestHistogramRegistration(t *testing.T) {
	s := NewStore(64)
	b := DefaultBounds()
	if len(b) != 19 || b[0] != 500*time.Microsecond || b[18] != time.Hour {
		t.Fatalf("DefaultBounds = %v, want Envoy's 19 bounds from 0.5ms to 1h", b)
	}
	a := s.Histogram("t", "", b, Label{"cluster", "a"})
	a2 := s.Histogram("t", "", DefaultBounds(), Label{"cluster", "a"})
	a.Observe(time.Millisecond)
	a2.Observe(time.Millisecond)
	if got := a.Snapshot().Count; got != 2 {
		t.Errorf("registering twice: count = %d, want 2 (same slots)", got)
	}
	c := s.Counter("after", "")
	c.Inc()
	if a.Snapshot().Count != 2 {
		t.Error("a counter registered after a histogram shares one of its slots")
	}
	var names []string
	s.Each(func(m *Metric, _ float64) { names = append(names, m.Name) })
	if !slices.Equal(names, []string{"after"}) {
		t.Errorf("Each saw %v, want only the counter", names)
	}
	var hists []string
	s.EachHistogram(func(m *Metric, h HistogramSnapshot) {
		hists = append(hists, fmt.Sprintf("%s %s %d", m.Name, m.Labels[0].Value, h.Count))
	})
	if !slices.Equal(hists, []string{"t a 2"}) {
		t.Errorf("EachHistogram saw %v", hists)
	}

	for name, f := range map[string]func(){
		"no bounds":         func() { s.Histogram("x", "", nil) },
		"descending bounds": func() { s.Histogram("x", "", []time.Duration{2, 1}) },
		"zero bound":        func() { s.Histogram("x", "", []time.Duration{0}) },
		"other bounds":      func() { s.Histogram("t", "", b[:3], Label{"cluster", "a"}) },
		"counter as histogram": func() {
			s.Histogram("after", "", b)
		},
		"histogram as counter": func() { s.Counter("t", "", Label{"cluster", "a"}) },
		"slab full":            func() { NewStore(20).Histogram("x", "", b) }, // needs 21
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// TestHistogramSlotsFromAllocator checks the keys a histogram's slots are
// allocated under (what shared memory keys them by) and that a second store
// on the same allocator, as a hot restart child, continues the counts.
func TestHistogramSlotsFromAllocator(t *testing.T) {
	var mu sync.Mutex
	slots := map[string]*atomic.Uint64{}
	var kinds []Kind
	alloc := func(k string, kind Kind) (*atomic.Uint64, error) {
		mu.Lock()
		defer mu.Unlock()
		kinds = append(kinds, kind)
		if p, ok := slots[k]; ok {
			return p, nil
		}
		p := new(atomic.Uint64)
		slots[k] = p
		return p, nil
	}
	bounds := []time.Duration{500 * time.Microsecond, 2 * time.Second}
	parent := NewStoreWith(alloc).Histogram("rq_time", "", bounds, Label{"listener", "l"})
	parent.Observe(time.Millisecond)
	child := NewStoreWith(alloc).Histogram("rq_time", "", bounds, Label{"listener", "l"})
	child.Observe(3 * time.Second)
	var keys []string
	for k := range slots {
		keys = append(keys, strings.ReplaceAll(strings.ReplaceAll(k, "\x00", "|"), "\x01", "#"))
	}
	slices.Sort(keys)
	want := []string{"rq_time|listener=l#le=+Inf", "rq_time|listener=l#le=0.5", "rq_time|listener=l#le=2000", "rq_time|listener=l#sum_us"}
	if !slices.Equal(keys, want) {
		t.Errorf("slot keys = %q, want %q", keys, want)
	}
	for _, k := range kinds {
		if k != KindCounter {
			t.Errorf("a histogram slot was allocated as kind %d, want counters only", k)
		}
	}
	snap := child.Snapshot()
	if !slices.Equal(snap.Counts, []uint64{0, 1, 1}) || snap.Sum != 3001*time.Millisecond {
		t.Errorf("child sees %v sum %v, want the parent's observation and its own", snap.Counts, snap.Sum)
	}
}

func TestZeroHistogramIsNoOp(t *testing.T) {
	var h Histogram
	h.Observe(time.Second)
	if h.Snapshot().Count != 0 {
		t.Error("zero Histogram recorded an observation")
	}
}

func TestHistogramConcurrentObserve(t *testing.T) {
	h := NewStore(64).Histogram("t", "", DefaultBounds())
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				h.Observe(time.Duration(g*1000+i) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	if got := h.Snapshot().Count; got != 4000 {
		t.Errorf("Count = %d after 4000 concurrent observations", got)
	}
}

func BenchmarkHistogramObserve(b *testing.B) {
	h := NewStore(64).Histogram("t", "", DefaultBounds())
	for _, d := range []time.Duration{200 * time.Microsecond, 40 * time.Millisecond, 2 * time.Hour} {
		b.Run(d.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h.Observe(d)
			}
		})
	}
}
