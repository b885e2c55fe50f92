package shmstats

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/edge/stats"
)

// The test binary re-executes itself as a second process when these are set.
const (
	envChildBase = "SHMSTATS_TEST_CHILD_BASE"
	envChildAdds = "SHMSTATS_TEST_CHILD_ADDS"
)

func TestMain(m *testing.M) {
	if base := os.Getenv(envChildBase); base != "" {
		os.Exit(childMain(base, os.Getenv(envChildAdds)))
	}
	os.Exit(m.Run())
}

// childMain plays a restarted edge: it maps the region, registers the same
// counter through a stats.Store, prints the value it found, adds to it and
// exits.
func childMain(baseStr, addsStr string) int {
	base, err1 := strconv.Atoi(baseStr)
	adds, err2 := strconv.Atoi(addsStr)
	if err := errors.Join(err1, err2); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	r, err := Open(base, testSlots)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	defer r.Close()
	s := stats.NewStoreWith(r.Slot)
	c := s.Counter("downstream_rq_total", "requests", stats.Label{Name: "listener", Value: "http"})
	fmt.Printf("found %d\n", c.Value())
	for range adds {
		c.Inc()
	}
	return 0
}

const testSlots = 64

var nextBase atomic.Int64

// testBase returns a baseID unique to this process and test, and removes
// the file when the test ends.
func testBase(t *testing.T) int {
	t.Helper()
	base := os.Getpid()*1000 + int(nextBase.Add(1))
	_ = Remove(base)
	t.Cleanup(func() {
		if err := Remove(base); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	return base
}

func mustOpen(t *testing.T, base, slots int) *Region {
	t.Helper()
	r, err := Open(base, slots)
	if err != nil {
		t.Fatalf("Open(%d, %d): %v", base, slots, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

const rqKey = "downstream_rq_total\x00listener=http"

func TestCounterSharedAcrossHandlesAndProcesses(t *testing.T) {
	base := testBase(t)
	a := mustOpen(t, base, testSlots)
	b := mustOpen(t, base, testSlots)
	if a.Owner() == b.Owner() {
		t.Fatalf("two opens got the same owner id %d", a.Owner())
	}
	sa := stats.NewStoreWith(a.Slot)
	sb := stats.NewStoreWith(b.Slot)
	ca := sa.Counter("downstream_rq_total", "requests", stats.Label{Name: "listener", Value: "http"})
	cb := sb.Counter("downstream_rq_total", "requests", stats.Label{Name: "listener", Value: "http"})
	other := sb.Counter("downstream_rq_total", "requests", stats.Label{Name: "listener", Value: "https"})

	var wg sync.WaitGroup
	for _, c := range []stats.Counter{ca, cb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				c.Inc()
			}
		}()
	}
	wg.Wait()
	other.Add(5)
	if got := ca.Value(); got != 2000 {
		t.Errorf("counter via a = %d, want 2000", got)
	}
	if got := cb.Value(); got != 2000 {
		t.Errorf("counter via b = %d, want 2000", got)
	}
	if got := other.Value(); got != 5 {
		t.Errorf("other counter = %d, want 5", got)
	}

	// A child process (the restarted edge) finds the count and adds to it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChildBase+"="+strconv.Itoa(base), envChildAdds+"=300")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "found 2000"; got != want {
		t.Errorf("child printed %q, want %q", got, want)
	}
	if got := ca.Value(); got != 2300 {
		t.Errorf("counter after child = %d, want 2300", got)
	}

	// Both close; a third open still sees the total: counters never reset.
	for _, r := range []*Region{a, b} {
		if err := r.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	c := mustOpen(t, base, testSlots)
	p, err := c.Slot(rqKey, stats.KindCounter)
	if err != nil {
		t.Fatalf("Slot: %v", err)
	}
	if got := p.Load(); got != 2300 {
		t.Errorf("counter after reopen = %d, want 2300", got)
	}
}

func TestRefusesIncompatibleLayout(t *testing.T) {
	base := testBase(t)
	r := mustOpen(t, base, testSlots)
	r.Close()

	tests := []struct {
		name    string
		slots   int
		patch   func(h []byte)
		wantErr string
	}{
		{"version", testSlots, func(h []byte) { binary.NativeEndian.PutUint32(h[hdrVersion:], 7) },
			"incompatible stats layout: file has version 7, this binary 1"},
		{"magic", testSlots, func(h []byte) { copy(h, "NOTSTATS") }, "is not an edge stats region"},
		{"entry size", testSlots, func(h []byte) { binary.NativeEndian.PutUint32(h[hdrEntrySize:], 99) },
			"incompatible stats layout: file has entry size 99"},
		{"slot count", testSlots * 2, func([]byte) {}, "incompatible stats layout: file has 64 slots, this binary 128"},
	}
	path := Path(base)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			var h [headerSize]byte
			if _, err := f.ReadAt(h[:], 0); err != nil {
				t.Fatal(err)
			}
			orig := h
			tt.patch(h[:])
			if _, err := f.WriteAt(h[:], 0); err != nil {
				t.Fatal(err)
			}
			defer func() {
				f.WriteAt(orig[:], 0)
				f.Close()
			}()
			r, err := Open(base, tt.slots)
			if err == nil {
				r.Close()
				t.Fatalf("Open succeeded, want error containing %q", tt.wantErr)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.wantErr) || !strings.Contains(msg, path) {
				t.Errorf("got error %q, want one naming %s and containing %q", msg, path, tt.wantErr)
			}
		})
	}
	// The untouched file still opens.
	mustOpen(t, base, testSlots)
}

