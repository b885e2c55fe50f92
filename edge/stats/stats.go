// Package stats holds edge's counters, gauges and histograms in one flat
// slab of 64-bit slots, changed only through sync/atomic.
//
// A metric is a name, a help text, a kind and a fixed set of label values; it
// is registered once, when a config is compiled, and the hot path holds the
// returned Counter, Gauge or Histogram, a single pointer: incrementing is one
// atomic add, with no map lookup, lock or allocation. Registering the same
// metric twice returns the same slots, so a config reload carries counts on.
//
// A histogram is a row of counter slots, one per bucket of bounds fixed when
// it is registered, plus one for the sum of the observations; observing is a
// short scan of the bounds and two atomic adds. Because its slots are
// counters like any other, a histogram in shared memory survives a hot
// restart as counters do.
//
// The slab holds no Go pointers, so it can live in memory shared with another
// process (hot restart keeps counters across generations that way); by default
// it is ordinary memory.
package stats

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Kind tells counters, gauges and histograms apart.
type Kind uint8

const (
	// KindCounter only goes up.
	KindCounter Kind = iota
	// KindGauge goes up and down.
	KindGauge
	// KindHistogram counts observations into buckets. An Allocator never
	// sees it: a histogram's slots are allocated as counters.
	KindHistogram
)

// Label is one label name and value.
type Label struct{ Name, Value string }

// Counter is a monotonically increasing count. The zero Counter discards
// increments, so optional stats need no nil checks.
type Counter struct{ p *atomic.Uint64 }

// Inc adds one.
func (c Counter) Inc() {
	if c.p != nil {
		c.p.Add(1)
	}
}

// Add adds n.
func (c Counter) Add(n uint64) {
	if c.p != nil {
		c.p.Add(n)
	}
}

// Value returns the current count.
func (c Counter) Value() uint64 {
	if c.p == nil {
		return 0
	}
	return c.p.Load()
}

// Gauge is a value that goes up and down. The zero Gauge discards changes.
type Gauge struct{ p *atomic.Uint64 }

// Inc adds one.
func (g Gauge) Inc() {
	if g.p != nil {
		g.p.Add(1)
	}
}

// Dec subtracts one.
func (g Gauge) Dec() {
	if g.p != nil {
		g.p.Add(^uint64(0))
	}
}

// Set replaces the value.
func (g Gauge) Set(v int64) {
	if g.p != nil {
		g.p.Store(uint64(v))
	}
}

// Value returns the current value.
func (g Gauge) Value() int64 {
	if g.p == nil {
		return 0
	}
	return int64(g.p.Load())
}

// Metric describes one registered counter, gauge or histogram.
type Metric struct {
	Name   string
	Help   string
	Kind   Kind
	Labels []Label
	p      *atomic.Uint64 // counters and gauges
	hist   *histogram     // histograms
	key    string
}

// Key returns the string the metric is registered under: the name, then
// each label as NUL name=value. It is the key an Allocator receives for a
// counter or a gauge; a histogram's slots get this key with a suffix each
// (see Store.Histogram).
func (m *Metric) Key() string { return m.key }

// Store owns the slab and the metric descriptions.
type Store struct {
	slots []atomic.Uint64
	alloc Allocator
	// gaugeSum, when set, reads a gauge's value across processes.
	gaugeSum func(key string) int64

	mu      sync.Mutex
	metrics []*Metric
	byKey   map[string]*Metric
	next    int // the next free slab slot (without alloc)
}

// DefaultSlots is the slab size NewStore uses: enough for thousands of
// clusters and listeners.
const DefaultSlots = 1 << 16

// NewStore returns a store backed by ordinary memory with n slots.
func NewStore(n int) *Store {
	return NewStoreOn(make([]atomic.Uint64, n))
}

// NewStoreOn returns a store over the given slab (for example one mapped
// from shared memory). Slots are handed out in registration order.
func NewStoreOn(slab []atomic.Uint64) *Store {
	return &Store{slots: slab, byKey: make(map[string]*Metric)}
}

