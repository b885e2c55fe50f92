package upstream

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeproxy/edge/edge/message"
	"github.com/edgeproxy/edge/edge/stats"
)

var allPolicies = []string{"round_robin", "least_request", "random", "ring_hash", "maglev"}

// policyCluster compiles cluster "c" with lb_policy policy, the YAML
// lines extra (e.g. a hash_policy) and one static endpoint per weight, at
// 10.0.0.1:80, 10.0.0.2:80, ...
func policyCluster(t testing.TB, policy, extra string, weights ...int) (*Cluster, *stats.Store) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "  - name: c\n    lb_policy: %s\n", policy)
	if extra != "" {
		b.WriteString(extra)
	}
	b.WriteString("    endpoints:\n")
	for i, w := range weights {
		fmt.Fprintf(&b, "      - {address: \"10.0.%d.%d:80\", weight: %d}\n", i/250, i%250+1, w)
	}
	s, st := newTestSet(t, b.String(), Options{})
	return s.Cluster(0), st
}

// seedLB makes the cluster's current balancer draw from a seeded source,
// so that a test's picks are the same on every run.
func seedLB(c *Cluster, seed uint64) {
	c.snap.Load().lb.rnd = rand.New(rand.NewPCG(seed, seed)).Uint64
}

// setUnavailable makes the given hosts of c unavailable, as failing
// active health checks do, and the others available.
func setUnavailable(c *Cluster, down ...*Host) {
	for _, h := range c.Hosts() {
		var f uint32
		if excluded(down, h) {
			f = hostFailedHC
		}
		h.hs.flags.Store(f)
	}
}

func equalWeights(n int) []int {
	w := make([]int, n)
	for i := range w {
		w[i] = 1
	}
	return w
}

