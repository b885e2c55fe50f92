package upstream

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ctlBackend is a loopback HTTP server (HTTP/1.1 and h2c) whose answers
// the test controls: /healthz answers healthStatus, every other path
// answers status with the server's address as the body; /slow waits for
// release first. It counts health checks and remembers the last one.
type ctlBackend struct {
	addr         string
	srv          *http.Server
	healthStatus atomic.Int32
	status       atomic.Int32
	release      chan struct{}
	slowStarted  atomic.Int32
	requests     atomic.Int32 // non-health requests
	checks       atomic.Int32 // health checks answered
	checksFailed atomic.Int32 // health checks answered with a non-2xx
	checksOK     atomic.Int32 // health checks answered with 2xx
	conns        atomic.Int32 // connections accepted

	mu        sync.Mutex
	lastCheck *http.Request
}

func newCtlBackend(t testing.TB, addr string) *ctlBackend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	b := &ctlBackend{addr: ln.Addr().String(), release: make(chan struct{})}
	b.healthStatus.Store(200)
	b.status.Store(200)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	b.srv = &http.Server{
		Protocols:         &protos,
		ReadHeaderTimeout: testTimeout,
		Handler:           http.HandlerFunc(b.serve),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				b.conns.Add(1)
			}
		},
	}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

func (b *ctlBackend) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		st := int(b.healthStatus.Load())
		b.mu.Lock()
		b.lastCheck = r
		b.mu.Unlock()
		if st >= 200 && st <= 299 {
			b.checksOK.Add(1)
		} else {
			b.checksFailed.Add(1)
		}
		b.checks.Add(1)
		w.WriteHeader(st)
		io.WriteString(w, "health")
		return
	}
	b.requests.Add(1)
	if r.URL.Path == "/slow" {
		b.slowStarted.Add(1)
		select {
		case <-b.release:
		case <-time.After(testTimeout):
		}
	}
	w.WriteHeader(int(b.status.Load()))
	io.WriteString(w, b.addr)
}

func (b *ctlBackend) lastCheckRequest() *http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastCheck
}

// startSet starts s with a bounded context.
func startSet(t testing.TB, s *Set) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := s.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
}

// hostByAddr returns the host of c at addr.
func hostByAddr(t testing.TB, c *Cluster, addr string) *Host {
	t.Helper()
	for _, h := range c.Hosts() {
		if h.Address() == addr {
			return h
		}
	}
	t.Fatalf("no host %s in %s", addr, addrs(c.Hosts()))
	return nil
}

// healthOf returns the Describe health of the host at addr.
func healthOf(s *Set, cluster, addr string) (string, uint32) {
	for _, ci := range s.Describe() {
		if ci.Name != cluster {
			continue
		}
		for _, hi := range ci.Hosts {
			if hi.Address == addr {
				return hi.Health, hi.TimesEjected
			}
		}
	}
	return "", 0
}

// pickAddrs picks n times and counts the hosts picked, by address.
func pickAddrs(t testing.TB, c *Cluster, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		h, err := c.Pick(nil)
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		got[h.Address()]++
	}
	return got
}