// Allocator hands out the slot for a metric key (see Metric.Key) and kind.
// It must return the same slot for the same key and kind every time, and
// must be safe for concurrent use. hotrestart/shmstats.Region.Slot is one.
type Allocator func(key string, kind Kind) (*atomic.Uint64, error)

// NewStoreWith returns a store whose slots come from alloc instead of a slab
// it owns (for example slots in memory shared across hot restarts). The
// store still keeps the metric descriptions; the slot limit is alloc's.
func NewStoreWith(alloc Allocator) *Store {
	return &Store{alloc: alloc, byKey: make(map[string]*Metric)}
}

// SumGaugesWith makes Each and Lookup report a gauge as sum(key) instead of
// this process's own value: during a hot restart drain, the parent's and the
// child's together (hotrestart/shmstats.Region.GaugeSum). Call it before
// the store is read.
func (s *Store) SumGaugesWith(sum func(key string) int64) { s.gaugeSum = sum }

// value reads m as a float: counters as unsigned, gauges as signed (summed
// across processes when SumGaugesWith is set).
func (s *Store) value(m *Metric) float64 {
	v := m.p.Load()
	if m.Kind != KindGauge {
		return float64(v)
	}
	if s.gaugeSum != nil {
		return float64(s.gaugeSum(m.key))
	}
	return float64(int64(v))
}

func key(name string, labels []Label) string {
	var b strings.Builder
	b.WriteString(name)
	for _, l := range labels {
		b.WriteByte(0)
		b.WriteString(l.Name)
		b.WriteByte('=')
		b.WriteString(l.Value)
	}
	return b.String()
}

func (s *Store) register(name, help string, kind Kind, labels []Label) (*atomic.Uint64, error) {
	k := key(name, labels)
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.byKey[k]; ok {
		if m.Kind != kind {
			return nil, fmt.Errorf("stats: %s registered as two kinds", name)
		}
		return m.p, nil
	}
	p, err := s.slot(k, kind)
	if err != nil {
		return nil, fmt.Errorf("stats: register %s: %w", name, err)
	}
	m := &Metric{Name: name, Help: help, Kind: kind, Labels: slices.Clone(labels), p: p, key: k}
	s.metrics = append(s.metrics, m)
	s.byKey[k] = m
	return m.p, nil
}

// slot hands out the slot for key k: from the allocator, or the next one of
// the slab. s.mu is held.
func (s *Store) slot(k string, kind Kind) (*atomic.Uint64, error) {
	if s.alloc != nil {
		return s.alloc(k, kind)
	}
	if s.next >= len(s.slots) {
		return nil, fmt.Errorf("all %d slots in use", len(s.slots))
	}
	s.next++
	return &s.slots[s.next-1], nil
}

// Counter registers (or finds) a counter. It panics only if the slab is
// full or the name is already a gauge, both programming errors.
func (s *Store) Counter(name, help string, labels ...Label) Counter {
	p, err := s.register(name, help, KindCounter, labels)
	if err != nil {
		panic(err)
	}
	return Counter{p}
}

// Gauge registers (or finds) a gauge.
func (s *Store) Gauge(name, help string, labels ...Label) Gauge {
	p, err := s.register(name, help, KindGauge, labels)
	if err != nil {
		panic(err)
	}
	return Gauge{p}
}

// Each calls f for every registered counter and gauge, in registration
// order, with its current value (gauges as their signed value). Histograms
// are read with EachHistogram.
func (s *Store) Each(f func(m *Metric, value float64)) {
	s.mu.Lock()
	ms := slices.Clone(s.metrics)
	s.mu.Unlock()
	for _, m := range ms {
		if m.Kind != KindHistogram {
			f(m, s.value(m))
		}
	}
}

// Lookup returns the current value of a registered counter or gauge, for
// tests and the admin API (histograms: LookupHistogram).
func (s *Store) Lookup(name string, labels ...Label) (float64, bool) {
	s.mu.Lock()
	m, ok := s.byKey[key(name, labels)]
	s.mu.Unlock()
	if !ok || m.Kind == KindHistogram {
		return 0, false
	}
	return s.value(m), true
}