func TestRegistryFullAndLongKey(t *testing.T) {
	base := testBase(t)
	r := mustOpen(t, base, 2)
	for _, k := range []string{"a", "b"} {
		if _, err := r.Slot(k, stats.KindCounter); err != nil {
			t.Fatalf("Slot(%q): %v", k, err)
		}
	}
	if _, err := r.Slot("a", stats.KindCounter); err != nil {
		t.Errorf("existing key on a full registry: %v", err)
	}
	if _, err := r.Slot("c", stats.KindCounter); !errors.Is(err, ErrRegistryFull) {
		t.Errorf("third key: got error %v, want ErrRegistryFull", err)
	}
	s := stats.NewStoreWith(r.Slot)
	func() {
		defer func() {
			if recover() == nil {
				t.Errorf("Store.Counter on a full region did not panic")
			}
		}()
		s.Counter("c", "help")
	}()

	r2 := mustOpen(t, testBase(t), 4)
	if _, err := r2.Slot(strings.Repeat("k", MaxKeyLen), stats.KindCounter); err != nil {
		t.Errorf("key of MaxKeyLen: %v", err)
	}
	_, err := r2.Slot(strings.Repeat("k", MaxKeyLen+1), stats.KindCounter)
	if err == nil || !strings.Contains(err.Error(), "longer than the 256") {
		t.Errorf("long key: got error %v, want one about the 256-byte limit", err)
	}
	if _, err := r2.Slot(strings.Repeat("k", MaxKeyLen), stats.KindGauge); err == nil {
		t.Errorf("counter key reused as gauge: got nil error")
	}
}

func TestGaugeSumAcrossOwners(t *testing.T) {
	const key = "downstream_cx_active\x00listener=http"
	base := testBase(t)
	parent := mustOpen(t, base, testSlots)
	child := mustOpen(t, base, testSlots)
	gp := stats.NewStoreWith(parent.Slot).Gauge("downstream_cx_active", "", stats.Label{Name: "listener", Value: "http"})
	gc := stats.NewStoreWith(child.Slot).Gauge("downstream_cx_active", "", stats.Label{Name: "listener", Value: "http"})
	gp.Set(5)
	gc.Inc()
	gc.Inc()
	gc.Dec()
	gc.Dec()
	gc.Dec() // the child alone may go below zero
	if got, want := gp.Value(), int64(5); got != want {
		t.Errorf("parent gauge = %d, want %d", got, want)
	}
	if got, want := gc.Value(), int64(-1); got != want {
		t.Errorf("child gauge = %d, want %d", got, want)
	}
	for _, r := range []*Region{parent, child} {
		if got, want := r.GaugeSum(key), int64(4); got != want {
			t.Errorf("GaugeSum from owner %d = %d, want %d", r.Owner(), got, want)
		}
	}
	// The parent finishes draining and exits.
	if err := parent.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := child.GaugeSum(key), int64(-1); got != want {
		t.Errorf("GaugeSum after parent closed = %d, want %d", got, want)
	}
	// The next generation reclaims the dead entry and starts from zero.
	next := mustOpen(t, base, testSlots)
	gn, err := next.Slot(key, stats.KindGauge)
	if err != nil {
		t.Fatal(err)
	}
	if got := int64(gn.Load()); got != 0 {
		t.Errorf("reclaimed gauge = %d, want 0", got)
	}
	gn.Add(3)
	if got, want := next.GaugeSum(key), int64(2); got != want {
		t.Errorf("GaugeSum with new owner = %d, want %d", got, want)
	}
	if got, want := int(next.u32(hdrUsed).Load()), 2; got != want {
		t.Errorf("registry entries = %d, want %d (dead gauge reused)", got, want)
	}
}

func BenchmarkCounterInc(b *testing.B) {
	base := os.Getpid()*1000 + 999
	_ = Remove(base)
	defer Remove(base)
	r, err := Open(base, testSlots)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	c := stats.NewStoreWith(r.Slot).Counter("downstream_rq_total", "requests")
	b.ReportAllocs()
	for b.Loop() {
		c.Inc()
	}
	if c.Value() == 0 {
		b.Fatal("counter did not move")
	}
}

func BenchmarkCounterIncParallel(b *testing.B) {
	base := os.Getpid()*1000 + 998
	_ = Remove(base)
	defer Remove(base)
	r, err := Open(base, testSlots)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	c := stats.NewStoreWith(r.Slot).Counter("downstream_rq_total", "requests")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Inc()
		}
	})
}
