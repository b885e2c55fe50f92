package upstream

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// resilientYAML is a cluster of n hosts (on closed ports: nothing dials)
// with health checking, outlier detection and circuit breakers.
func resilientYAML(n int) string {
	var eps []string
	for i := range n {
		eps = append(eps, fmt.Sprintf("%q", fmt.Sprintf("127.0.0.%d:1", i+1)))
	}
	return fmt.Sprintf(`  - name: web
    endpoints: [%s]
    health_check: {tcp: true, interval: 1h, timeout: 1s}
    outlier_detection: {consecutive_5xx: 5, max_ejection_percent: 100}
`, strings.Join(eps, ", "))
}

// BenchmarkResilienceOverhead is what health, outlier detection and the
// circuit breakers add to each Host.RoundTrip: admission under
// max_requests, the outlier count of a 2xx, and the release.
func BenchmarkResilienceOverhead(b *testing.B) {
	s, _ := newTestSet(b, resilientYAML(1), Options{})
	h := s.Cluster(0).Hosts()[0]
	c := h.c
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !c.breaker.tryRequest() {
				b.Fatal("refused")
			}
			h.outlierStatus(200)
			c.breaker.requestDone()
		}
	})
}

// BenchmarkAvailable is the balancer's per-host health test.
func BenchmarkAvailable(b *testing.B) {
	s, _ := newTestSet(b, resilientYAML(2), Options{})
	hosts := s.Cluster(0).Hosts()
	healthy, failed := hosts[0], hosts[1]
	healthy.hs.flags.Store(0)
	for _, tc := range []struct {
		name string
		h    *Host
	}{{"healthy", healthy}, {"failed", failed}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tc.h.available()
			}
		})
	}
}

// BenchmarkPickWithUnavailable picks in a cluster where one host in ten
// fails its health checks and one is ejected.
func BenchmarkPickWithUnavailable(b *testing.B) {
	s, _ := newTestSet(b, resilientYAML(10), Options{})
	c := s.Cluster(0)
	for i, h := range c.Hosts() {
		switch i {
		case 3:
			h.hs.flags.Store(hostFailedHC)
		case 7:
			h.hs.ejectedUntil.Store(1 << 62)
			h.hs.flags.Store(hostEjected)
		default:
			h.hs.flags.Store(0)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		h, err := c.Pick(nil)
		if err != nil || !h.available() {
			b.Fatal("picked an unavailable host")
		}
	}
}

func BenchmarkHostRoundTripH1(b *testing.B) {
	be := newBackend(b, "127.0.0.1:0")
	for _, tc := range []struct{ name, extra string }{
		{"plain", ""},
		{"outlier_detection", "    outlier_detection: {consecutive_5xx: 5}\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, _ := newTestSet(b, fmt.Sprintf("  - name: web\n    endpoints: [%q]\n%s", be.addr, tc.extra), Options{})
			h := s.Cluster(0).Hosts()[0]
			ctx := context.Background()
			req := get("/")
			buf := make([]byte, 256)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := h.RoundTrip(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				for {
					if _, err := resp.Body.Read(buf); err != nil {
						break
					}
				}
				h.Release(resp)
			}
		})
	}
}

// TestResilienceDoesNotAllocate: refusing a request over max_requests,
// counting a response for outlier detection and testing availability
// allocate nothing.
func TestResilienceDoesNotAllocate(t *testing.T) {
	s, _ := newTestSet(t, resilientYAML(2)+"    circuit_breakers: {max_requests: 1}\n", Options{})
	c := s.Cluster(0)
	h := c.Hosts()[0]
	if !c.breaker.tryRequest() {
		t.Fatal("first request refused")
	}
	defer c.breaker.requestDone()
	ctx := context.Background()
	req := get("/")
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := h.RoundTrip(ctx, req); err == nil {
			t.Fatal("no overflow")
		}
		h.outlierStatus(200)
		h.outlierStatus(503)
		h.available()
		c.Pick(nil)
	}); n != 0 {
		t.Errorf("allocations per run = %v, want 0", n)
	}
}
