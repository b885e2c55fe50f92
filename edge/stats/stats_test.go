package stats

import "testing"

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
