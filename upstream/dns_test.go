package upstream

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestStrictDNS(t *testing.T) {
	for _, proto := range []string{"http1", "http2"} {
		t.Run(proto, func(t *testing.T) {
			bs := backendsOnOnePort(t, 3)
			_, port, _ := net.SplitHostPort(bs[0].addr)
			a1, a2, a3 := bs[0].addr, bs[1].addr, bs[2].addr
			dns := newDNSServer(t)
			dns.set("api.edge.test", "127.0.0.2", "127.0.0.1")
			var logs logBuffer
			s, st := newTestSet(t, fmt.Sprintf(`  - name: api
    type: strict_dns
    protocol: %s
    dns_refresh_rate: 100ms
    endpoints: ["api.edge.test:%s"]
`, proto, port), Options{Resolver: dns.resolver(), Logger: logs.logger()})
			c := s.Cluster(0)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if err := s.Start(ctx); err != nil {
				t.Fatalf("Start: %v", err)
			}
			// Warm-up done: every address is a host, sorted, named by the
			// DNS name.
			if got, want := addrs(c.Hosts()), a1+" "+a2; got != want {
				t.Fatalf("hosts after Start = %q, want %q", got, want)
			}
			if h := c.Hosts()[0]; h.Hostname() != "api.edge.test" {
				t.Errorf("Hostname = %q, want api.edge.test", h.Hostname())
			}
			served := map[string]int{}
			for range 4 {
				served[pickDo(t, c, "/")]++
			}
			if served[a1] != 2 || served[a2] != 2 {
				t.Errorf("4 requests served %v, want 2 by each address", served)
			}
			if got := stat(st, "edge_cluster_membership_total", "api"); got != 2 {
				t.Errorf("membership_total = %v, want 2", got)
			}

			// A request in flight on 127.0.0.2 when DNS drops it.
			keep, gone := c.Hosts()[0], c.Hosts()[1]
			rctx, rcancel := context.WithTimeout(context.Background(), testTimeout)
			defer rcancel()
			slow, err := gone.RoundTrip(rctx, get("/slow"))
			if err != nil {
				t.Fatal(err)
			}
			dns.set("api.edge.test", "127.0.0.1", "127.0.0.3")
			waitFor(t, "the refresh to replace 127.0.0.2 by 127.0.0.3", func() bool {
				return addrs(c.Hosts()) == a1+" "+a3
			})
			if c.Hosts()[0] != keep {
				t.Error("the host whose address stayed was replaced; want it (and its pool) kept")
			}
			for range 4 {
				if got := pickDo(t, c, "/"); got == a2 {
					t.Errorf("request went to removed host %s", got)
				}
			}
			// The in-flight request completes, then the removed host's
			// pool closes.
			close(bs[1].release)
			body, err := io.ReadAll(slow.Body)
			gone.Release(slow)
			if err != nil || string(body) != a2 {
				t.Fatalf("in-flight request on the removed host: body %q, err %v; want %q", body, err, a2)
			}
			waitFor(t, "the removed host's connections to close", func() bool {
				return bs[1].closed.Load() == bs[1].opened.Load()
			})

			// A failing DNS server: the hosts stay.
			dns.setFail(true)
			q := dns.queries.Load()
			waitFor(t, "two failed refreshes", func() bool { return dns.queries.Load() >= q+4 })
			time.Sleep(50 * time.Millisecond)
			if got := addrs(c.Hosts()); got != a1+" "+a3 {
				t.Errorf("hosts after failed refreshes = %q, want %q kept", got, a1+" "+a3)
			}
			if !strings.Contains(logs.String(), "DNS refresh failed") {
				t.Errorf("failed refresh not logged; log:\n%s", logs.String())
			}
			dns.setFail(false)
			dns.set("api.edge.test", "127.0.0.3")
			waitFor(t, "recovery to 127.0.0.3 alone", func() bool { return addrs(c.Hosts()) == a3 })
			if got := pickDo(t, c, "/"); got != a3 {
				t.Errorf("served by %s, want %s", got, a3)
			}
		})
	}
}

