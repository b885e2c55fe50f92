package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/edgeproxy/edge/upstream/http1"
)

// result is the outcome of a request started in the background.
type result struct {
	status int
	err    error
}

// goSend starts a request to h for path and reports its outcome, body
// read, on the returned channel.
func goSend(t testing.TB, h *Host, path string) chan result {
	ch := make(chan result, 1)
	ctx := testCtx(t)
	go func() {
		resp, err := h.RoundTrip(ctx, get(path))
		if err != nil {
			ch <- result{err: err}
			return
		}
		_, err = io.Copy(io.Discard, resp.Body)
		h.Release(resp)
		ch <- result{status: resp.Status, err: err}
	}()
	return ch
}

// overflowAtOnce sends a request to h that must fail at once with Kind
// Overflow and returns the error.
func overflowAtOnce(t testing.TB, h *Host) error {
	t.Helper()
	start := time.Now()
	_, err := h.RoundTrip(testCtx(t), get("/"))
	if e := Classify(err); e == nil || e.Kind != Overflow || e.Sent {
		t.Fatalf("request over the limit: %v, want an unsent Overflow error", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("overflow took %v, want at once", d)
	}
	return err
}

func TestBreakerMaxRequests(t *testing.T) {
	for _, proto := range []string{"http1", "http2"} {
		t.Run(proto, func(t *testing.T) {
			b := newCtlBackend(t, "127.0.0.1:0")
			s, st := newTestSet(t, fmt.Sprintf(`  - name: web
    protocol: %s
    endpoints: [%q]
    circuit_breakers: {max_requests: 2}
`, proto, b.addr), Options{})
			c := s.Cluster(0)
			h := c.Hosts()[0]
			r1, r2 := goSend(t, h, "/slow"), goSend(t, h, "/slow")
			waitFor(t, "two slow requests upstream", func() bool { return b.slowStarted.Load() == 2 })

			err := overflowAtOnce(t, h)
			if !errors.Is(err, ErrOverflow) {
				t.Errorf("error %v does not wrap ErrOverflow", err)
			}
			if got := stat(st, "edge_cluster_upstream_rq_pending_overflow", "web"); got != 1 {
				t.Errorf("upstream_rq_pending_overflow = %v, want 1", got)
			}
			if got := b.requests.Load(); got != 2 {
				t.Errorf("upstream saw %d requests, want 2", got)
			}
			if got := c.breaker.info().Requests; got != 2 {
				t.Errorf("breaker counts %d requests, want 2", got)
			}
			close(b.release)
			for _, r := range []chan result{r1, r2} {
				if res := <-r; res.err != nil || res.status != 200 {
					t.Fatalf("slow request: %d %v", res.status, res.err)
				}
			}
			// Room again.
			if got := do(t, h, "/"); got != b.addr {
				t.Errorf("after the slow requests: %q, want %q", got, b.addr)
			}
			want := map[string]float64{
				"edge_cluster_upstream_rq_total":            3,
				"edge_cluster_upstream_rq_active":           0,
				"edge_cluster_upstream_rq_pending_overflow": 1,
				"edge_cluster_upstream_cx_overflow":         0,
			}
			for name, v := range want {
				if got := stat(st, name, "web"); got != v {
					t.Errorf("%s = %v, want %v", name, got, v)
				}
			}
			if got := c.breaker.info().Requests; got != 0 {
				t.Errorf("breaker counts %d requests at rest, want 0", got)
			}
		})
	}
}

// TestBreakerMaxRequestsUntilBodyEnds: a request counts until its body is
// done, as in Envoy.
func TestBreakerMaxRequestsUntilBodyEnds(t *testing.T) {
	b := newCtlBackend(t, "127.0.0.1:0")
	s, _ := newTestSet(t, fmt.Sprintf(`  - name: web
    endpoints: [%q]
    circuit_breakers: {max_requests: 1}
`, b.addr), Options{})
	h := s.Cluster(0).Hosts()[0]
	resp, err := h.RoundTrip(testCtx(t), get("/"))
	if err != nil {
		t.Fatal(err)
	}
	overflowAtOnce(t, h)
	resp.Body.Close()
	if got := do(t, h, "/"); got != b.addr {
		t.Errorf("after the body closed: %q, want %q", got, b.addr)
	}
}

func TestBreakerMaxConnectionsHTTP1(t *testing.T) {
	b, other := newCtlBackend(t, "127.0.0.1:0"), newCtlBackend(t, "127.0.0.1:0")
	s, st := newTestSet(t, fmt.Sprintf(`  - name: web
    endpoints: [%q, %q]
    circuit_breakers: {max_connections: 1, max_pending_requests: 1}
`, b.addr, other.addr), Options{})
	c := s.Cluster(0)
	h := hostByAddr(t, c, b.addr)

	first := goSend(t, h, "/slow")
	waitFor(t, "the first request upstream", func() bool { return b.slowStarted.Load() == 1 })
	// The one connection is busy: the second request waits for it.
	second := goSend(t, h, "/slow")
	waitFor(t, "the second request to wait", func() bool { return c.breaker.info().PendingRequests == 1 })
	// The pending queue is full: the third fails at once.
	err := overflowAtOnce(t, h)
	if !errors.Is(err, http1.ErrPendingOverflow) {
		t.Errorf("error %v does not wrap http1.ErrPendingOverflow", err)
	}

	b.release <- struct{}{}
	if res := <-first; res.err != nil || res.status != 200 {
		t.Fatalf("first request: %d %v", res.status, res.err)
	}
	waitFor(t, "the second request upstream", func() bool { return b.slowStarted.Load() == 2 })
	b.release <- struct{}{}
	if res := <-second; res.err != nil || res.status != 200 {
		t.Fatalf("second (pending) request: %d %v", res.status, res.err)
	}
	if got := b.conns.Load(); got != 1 {
		t.Errorf("upstream accepted %d connections, want 1 (max_connections)", got)
	}

	// Another host without a connection gets one over the limit.
	if got := do(t, hostByAddr(t, c, other.addr), "/"); got != other.addr {
		t.Errorf("other host: %q", got)
	}
	want := map[string]float64{
		"edge_cluster_upstream_cx_total":            2,
		"edge_cluster_upstream_cx_overflow":         2, // the second request waited; the other host's connection
		"edge_cluster_upstream_rq_pending_overflow": 1,
		"edge_cluster_upstream_rq_active":           0,
	}
	for name, v := range want {
		if got := stat(st, name, "web"); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	if bi := c.breaker.info(); bi.Connections != 2 || bi.PendingRequests != 0 || bi.Requests != 0 {
		t.Errorf("breaker at rest: %+v, want 2 connections, nothing pending or active", bi)
	}
	s.Close()
	if got := c.breaker.info().Connections; got != 0 {
		t.Errorf("after Close the breaker counts %d connections, want 0", got)
	}
}

func TestBreakerMaxConnectionsHTTP2(t *testing.T) {
	b := newCtlBackend(t, "127.0.0.1:0")
	s, st := newTestSet(t, fmt.Sprintf(`  - name: web
    protocol: http2
    http2: {connections_per_host: 4}
    endpoints: [%q]
    circuit_breakers: {max_connections: 1, max_pending_requests: 1}
`, b.addr), Options{})
	h := s.Cluster(0).Hosts()[0]
	var rs []chan result
	for range 5 {
		rs = append(rs, goSend(t, h, "/slow"))
	}
	// Streams multiplex over the one connection: nothing waits for the
	// limit, nothing overflows.
	waitFor(t, "five streams upstream", func() bool { return b.slowStarted.Load() == 5 })
	close(b.release)
	for _, r := range rs {
		if res := <-r; res.err != nil || res.status != 200 {
			t.Fatalf("request: %d %v", res.status, res.err)
		}
	}
	if got := b.conns.Load(); got != 1 {
		t.Errorf("upstream accepted %d connections, want 1 (max_connections)", got)
	}
	if got := stat(st, "edge_cluster_upstream_rq_pending_overflow", "web"); got != 0 {
		t.Errorf("upstream_rq_pending_overflow = %v, want 0", got)
	}
}

func TestBreakerMaxRetries(t *testing.T) {
	for _, tc := range []struct {
		max  int
		want []bool // TryRetry results, then after one RetryDone
	}{
		{0, []bool{false, false}},
		{1, []bool{true, false, true}},
		{2, []bool{true, true, false, true}},
	} {
		t.Run(fmt.Sprint(tc.max), func(t *testing.T) {
			s, _ := newTestSet(t, fmt.Sprintf(`  - name: web
    endpoints: ["127.0.0.1:1"]
    circuit_breakers: {max_retries: %d}
`, tc.max), Options{})
			c := s.Cluster(0)
			var got []bool
			for range len(tc.want) - 1 {
				got = append(got, c.TryRetry())
			}
			if got[0] {
				c.RetryDone()
			}
			got = append(got, c.TryRetry())
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("TryRetry = %v, want %v", got, tc.want)
			}
			if r, m := c.breaker.info().Retries, c.breaker.info().MaxRetries; r > m || m != int64(tc.max) {
				t.Errorf("breaker: %d retries of %d, want at most max_retries %d", r, m, tc.max)
			}
		})
	}
}

// TestOverflowIsNotAnOutlier: refusals by the circuit breakers, and
// timeouts spent waiting for a connection under max_connections, do not
// count against the host.
func TestOverflowIsNotAnOutlier(t *testing.T) {
	b, other := newCtlBackend(t, "127.0.0.1:0"), newCtlBackend(t, "127.0.0.1:0")
	s, st := newTestSet(t, fmt.Sprintf(`  - name: web
    endpoints: [%q, %q]
    circuit_breakers: {max_requests: 3, max_connections: 1, max_pending_requests: 1}
    outlier_detection: {consecutive_5xx: 1, consecutive_gateway_failure: 1, max_ejection_percent: 100}
`, b.addr, other.addr), Options{})
	h := hostByAddr(t, s.Cluster(0), b.addr)
	r := goSend(t, h, "/slow")
	waitFor(t, "the slow request upstream", func() bool { return b.slowStarted.Load() == 1 })

	// Waiting for the busy connection until the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := h.RoundTrip(ctx, get("/"))
	if e := Classify(err); e == nil || e.Kind != Timeout || !errors.Is(err, http1.ErrPendingWait) {
		t.Fatalf("request waiting past its deadline: %v, want a Timeout wrapping http1.ErrPendingWait", err)
	}
	// The pending queue full.
	pending := goSend(t, h, "/")
	waitFor(t, "a request to wait", func() bool { return s.Cluster(0).breaker.info().PendingRequests == 1 })
	for range 3 {
		overflowAtOnce(t, h)
	}
	// max_requests (3): the slow one, the pending one and one on the
	// other host (which has no connection, so it gets one).
	third := goSend(t, hostByAddr(t, s.Cluster(0), other.addr), "/slow")
	waitFor(t, "three requests", func() bool { return s.Cluster(0).breaker.info().Requests == 3 })
	if !errors.Is(overflowAtOnce(t, h), ErrOverflow) {
		t.Error("fourth request: not a max_requests overflow")
	}
	if !h.available() {
		t.Error("host ejected for overflows or waits")
	}
	if got := stat(st, "edge_cluster_outlier_detection_ejections_overflow", "web"); got != 0 {
		t.Errorf("ejections_overflow = %v, want 0 (no ejection attempted)", got)
	}
	close(b.release)
	close(other.release)
	for _, ch := range []chan result{r, pending, third} {
		if res := <-ch; res.err != nil {
			t.Fatal(res.err)
		}
	}
}