// countPicks picks n times with req and the exclusions and counts the
// hosts picked.
func countPicks(t testing.TB, c *Cluster, n int, req *message.Request, exclude ...*Host) map[*Host]int {
	t.Helper()
	counts := make(map[*Host]int)
	for range n {
		h, err := c.Pick(req, exclude...)
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		counts[h]++
	}
	return counts
}

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		in      string
		want    policy
		wantErr bool
	}{
		{"", policyRoundRobin, false},
		{"round_robin", policyRoundRobin, false},
		{"least_request", policyLeastRequest, false},
		{"random", policyRandom, false},
		{"ring_hash", policyRingHash, false},
		{"maglev", policyMaglev, false},
		{"ROUND_ROBIN", 0, true},
		{"least_conn", 0, true},
	}
	for _, tt := range tests {
		got, err := parsePolicy(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && got != tt.want) {
			t.Errorf("parsePolicy(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestPolicyBuildsItsTables(t *testing.T) {
	tests := []struct {
		policy              string
		rr, ring, maglev    bool
		hashed, logsWarning bool
	}{
		{policy: "round_robin", rr: true},
		{policy: "least_request"},
		{policy: "random"},
		{policy: "ring_hash", ring: true, hashed: true},
		{policy: "maglev", maglev: true, hashed: true},
	}
	for _, tt := range tests {
		var logs logBuffer
		s, _ := newTestSet(t, fmt.Sprintf("  - name: c\n    lb_policy: %s\n    endpoints: [\"10.0.0.1:80\", \"10.0.0.2:80\"]\n", tt.policy), Options{Logger: logs.logger()})
		b := s.Cluster(0).snap.Load().lb
		if got := [...]bool{b.rr != nil, b.ring != nil, b.maglev != nil, b.hashed()}; got != [...]bool{tt.rr, tt.ring, tt.maglev, tt.hashed} {
			t.Errorf("%s: round robin, ring, maglev, hashed = %v, want %v", tt.policy, got, [...]bool{tt.rr, tt.ring, tt.maglev, tt.hashed})
		}
		if l := logs.String(); strings.Contains(l, "WARN") {
			t.Errorf("%s: warning logged: %s", tt.policy, l)
		}
	}
}

func TestWeightsRespected(t *testing.T) {
	const picks = 60000
	weights := []int{1, 2, 3}
	for _, policy := range []string{"round_robin", "random", "least_request"} {
		t.Run(policy, func(t *testing.T) {
			c, st := policyCluster(t, policy, "", weights...)
			seedLB(c, 1)
			counts := countPicks(t, c, picks, nil)
			for i, h := range c.Hosts() {
				want := float64(picks) * float64(weights[i]) / 6
				if got := float64(counts[h]); got < want*0.97 || got > want*1.03 {
					t.Errorf("host %s (weight %d): %v picks, want %v ± 3%%", h.Address(), weights[i], got, want)
				}
			}
			if n := stat(st, "edge_cluster_lb_healthy_panic", "c"); n != 0 {
				t.Errorf("edge_cluster_lb_healthy_panic = %v, want 0", n)
			}
		})
	}
}

// TestRandomIsNotACycle tells random from round robin: over windows of
// one weight cycle, round robin picks every host exactly by weight;
// random picks do not.
func TestRandomIsNotACycle(t *testing.T) {
	for _, tt := range []struct {
		policy string
		exact  bool
	}{{"round_robin", true}, {"random", false}} {
		c, _ := policyCluster(t, tt.policy, "", 1, 2, 3)
		seedLB(c, 7)
		exact := true
		for range 100 {
			counts := countPicks(t, c, 6, nil)
			for i, h := range c.Hosts() {
				if counts[h] != i+1 {
					exact = false
				}
			}
		}
		if exact != tt.exact {
			t.Errorf("%s: every window of 6 picks exactly 1:2:3 = %v, want %v", tt.policy, exact, tt.exact)
		}
	}
}

// TestLeastRequestPrefersIdleHosts checks the comparison itself: with one
// host busy, least_request sends it only the picks where both draws land
// on it (1/n² of them).
func TestLeastRequestPrefersIdleHosts(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		active  []int64
		want    []float64 // expected share per host
	}{
		// Host 0 busy: it wins only when drawn twice: 1/16.
		{"equal weights, one busy", []int{1, 1, 1, 1}, []int64{5, 0, 0, 0}, []float64{1.0 / 16, 5.0 / 16, 5.0 / 16, 5.0 / 16}},
		// Active per weight 2/1 vs 2/2: the heavier host wins every
		// mixed draw: (1/3)² and 1 - (1/3)².
		{"weighted, load per weight", []int{1, 2}, []int64{2, 2}, []float64{1.0 / 9, 8.0 / 9}},
		// Idle: ties keep the first draw, so shares follow the weights.
		{"weighted, idle", []int{1, 2}, []int64{0, 0}, []float64{1.0 / 3, 2.0 / 3}},
	}
	const picks = 40000
	for _, tt := range tests {
		c, _ := policyCluster(t, "least_request", "", tt.weights...)
		seedLB(c, 3)
		for i, h := range c.Hosts() {
			h.active.Store(tt.active[i])
		}
		counts := countPicks(t, c, picks, nil)
		for i, h := range c.Hosts() {
			h.active.Store(0)
			got := float64(counts[h]) / picks
			if d := got - tt.want[i]; d < -0.01 || d > 0.01 {
				t.Errorf("%s: host %d got %.3f of the picks, want %.3f ± 0.01", tt.name, i, got, tt.want[i])
			}
		}
	}
}

// TestLeastRequestAvoidsSlowHost sends concurrent requests through real
// loopback upstreams, one of which answers slowly: least_request keeps
// requests off it, as their active counts rise there.
func TestLeastRequestAvoidsSlowHost(t *testing.T) {
	const (
		workers  = 6
		requests = 300
		slowFor  = 20 * time.Millisecond
	)
	// Three upstreams on 127.0.0.1-3 with one port; the first is slow.
	var addrs []string
	var port string
	for i := range 3 {
		addr := "127.0.0.1:0"
		if i > 0 {
			addr = fmt.Sprintf("127.0.0.%d:%s", i+1, port)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ = net.SplitHostPort(ln.Addr().String())
		addrs = append(addrs, ln.Addr().String())
		delay := time.Duration(0)
		if i == 0 {
			delay = slowFor
		}
		srv := &http.Server{ReadHeaderTimeout: testTimeout, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(delay)
			io.WriteString(w, "ok")
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	s, _ := newTestSet(t, fmt.Sprintf("  - name: c\n    lb_policy: least_request\n    endpoints: [%q, %q, %q]\n", addrs[0], addrs[1], addrs[2]), Options{})
	c := s.Cluster(0)
	slow := c.Hosts()[0]

	var (
		mu     sync.Mutex
		counts = make(map[*Host]int)
		jobs   = make(chan struct{}, requests)
		wg     sync.WaitGroup
	)
	for range requests {
		jobs <- struct{}{}
	}
	close(jobs)
	for range workers {
		wg.Go(func() {
			for range jobs {
				h, err := c.Pick(nil)
				if err != nil {
					t.Error(err)
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				resp, err := h.RoundTrip(ctx, get("/"))
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					h.Release(resp)
				}
				cancel()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				counts[h]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	fast := (counts[c.Hosts()[1]] + counts[c.Hosts()[2]]) / 2
	t.Logf("requests per host: slow %d, fast %d and %d", counts[slow], counts[c.Hosts()[1]], counts[c.Hosts()[2]])
	// Round robin would send it a third (100). least_request sends it
	// little more than the picks whose two draws both land on it (1/9).
	if counts[slow]*2 > fast {
		t.Errorf("slow host got %d requests, fast hosts %d on average; want under half of that", counts[slow], fast)
	}
}

func TestRoundRobinSpreadsAnUnavailableHostsTurns(t *testing.T) {
	// b is unavailable: its turns go to a and c by weight (half each), not
	// to the host after it in the cycle.
	c, st := policyCluster(t, "round_robin", "", 1, 1, 1)
	seedLB(c, 5)
	hosts := c.Hosts()
	setUnavailable(c, hosts[1])
	counts := countPicks(t, c, 30000, nil)
	if counts[hosts[1]] != 0 {
		t.Errorf("unavailable host picked %d times", counts[hosts[1]])
	}
	for _, h := range []*Host{hosts[0], hosts[2]} {
		if got := float64(counts[h]) / 30000; got < 0.48 || got > 0.52 {
			t.Errorf("host %s got %.3f of the picks, want 0.5 ± 0.02", h.Address(), got)
		}
	}
	if n := stat(st, "edge_cluster_lb_healthy_panic", "c"); n != 0 {
		t.Errorf("edge_cluster_lb_healthy_panic = %v, want 0 (2 of 3 available)", n)
	}
}

// TestExclusionEveryPolicy checks that a retry avoids the hosts it tried,
// under every policy, and gets some host when it tried them all.
func TestExclusionEveryPolicy(t *testing.T) {
	for _, policy := range allPolicies {
		t.Run(policy, func(t *testing.T) {
			extra := ""
			if policy == "ring_hash" || policy == "maglev" {
				extra = "    hash_policy: [{header: x-user}]\n"
			}
			c, _ := policyCluster(t, policy, extra, 1, 2, 3, 4)
			seedLB(c, 11)
			hosts := c.Hosts()
			tests := []struct {
				name    string
				exclude []*Host
				allowed []*Host
			}{
				{"none tried", nil, hosts},
				{"heaviest tried", hosts[3:], hosts[:3]},
				{"three tried", hosts[1:], hosts[:1]},
				{"two tried", []*Host{hosts[0], hosts[2]}, []*Host{hosts[1], hosts[3]}},
				{"all tried: any host rather than none", hosts, hosts},
			}
			for _, tt := range tests {
				seen := make(map[*Host]bool)
				for i := range 400 {
					req := get("/")
					req.Header.Add("x-user", fmt.Sprint("user-", i))
					h, err := c.Pick(req, tt.exclude...)
					if err != nil {
						t.Fatal(err)
					}
					if !excluded(tt.allowed, h) {
						t.Fatalf("%s: Pick = %s, want one of %s", tt.name, h.Address(), addrs(tt.allowed))
					}
					seen[h] = true
				}
				if len(seen) != len(tt.allowed) {
					t.Errorf("%s: picked %d distinct hosts, want all %d allowed ones", tt.name, len(seen), len(tt.allowed))
				}
			}
		})
	}
}

// TestPanicThreshold: unavailable hosts get no requests while at least
// half the hosts are available; below that the cluster is in panic, picks
// ignore health and are counted.
func TestPanicThreshold(t *testing.T) {
	for _, policy := range allPolicies {
		t.Run(policy, func(t *testing.T) {
			c, st := policyCluster(t, policy, "", equalWeights(4)...)
			seedLB(c, 13)
			hosts := c.Hosts()
			var lastPanics float64
			for down := 0; down <= 4; down++ {
				setUnavailable(c, hosts[:down]...)
				counts := countPicks(t, c, 4000, nil)
				panics := stat(st, "edge_cluster_lb_healthy_panic", "c") - lastPanics
				lastPanics += panics
				inPanic := down > 2 // fewer than 2 of 4 available
				for i, h := range hosts {
					switch {
					case !inPanic && i < down && counts[h] > 0:
						t.Errorf("%d of 4 down: unavailable host %d picked %d times", down, i, counts[h])
					case (inPanic || i >= down) && counts[h] < 500:
						t.Errorf("%d of 4 down: host %d picked %d times of 4000, want about %d", down, i, counts[h], 4000/max(4-down, 1))
					}
				}
				switch {
				case !inPanic && panics != 0:
					t.Errorf("%d of 4 down: edge_cluster_lb_healthy_panic rose by %v, want 0", down, panics)
				// Every pick whose first choice was unavailable counts:
				// at least the unavailable hosts' share.
				case inPanic && panics < 4000*float64(down)/4*0.9:
					t.Errorf("%d of 4 down: edge_cluster_lb_healthy_panic rose by %v, want ≥ %v", down, panics, 4000*float64(down)/4*0.9)
				}
			}
		})
	}
}

func TestPickEmptyClusterFails(t *testing.T) {
	var c Cluster
	if _, err := c.Pick(nil); err != ErrNoHealthyEndpoint {
		t.Errorf("Pick on a cluster without hosts: %v, want ErrNoHealthyEndpoint", err)
	}
}

// keyedRequest returns a request whose hash key (for hash_policy kind
// header x-user, cookie session or source_ip) is key.
func keyedRequest(kind, key string) *message.Request {
	req := get("/")
	switch kind {
	case "header":
		req.Header.Add("x-user", key)
	case "cookie":
		req.Header.Add("cookie", "theme=dark; session="+key)
	case "source_ip":
		req.RemoteAddr = netip.AddrPortFrom(netip.MustParseAddr(key), 40000)
	}
	return req
}

func BenchmarkPickPolicies(b *testing.B) {
	for _, policy := range allPolicies {
		for _, n := range []int{3, 100} {
			weights := make([]int, n)
			for i := range weights {
				weights[i] = i%3 + 1
			}
			extra := ""
			hashed := policy == "ring_hash" || policy == "maglev"
			if hashed {
				extra = "    hash_policy: [{header: x-user}, {cookie: session}, {source_ip: true}]\n"
			}
			c, _ := policyCluster(b, policy, extra, weights...)
			req := get("/")
			req.Header.Add("accept", "*/*")
			req.Header.Add("x-user", "alice")
			req.Header.Add("cookie", "theme=dark; session=abc123")
			req.RemoteAddr = netip.MustParseAddrPort("192.0.2.1:40000")
			b.Run(fmt.Sprintf("%s/hosts=%d", policy, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.Pick(req); err != nil {
						b.Fatal(err)
					}
				}
			})
			tried, _ := c.Pick(req)
			b.Run(fmt.Sprintf("%s/hosts=%d/retry", policy, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.Pick(req, tried); err != nil {
						b.Fatal(err)
					}
				}
			})
			if hashed {
				b.Run(fmt.Sprintf("%s/hosts=%d/nokey", policy, n), func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if _, err := c.Pick(nil); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

func TestPickPoliciesDoNotAllocate(t *testing.T) {
	for _, policy := range allPolicies {
		extra := ""
		if policy == "ring_hash" || policy == "maglev" {
			extra = "    hash_policy: [{header: x-user}, {cookie: session}, {source_ip: true}]\n"
		}
		c, _ := policyCluster(t, policy, extra, equalWeights(10)...)
		hosts := c.Hosts()
		req := keyedRequest("header", "alice")
		req.Header.Add("cookie", "a=b; session=s1")
		req.RemoteAddr = netip.MustParseAddrPort("[2001:db8::1]:443")
		// Half the hosts down: the slow path (panic check, redraws, walks).
		setUnavailable(c, hosts[:4]...)
		if n := testing.AllocsPerRun(500, func() {
			c.Pick(req)
			c.Pick(nil)
			c.Pick(req, hosts[5])
			c.Pick(req, hosts...)
		}); n != 0 {
			t.Errorf("%s: Pick allocates %v times per call, want 0", policy, n)
		}
	}
}
