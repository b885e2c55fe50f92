package stats

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
)

func TestRegisterTwiceSharesSlot(t *testing.T) {
	s := NewStore(8)
	a := s.Counter("rq_total", "help", Label{"cluster", "a"})
	b := s.Counter("rq_total", "help", Label{"cluster", "a"})
	other := s.Counter("rq_total", "help", Label{"cluster", "b"})
	a.Inc()
	b.Add(2)
	other.Inc()
	if got := a.Value(); got != 3 {
		t.Errorf("shared counter = %d, want 3", got)
	}
	if v, ok := s.Lookup("rq_total", Label{"cluster", "b"}); !ok || v != 1 {
		t.Errorf("Lookup(b) = %v, %v; want 1, true", v, ok)
	}
}

func TestGaugeGoesBelowZeroAndBack(t *testing.T) {
	s := NewStore(4)
	g := s.Gauge("active", "help")
	g.Dec()
	if g.Value() != -1 {
		t.Errorf("gauge = %d, want -1", g.Value())
	}
	g.Inc()
	g.Inc()
	var seen float64
	s.Each(func(m *Metric, v float64) { seen = v })
	if seen != 1 {
		t.Errorf("Each saw %v, want 1", seen)
	}
}

func TestZeroValuesAreNoOps(t *testing.T) {
	var c Counter
	var g Gauge
	c.Inc()
	g.Inc()
	if c.Value() != 0 || g.Value() != 0 {
		t.Error("zero Counter/Gauge recorded a value")
	}
}

func TestKindMismatchAndFullSlab(t *testing.T) {
	s := NewStore(1)
	s.Counter("x", "")
	if _, err := s.register("x", "", KindGauge, nil); err == nil {
		t.Error("registering a counter as a gauge succeeded")
	}
	if _, err := s.register("y", "", KindCounter, nil); err == nil {
		t.Error("registering past the slab's end succeeded")
	}
}

func BenchmarkCounterInc(b *testing.B) {
	c := NewStore(1).Counter("x", "")
	b.ReportAllocs()
	for b.Loop() {
		c.Inc()
	}
}

func TestNewStoreWithUsesAllocator(t *testing.T) {
	var slab [2]atomic.Uint64
	var keys []string
	alloc := func(k string, kind Kind) (*atomic.Uint64, error) {
		keys = append(keys, k)
		if len(keys) > len(slab) {
			return nil, errors.New("full")
		}
		return &slab[len(keys)-1], nil
	}
	s := NewStoreWith(alloc)
	c := s.Counter("rq_total", "help", Label{"cluster", "a"})
	s.Counter("rq_total", "help", Label{"cluster", "a"}).Inc() // same metric: no second call
	g := s.Gauge("active", "help")
	c.Inc()
	g.Set(-2)
	if got, want := slab[0].Load(), uint64(2); got != want {
		t.Errorf("allocated counter slot = %d, want %d", got, want)
	}
	if got, want := int64(slab[1].Load()), int64(-2); got != want {
		t.Errorf("allocated gauge slot = %d, want %d", got, want)
	}
	if got, want := strings.Join(keys, "|"), "rq_total\x00cluster=a|active"; got != want {
		t.Errorf("allocator keys = %q, want %q", got, want)
	}
	if v, ok := s.Lookup("active"); !ok || v != -2 {
		t.Errorf("Lookup(active) = %v, %v; want -2, true", v, ok)
	}
	var m0 *Metric
	s.Each(func(m *Metric, _ float64) {
		if m0 == nil {
			m0 = m
		}
	})
	if got, want := m0.Key(), keys[0]; got != want {
		t.Errorf("Metric.Key() = %q, want %q", got, want)
	}
	defer func() {
		if recover() == nil {
			t.Errorf("registering past the allocator's limit did not panic")
		}
	}()
	s.Counter("third", "help")
}
