package upstream

import (
	"fmt"
	"strings"
	"testing"
)

func hostsWithWeights(ws ...uint32) []*Host {
	hs := make([]*Host, len(ws))
	for i, w := range ws {
		hs[i] = &Host{weight: w, hostname: string(rune('a' + i))}
	}
	return hs
}

func TestRoundRobinExactOverCycle(t *testing.T) {
	tests := []struct {
		name    string
		weights []uint32
		cycle   int // picks per cycle: sum of weights / their GCD
		smooth  bool
	}{
		{"equal", []uint32{1, 1, 1}, 3, true},
		{"1-2-3", []uint32{1, 2, 3}, 6, true},
		{"gcd reduces the cycle", []uint32{20, 40, 60}, 6, true},
		{"one host", []uint32{7}, 1, true},
		{"skewed", []uint32{1000, 1}, 1001, true},
		{"long cycle uses the strided schedule", []uint32{70001, 3, 2, 1}, 70007, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hosts := hostsWithWeights(tt.weights...)
			rr := newRoundRobin(hosts)
			if got := rr.seq != nil; got != tt.smooth {
				t.Fatalf("precomputed smooth cycle = %v, want %v", got, tt.smooth)
			}
			g := uint32(0)
			for _, w := range tt.weights {
				g = uint32(gcd(uint64(g), uint64(w)))
			}
			for cycle := range 3 {
				counts := make(map[*Host]int)
				for range tt.cycle {
					counts[rr.pick()]++
				}
				for i, h := range hosts {
					if want := int(tt.weights[i] / g); counts[h] != want {
						t.Errorf("cycle %d: host %d (weight %d) picked %d times, want %d", cycle, i, tt.weights[i], counts[h], want)
					}
				}
			}
		})
	}
}

func TestRoundRobinIsSmooth(t *testing.T) {
	tests := []struct {
		weights []uint32
		want    string
	}{
		{[]uint32{5, 1, 1}, "aabacaa"},
		{[]uint32{1, 1, 1}, "abc"},
		{[]uint32{2, 1}, "aba"},
		{[]uint32{1, 2, 3}, "cbacbc"},
	}
	for _, tt := range tests {
		rr := newRoundRobin(hostsWithWeights(tt.weights...))
		var b strings.Builder
		for range len(tt.want) {
			b.WriteString(rr.pick().hostname)
		}
		if got := b.String(); got != tt.want {
			t.Errorf("weights %v: sequence %q, want %q", tt.weights, got, tt.want)
		}
	}
}

func TestStridedScheduleSpreads(t *testing.T) {
	// Early in a long cycle, the two equally heavy hosts take turns rather
	// than one taking the first half of the cycle.
	hosts := hostsWithWeights(50000, 50001, 1)
	rr := newRoundRobin(hosts)
	if rr.seq != nil {
		t.Fatal("want the strided schedule for this cycle")
	}
	counts := make(map[*Host]int)
	for range 1000 {
		counts[rr.pick()]++
	}
	if a, b := counts[hosts[0]], counts[hosts[1]]; a < 400 || b < 400 {
		t.Errorf("first 1000 picks: %d and %d for the two heavy hosts, want both ≥ 400 (interleaved)", a, b)
	}
}

func TestPickExcludes(t *testing.T) {
	s, _ := newTestSet(t, `  - name: c
    endpoints: ["10.0.0.1:80", "10.0.0.2:80", {address: "10.0.0.3:80", weight: 1000}]
`, Options{})
	c := s.Cluster(0)
	hosts := c.Hosts()
	tests := []struct {
		name    string
		exclude []*Host
		allowed []*Host
	}{
		{"no retry", nil, hosts},
		{"heavy host tried", []*Host{hosts[2]}, hosts[:2]},
		{"two tried", []*Host{hosts[0], hosts[2]}, hosts[1:2]},
		{"all tried: any host rather than none", hosts, hosts},
	}
	for _, tt := range tests {
		for range 20 {
			h, err := c.Pick(nil, tt.exclude...)
			if err != nil {
				t.Fatal(err)
			}
			if !excluded(tt.allowed, h) {
				t.Errorf("%s: Pick = %s, want one of %s", tt.name, h.Address(), addrs(tt.allowed))
			}
		}
	}
}

func clustersYAML(n int, weight func(i int) int) string {
	var b strings.Builder
	b.WriteString("  - name: c\n    endpoints:\n")
	for i := range n {
		fmt.Fprintf(&b, "      - {address: \"10.0.%d.%d:80\", weight: %d}\n", i/250, i%250+1, weight(i))
	}
	return b.String()
}

func TestClusterPickWeighted(t *testing.T) {
	s, _ := newTestSet(t, clustersYAML(3, func(i int) int { return i + 1 }), Options{})
	c := s.Cluster(s.Index()["c"])
	counts := make(map[string]int)
	for range 60 {
		h, err := c.Pick(nil)
		if err != nil {
			t.Fatal(err)
		}
		counts[h.Address()]++
	}
	want := map[string]int{"10.0.0.1:80": 10, "10.0.0.2:80": 20, "10.0.0.3:80": 30}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("60 picks = %v, want %v", counts, want)
	}
}

func BenchmarkPick(b *testing.B) {
	for _, n := range []int{3, 100} {
		s, _ := newTestSet(b, clustersYAML(n, func(i int) int { return i%3 + 1 }), Options{})
		c := s.Cluster(0)
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Pick(nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("hosts=%d/retry", n), func(b *testing.B) {
			tried, _ := c.Pick(nil)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Pick(nil, tried); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	s, _ := newTestSet(t, clustersYAML(100, func(i int) int { return i%3 + 1 }), Options{})
	c := s.Cluster(0)
	tried, _ := c.Pick(nil)
	if n := testing.AllocsPerRun(1000, func() {
		c.Pick(nil)
		c.Pick(nil, tried)
	}); n != 0 {
		t.Errorf("Pick allocates %v times per call, want 0", n)
	}
}