func TestStrictDNSSeveralEndpoints(t *testing.T) {
	dns := newDNSServer(t)
	dns.set("a.edge.test", "10.0.0.2", "10.0.0.1")
	dns.set("b.edge.test", "10.0.0.1", "fd00::1")
	s, _ := newTestSet(t, `  - name: multi
    type: strict_dns
    endpoints: ["a.edge.test:80", {address: "b.edge.test:80", weight: 3}, "10.9.9.9:81"]
`, Options{Resolver: dns.resolver()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range s.Cluster(0).Hosts() {
		got = append(got, fmt.Sprintf("%s %s w%d", h.Address(), h.Hostname(), h.Weight()))
	}
	// 10.0.0.1 belongs to the first endpoint that yields it.
	want := []string{"10.0.0.1:80 a.edge.test w1", "10.0.0.2:80 a.edge.test w1", "[fd00::1]:80 b.edge.test w3", "10.9.9.9:81 10.9.9.9 w1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("hosts = %q, want %q", got, want)
	}
}

func TestStartReportsFailedWarmUp(t *testing.T) {
	dns := newDNSServer(t)
	s, _ := newTestSet(t, `  - name: missing
    type: strict_dns
    dns_refresh_rate: 100ms
    endpoints: ["missing.edge.test:80"]
`, Options{Resolver: dns.resolver()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := s.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "cluster missing") {
		t.Errorf("Start with an unresolvable name: %v, want an error naming the cluster", err)
	}
	// The loop keeps trying: the name appears later.
	dns.set("missing.edge.test", "10.0.0.1")
	waitFor(t, "a later refresh to find the name", func() bool { return len(s.Cluster(0).Hosts()) == 1 })
	if err := s.Start(ctx); err == nil {
		t.Error("second Start succeeded, want an error")
	}
}

func TestLogicalDNS(t *testing.T) {
	bs := backendsOnOnePort(t, 2)
	_, port, _ := net.SplitHostPort(bs[0].addr)
	a1, a2 := bs[0].addr, bs[1].addr
	dns := newDNSServer(t)
	dns.set("www.edge.test", "127.0.0.2", "127.0.0.1")
	s, _ := newTestSet(t, fmt.Sprintf(`  - name: www
    type: logical_dns
    protocol: http2
    dns_refresh_rate: 100ms
    endpoints: ["www.edge.test:%s"]
`, port), Options{Resolver: dns.resolver()})
	c := s.Cluster(0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	hosts := c.Hosts()
	if len(hosts) != 1 || hosts[0].Address() != a2 || hosts[0].Hostname() != "www.edge.test" {
		t.Fatalf("hosts = %q, want one host at the first address %s named www.edge.test", addrs(hosts), a2)
	}
	h := hosts[0]
	if got := pickDo(t, c, "/"); got != a2 {
		t.Fatalf("served by %s, want %s", got, a2)
	}
	// DNS moves: new connections go to the new first address, the open
	// connection stays.
	dns.set("www.edge.test", "127.0.0.1")
	waitFor(t, "the address to follow DNS", func() bool { return h.Address() == a1 })
	if c.Hosts()[0] != h {
		t.Error("logical_dns host replaced; want the same host (and pool)")
	}
	if got := pickDo(t, c, "/"); got != a2 {
		t.Errorf("after the DNS change served by %s, want %s (existing connection kept)", got, a2)
	}
	bs[1].srv.Close()
	waitFor(t, "a new connection to the new address", func() bool {
		rctx, rcancel := context.WithTimeout(context.Background(), testTimeout)
		defer rcancel()
		resp, err := h.RoundTrip(rctx, get("/"))
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		h.Release(resp)
		return string(b) == a1
	})
}
