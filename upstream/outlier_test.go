package upstream

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// send makes one request to h and returns the status (0 on error) and the
// error's Kind.
func send(t testing.TB, h *Host, ctx context.Context) (int, Kind) {
	t.Helper()
	resp, err := h.RoundTrip(ctx, get("/"))
	if err != nil {
		return 0, Classify(err).Kind
	}
	io.Copy(io.Discard, resp.Body)
	h.Release(resp)
	return resp.Status, 0
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestOutlierEjectsAndReturns(t *testing.T) {
	good, bad := newCtlBackend(t, "127.0.0.1:0"), newCtlBackend(t, "127.0.0.1:0")
	bad.status.Store(503)
	const base = 300 * time.Millisecond
	s, st := newTestSet(t, fmt.Sprintf(`  - name: web
    endpoints: [%q, %q]
    outlier_detection: {consecutive_5xx: 5, interval: 50ms, base_ejection_time: 300ms, max_ejection_percent: 50}
`, good.addr, bad.addr), Options{})
	startSet(t, s)
	c := s.Cluster(0)
	h := hostByAddr(t, c, bad.addr)
	stat := func(name string) float64 { return stat(st, name, "web") }
	ctx := testCtx(t)

	for i := 1; i <= 4; i++ {
		if status, _ := send(t, h, ctx); status != 503 {
			t.Fatalf("request %d: status %d, want 503", i, status)
		}
	}
	if !h.available() {
		t.Fatal("host ejected after 4 consecutive 5xx, want 5")
	}
	start := time.Now()
	send(t, h, ctx)
	if h.available() {
		t.Fatal("host not ejected after 5 consecutive 5xx")
	}
	if left := time.Duration(h.hs.ejectedUntil.Load() - c.now()); left > base || left < base-200*time.Millisecond {
		t.Errorf("first ejection lasts %v more, want base_ejection_time (%v)", left, base)
	}
	if hl, n := healthOf(s, "web", bad.addr); hl != "ejected" || n != 1 {
		t.Errorf("Describe: health %q, times_ejected %d; want ejected, 1", hl, n)
	}
	for name, want := range map[string]float64{
		"edge_cluster_outlier_detection_ejections_active":         1,
		"edge_cluster_outlier_detection_ejections_enforced_total": 1,
		"edge_cluster_outlier_detection_ejections_overflow":       0,
		"edge_cluster_membership_healthy":                         1,
	} {
		if got := stat(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := pickAddrs(t, c, 20)[bad.addr]; got != 0 {
		t.Errorf("ejected host picked %d times, want 0", got)
	}

	// It returns after base_ejection_time (seen at pick time).
	waitFor(t, "the host to return", func() bool { return pickAddrs(t, c, 2)[bad.addr] > 0 })
	if d := time.Since(start); d < base {
		t.Errorf("host returned after %v, want at least %v", d, base)
	}
	if got := stat("edge_cluster_outlier_detection_ejections_active"); got != 0 {
		t.Errorf("ejections_active after return = %v, want 0", got)
	}

	// Ejected again right away: twice as long.
	for range 5 {
		send(t, h, ctx)
	}
	if h.available() {
		t.Fatal("host not ejected the second time")
	}
	start = time.Now()
	if left := time.Duration(h.hs.ejectedUntil.Load() - c.now()); left > 2*base || left < 2*base-200*time.Millisecond {
		t.Errorf("second ejection lasts %v more, want 2 x base_ejection_time (%v)", left, 2*base)
	}
	if _, n := healthOf(s, "web", bad.addr); n != 2 {
		t.Errorf("times_ejected = %d, want 2", n)
	}
	// This time nothing picks: the interval sweep ends the ejection.
	waitFor(t, "the sweep to end the ejection", func() bool { return stat("edge_cluster_outlier_detection_ejections_active") == 0 })
	if d := time.Since(start); d < 2*base-200*time.Millisecond {
		t.Errorf("second ejection ended after %v, want about %v", d, 2*base)
	}
	if got := stat("edge_cluster_outlier_detection_ejections_enforced_total"); got != 2 {
		t.Errorf("ejections_enforced_total = %v, want 2", got)
	}
	if got := stat("edge_cluster_membership_healthy"); got != 2 {
		t.Errorf("membership_healthy = %v, want 2", got)
	}
	// Un-ejected for a few intervals, the multiplier decays to zero: the
	// next ejection lasts base_ejection_time again.
	waitFor(t, "the multiplier to decay", func() bool {
		c.hmu.Lock()
		defer c.hmu.Unlock()
		return h.hs.multiplier == 0
	})
	for range 5 {
		send(t, h, ctx)
	}
	if left := time.Duration(h.hs.ejectedUntil.Load() - c.now()); h.available() || left > base || left < base-200*time.Millisecond {
		t.Errorf("third ejection: available %v, lasts %v more; want ejected for base_ejection_time (%v)", h.available(), left, base)
	}
}

// TestOutlierCounting: which results count toward which threshold, and
// what resets them.
func TestOutlierCounting(t *testing.T) {
	for _, tc := range []struct {
		name      string
		c5xx, cgw int
		statuses  []int // 0: a canceled request
		wantEject bool
	}{
		{"5 x 503", 5, 0, []int{503, 503, 503, 503, 503}, true},
		{"any 5xx counts", 3, 0, []int{500, 502, 501}, true},
		{"a success resets", 3, 0, []int{500, 500, 404, 500, 500}, false},
		{"5xx disabled", 0, 0, []int{500, 500, 500, 500, 500, 500}, false},
		{"gateway failures", 0, 3, []int{502, 503, 504}, true},
		{"another 5xx resets gateway failures", 0, 3, []int{502, 503, 500, 504, 502}, false},
		{"a success resets gateway failures", 0, 3, []int{503, 503, 200, 503, 503}, false},
		{"canceled requests count as nothing", 0, 2, []int{503, 0, 0, 503}, true},
		{"canceled requests do not reset", 3, 0, []int{503, 503, 0, 503}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newCtlBackend(t, "127.0.0.1:0")
			other := newCtlBackend(t, "127.0.0.1:0")
			s, st := newTestSet(t, fmt.Sprintf(`  - name: web
    endpoints: [%q, %q]
    outlier_detection: {consecutive_5xx: %d, consecutive_gateway_failure: %d, interval: 1s, base_ejection_time: 10s, max_ejection_percent: 50}
`, b.addr, other.addr, tc.c5xx, tc.cgw), Options{})
			h := hostByAddr(t, s.Cluster(0), b.addr)
			canceled, cancel := context.WithCancel(context.Background())
			cancel()
			for _, status := range tc.statuses {
				if status == 0 {
					if _, k := send(t, h, canceled); k != Canceled {
						t.Fatalf("canceled request: kind %v, want canceled", k)
					}
					continue
				}
				b.status.Store(int32(status))
				if got, _ := send(t, h, testCtx(t)); got != status {
					t.Fatalf("status %d, want %d", got, status)
				}
			}
			if got := !h.available(); got != tc.wantEject {
				t.Errorf("after %v: ejected %v, want %v", tc.statuses, got, tc.wantEject)
			}
			want := 0.0
			if tc.wantEject {
				want = 1
			}
			if got := stat(st, "edge_cluster_outlier_detection_ejections_enforced_total", "web"); got != want {
				t.Errorf("ejections_enforced_total = %v, want %v", got, want)
			}
		})
	}
}

func TestOutlierGatewayConnectFailures(t *testing.T) {
	live, dead := newCtlBackend(t, "127.0.0.1:0"), closedAddr(t)
	s, st := newTestSet(t, fmt.Sprintf(`  - name: web
    endpoints: [%q, %q]
    outlier_detection: {consecutive_5xx: 0, consecutive_gateway_failure: 3, interval: 1s, base_ejection_time: 10s, max_ejection_percent: 50}
`, live.addr, dead), Options{})
	c := s.Cluster(0)
	h := hostByAddr(t, c, dead)
	for i := 1; i <= 3; i++ {
		if !h.available() {
			t.Fatalf("ejected after %d connect failures, want 3", i-1)
		}
		if _, k := send(t, h, testCtx(t)); k != ConnectFailure {
			t.Fatalf("request %d to a closed port: kind %v, want connect failure", i, k)
		}
	}
	if h.available() {
		t.Fatal("not ejected after 3 connect failures")
	}
	if got := stat(st, "edge_cluster_outlier_detection_ejections_active", "web"); got != 1 {
		t.Errorf("ejections_active = %v, want 1", got)
	}
	if got := pickAddrs(t, c, 10)[dead]; got != 0 {
		t.Errorf("ejected host picked %d times, want 0", got)
	}
}

func TestOutlierMaxEjectionPercent(t *testing.T) {
	for _, tc := range []struct {
		percent                   int
		wantEjected, wantOverflow float64
	}{
		// 3 failing hosts of 4: 50% lets 2 go.
		{50, 2, 1},
		// 10% of 4 hosts is less than one: none is ejected (Envoy without
		// always_eject_one_host).
		{10, 0, 3},
		{100, 3, 0},
	} {
		t.Run(fmt.Sprint(tc.percent), func(t *testing.T) {
			bs := []*ctlBackend{newCtlBackend(t, "127.0.0.1:0"), newCtlBackend(t, "127.0.0.1:0"), newCtlBackend(t, "127.0.0.1:0"), newCtlBackend(t, "127.0.0.1:0")}
			for _, b := range bs[1:] {
				b.status.Store(503)
			}
			s, st := newTestSet(t, fmt.Sprintf(`  - name: web
    endpoints: [%q, %q, %q, %q]
    outlier_detection: {consecutive_5xx: 2, interval: 1s, base_ejection_time: 10s, max_ejection_percent: %d}
`, bs[0].addr, bs[1].addr, bs[2].addr, bs[3].addr, tc.percent), Options{})
			c := s.Cluster(0)
			ejected := 0.0
			for _, b := range bs[1:] {
				h := hostByAddr(t, c, b.addr)
				send(t, h, testCtx(t))
				send(t, h, testCtx(t))
				if !h.available() {
					ejected++
				}
			}
			if ejected != tc.wantEjected {
				t.Errorf("%v hosts ejected, want %v", ejected, tc.wantEjected)
			}
			for name, want := range map[string]float64{
				"edge_cluster_outlier_detection_ejections_active":         tc.wantEjected,
				"edge_cluster_outlier_detection_ejections_enforced_total": tc.wantEjected,
				"edge_cluster_outlier_detection_ejections_overflow":       tc.wantOverflow,
				"edge_cluster_membership_healthy":                         4 - tc.wantEjected,
			} {
				if got := stat(st, name, "web"); got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
		})
	}
}

// TestOutlierUnejectOnHealthCheck: a passing active health check ends an
// ejection (Envoy's successful_active_health_check_uneject_host).
func TestOutlierUnejectOnHealthCheck(t *testing.T) {
	good, bad := newCtlBackend(t, "127.0.0.1:0"), newCtlBackend(t, "127.0.0.1:0")
	bad.status.Store(500)
	s, _ := newTestSet(t, fmt.Sprintf(`  - name: web
    endpoints: [%q, %q]
    health_check: {path: /healthz, interval: 50ms, timeout: 1s, unhealthy_threshold: 1, healthy_threshold: 1}
    outlier_detection: {consecutive_5xx: 2, interval: 10s, base_ejection_time: 100s, max_ejection_percent: 50}
`, good.addr, bad.addr), Options{})
	startSet(t, s)
	h := hostByAddr(t, s.Cluster(0), bad.addr)
	send(t, h, testCtx(t))
	send(t, h, testCtx(t))
	if h.available() {
		t.Fatal("not ejected")
	}
	waitFor(t, "a passing check to end the ejection", h.available)
	if hl, n := healthOf(s, "web", bad.addr); hl != "healthy" || n != 1 {
		t.Errorf("Describe: %q, times_ejected %d; want healthy, 1", hl, n)
	}
}

// testCtx returns a context bounded by the test timeout.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}