func TestHealthCheckHTTP(t *testing.T) {
	for _, proto := range []string{"http1", "http2"} {
		t.Run(proto, func(t *testing.T) {
			bs := []*ctlBackend{newCtlBackend(t, "127.0.0.1:0"), newCtlBackend(t, "127.0.0.1:0"), newCtlBackend(t, "127.0.0.1:0")}
			bad := bs[1]
			s, st := newTestSet(t, fmt.Sprintf(`  - name: web
    protocol: %s
    endpoints: [%q, %q, %q]
    health_check: {path: /healthz, interval: 30ms, timeout: 2s, unhealthy_threshold: 3, healthy_threshold: 2}
`, proto, bs[0].addr, bs[1].addr, bs[2].addr), Options{})
			c := s.Cluster(0)
			stat := func(name string) float64 { return stat(st, name, "web") }

			// Envoy's rule: unhealthy until the first check passes.
			if h, _ := healthOf(s, "web", bad.addr); h != "failed_active_hc/pending_active_hc" {
				t.Errorf("health before Start = %q, want failed_active_hc/pending_active_hc", h)
			}
			if got := stat("edge_cluster_membership_healthy"); got != 0 {
				t.Errorf("membership_healthy before Start = %v, want 0", got)
			}
			startSet(t, s)
			// Start returns after the first round: every host is healthy.
			for _, b := range bs {
				if !hostByAddr(t, c, b.addr).available() {
					t.Errorf("host %s not available right after Start", b.addr)
				}
			}
			if got := stat("edge_cluster_membership_healthy"); got != 3 {
				t.Errorf("membership_healthy after Start = %v, want 3", got)
			}
			r := bad.lastCheckRequest()
			wantProto := map[string]string{"http1": "HTTP/1.1", "http2": "HTTP/2.0"}[proto]
			if r.Method != "GET" || r.Host != "web" || r.UserAgent() != "edge-health-check" || r.Proto != wantProto {
				t.Errorf("check request: %s %s host %q user-agent %q; want GET %s, host web (the cluster name), user-agent edge-health-check",
					r.Method, r.Proto, r.Host, r.UserAgent(), wantProto)
			}

			// /healthz starts failing: after unhealthy_threshold failed
			// checks the host is out of rotation.
			badHost := hostByAddr(t, c, bad.addr)
			bad.healthStatus.Store(503)
			waitFor(t, "the failing host to become unhealthy", func() bool { return !badHost.available() })
			if got := bad.checksFailed.Load(); got < 3 {
				t.Errorf("host unhealthy after %d failed checks, want at least unhealthy_threshold (3)", got)
			}
			if h, _ := healthOf(s, "web", bad.addr); h != "failed_active_hc" {
				t.Errorf("health = %q, want failed_active_hc", h)
			}
			if got := stat("edge_cluster_membership_healthy"); got != 2 {
				t.Errorf("membership_healthy = %v, want 2", got)
			}
			before := bad.requests.Load()
			for range 20 {
				if got := pickDo(t, c, "/"); got == bad.addr {
					t.Fatalf("a request went to the unhealthy host %s", got)
				}
			}
			if got := bad.requests.Load() - before; got != 0 {
				t.Errorf("the unhealthy host served %d requests, want 0", got)
			}

			// It recovers after healthy_threshold passing checks.
			okBefore := bad.checksOK.Load()
			bad.healthStatus.Store(200)
			waitFor(t, "the host to recover", badHost.available)
			if got := bad.checksOK.Load() - okBefore; got < 2 {
				t.Errorf("host healthy again after %d passing checks, want at least healthy_threshold (2)", got)
			}
			if got := stat("edge_cluster_membership_healthy"); got != 3 {
				t.Errorf("membership_healthy after recovery = %v, want 3", got)
			}
			if got := pickAddrs(t, c, 30)[bad.addr]; got != 10 {
				t.Errorf("recovered host picked %d times in 30, want 10", got)
			}

			// Stats: every answered check counted once.
			s.Close()
			answered := 0
			for _, b := range bs {
				answered += int(b.checks.Load())
			}
			att, ok, fail := stat("edge_cluster_health_check_attempt"), stat("edge_cluster_health_check_success"), stat("edge_cluster_health_check_failure")
			// A check that Close interrupts is an attempt without a result.
			if int(ok+fail) > answered || answered > int(att) || att-(ok+fail) > 3 {
				t.Errorf("health_check attempt %v success %v failure %v with %d checks answered; want success + failure <= answered <= attempt <= success + failure + 3", att, ok, fail, answered)
			}
			if fail < 3 {
				t.Errorf("health_check_failure = %v, want at least 3", fail)
			}
			// Close stopped the checkers.
			n := bad.checks.Load()
			time.Sleep(100 * time.Millisecond)
			if got := bad.checks.Load(); got != n {
				t.Errorf("%d checks after Close, want none", got-n)
			}
		})
	}
}

func TestHealthCheckTCP(t *testing.T) {
	live := newCtlBackend(t, "127.0.0.1:0")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	s, st := newTestSet(t, fmt.Sprintf(`  - name: tcp
    endpoints: [%q, %q]
    health_check: {tcp: true, interval: 20ms, timeout: 1s, unhealthy_threshold: 1, healthy_threshold: 1}
`, live.addr, closed), Options{})
	startSet(t, s)
	c := s.Cluster(0)
	if h, _ := healthOf(s, "tcp", live.addr); h != "healthy" {
		t.Errorf("live host: %q, want healthy", h)
	}
	if h, _ := healthOf(s, "tcp", closed); h != "failed_active_hc" {
		t.Errorf("closed port: %q, want failed_active_hc", h)
	}
	if got := stat(st, "edge_cluster_membership_healthy", "tcp"); got != 1 {
		t.Errorf("membership_healthy = %v, want 1", got)
	}
	if got := stat(st, "edge_cluster_health_check_failure", "tcp"); got < 1 {
		t.Errorf("health_check_failure = %v, want at least 1", got)
	}
	if got := live.checks.Load() + live.requests.Load(); got != 0 {
		t.Errorf("TCP checks sent %d HTTP requests, want none", got)
	}
	// Something starts listening on the closed port: the host recovers.
	ln, err = net.Listen("tcp", closed)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", closed, err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	waitFor(t, "the port to pass its check", hostByAddr(t, c, closed).available)
}

func TestHealthCheckFollowsDNS(t *testing.T) {
	bs := make([]*ctlBackend, 3)
	bs[0] = newCtlBackend(t, "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(bs[0].addr)
	for i := 1; i < 3; i++ {
		bs[i] = newCtlBackend(t, fmt.Sprintf("127.0.0.%d:%s", i+1, port))
	}
	bs[2].healthStatus.Store(500)
	dns := newDNSServer(t)
	dns.set("api.edge.test", "127.0.0.1", "127.0.0.2")
	s, st := newTestSet(t, fmt.Sprintf(`  - name: api
    type: strict_dns
    dns_refresh_rate: 100ms
    endpoints: ["api.edge.test:%s"]
    health_check: {path: /healthz, interval: 20ms, timeout: 1s, unhealthy_threshold: 1, healthy_threshold: 1}
`, port), Options{Resolver: dns.resolver()})
	startSet(t, s)
	c := s.Cluster(0)
	if got := stat(st, "edge_cluster_membership_healthy", "api"); got != 2 {
		t.Fatalf("membership_healthy after Start = %v, want 2", got)
	}
	if r := bs[0].lastCheckRequest(); r.Host != "api.edge.test" {
		t.Errorf("check host header %q, want the DNS name api.edge.test", r.Host)
	}

	// 127.0.0.2 leaves, 127.0.0.3 (failing its checks) arrives.
	dns.set("api.edge.test", "127.0.0.1", "127.0.0.3")
	waitFor(t, "the host set to change", func() bool { return addrs(c.Hosts()) == bs[0].addr+" "+bs[2].addr })
	if h := hostByAddr(t, c, bs[2].addr); h.available() {
		t.Error("new host available before its first check")
	}
	waitFor(t, "the new host to fail its first check", func() bool {
		h, _ := healthOf(s, "api", bs[2].addr)
		return h == "failed_active_hc"
	})
	if got := stat(st, "edge_cluster_membership_healthy", "api"); got != 1 {
		t.Errorf("membership_healthy = %v, want 1", got)
	}
	// The removed host's checker stopped.
	n := bs[1].checks.Load()
	time.Sleep(100 * time.Millisecond)
	if got := bs[1].checks.Load(); got != n {
		t.Errorf("the removed host got %d checks after leaving, want none", got-n)
	}
	// The new host recovers.
	bs[2].healthStatus.Store(204)
	waitFor(t, "the new host to pass", hostByAddr(t, c, bs[2].addr).available)
	if got := stat(st, "edge_cluster_membership_healthy", "api"); got != 2 {
		t.Errorf("membership_healthy = %v, want 2", got)
	}
}

// TestHealthCheckWarmUpBound: Start does not wait for checks longer than
// their timeout, and an upstream that never answers fails its check.
func TestHealthCheckWarmUpBound(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // accepted, never answered
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	s, _ := newTestSet(t, fmt.Sprintf(`  - name: mute
    endpoints: [%q]
    health_check: {path: /healthz, interval: 1s, timeout: 200ms, unhealthy_threshold: 1, healthy_threshold: 1}
`, ln.Addr().String()), Options{})
	start := time.Now()
	startSet(t, s)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Start took %v, want about the check timeout (200ms)", d)
	}
	if h, _ := healthOf(s, "mute", ln.Addr().String()); !strings.HasPrefix(h, "failed_active_hc") || strings.Contains(h, "pending") {
		t.Errorf("health after Start = %q, want failed_active_hc (the first check timed out)", h)
	}
}

func TestHealthCheckLogicalDNS(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		t.Run(fmt.Sprint("tcp=", tcp), func(t *testing.T) {
			b := newCtlBackend(t, "127.0.0.1:0")
			_, port, _ := net.SplitHostPort(b.addr)
			dns := newDNSServer(t)
			dns.set("www.edge.test", "127.0.0.1")
			check := "{path: /healthz"
			if tcp {
				check = "{tcp: true"
			}
			s, st := newTestSet(t, fmt.Sprintf(`  - name: www
    type: logical_dns
    endpoints: ["www.edge.test:%s"]
    health_check: %s, interval: 20ms, timeout: 1s, unhealthy_threshold: 1, healthy_threshold: 1}
`, port, check), Options{Resolver: dns.resolver()})
			startSet(t, s)
			h := s.Cluster(0).Hosts()[0]
			if !h.available() {
				t.Fatal("logical_dns host not healthy after Start")
			}
			if got := stat(st, "edge_cluster_membership_healthy", "www"); got != 1 {
				t.Errorf("membership_healthy = %v, want 1", got)
			}
			if !tcp {
				if r := b.lastCheckRequest(); r == nil || r.Host != "www.edge.test" {
					t.Errorf("check request %v, want host www.edge.test", r)
				}
				b.healthStatus.Store(500)
				waitFor(t, "the host to fail", func() bool { return !h.available() })
			}
		})
	}
}
