package upstream

import (
	"fmt"
	"math/bits"
	"net/netip"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/edge/message"
)

var hashPolicies = []string{"ring_hash", "maglev"}

// hostsAt makes hosts with the given addresses and weight 1, as a cluster
// would (without pools: balancers only read addresses and weights).
func hostsAt(addrs ...string) []*Host {
	hs := make([]*Host, len(addrs))
	for i, a := range addrs {
		hs[i] = &Host{weight: 1, hostname: a}
		hs[i].addr.Store(&a)
	}
	return hs
}

func hostAddrs(n, from int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("10.1.0.%d:8080", from+i))
	}
	return out
}

// lookup returns the host a balancer gives hash, with every host
// available and none excluded.
func lookup(b *balancer, hash uint64) *Host {
	return b.choose(hash, &filter{hosts: b.hosts})
}

func keyHash(i int) uint64 { return xxhash.Sum64String(fmt.Sprint("key-", i)) }

func TestHashSameKeySameHostAndSpread(t *testing.T) {
	const keys = 10000
	for _, policy := range hashPolicies {
		b := newBalancer(policy, hostsAt(hostAddrs(4, 1)...))
		counts := make(map[*Host]int)
		for i := range keys {
			h := lookup(b, keyHash(i))
			if again := lookup(b, keyHash(i)); again != h {
				t.Fatalf("%s: key %d went to %s, then to %s", policy, i, h.Address(), again.Address())
			}
			counts[h]++
		}
		for _, h := range b.hosts {
			if share := float64(counts[h]) / keys; share < 0.20 || share > 0.30 {
				t.Errorf("%s: host %s has %.3f of the keys, want 0.25 ± 0.05", policy, h.Address(), share)
			}
		}
	}
}

// TestHashMembershipChange rebuilds the balancer for a smaller and a
// larger host set, as a DNS refresh does, and counts the keys that move.
func TestHashMembershipChange(t *testing.T) {
	const keys = 10000
	tests := []struct {
		policy string
		// Keys of the hosts that stay and move anyway, at most, per 10000
		// (ring_hash: none; maglev: a few, as the paper says).
		strayRemove, strayAdd int
	}{
		{"ring_hash", 0, 0},
		{"maglev", 100, 100},
	}
	for _, tt := range tests {
		for _, n := range []int{4, 10} {
			all := hostsAt(hostAddrs(n+1, 1)...)
			before := newBalancer(tt.policy, all[:n])
			gone := all[1]
			removed := newBalancer(tt.policy, append(append([]*Host{}, all[:1]...), all[2:n]...))
			added := newBalancer(tt.policy, all)
			newcomer := all[n]
			var stray, movedGone, moved, strayAdded int
			for i := range keys {
				k := keyHash(i)
				h := lookup(before, k)
				switch r := lookup(removed, k); {
				case h == gone:
					movedGone++
				case r != h:
					stray++
				}
				switch a := lookup(added, k); {
				case a == newcomer:
					moved++
				case a != h:
					strayAdded++
				}
			}
			if stray > tt.strayRemove {
				t.Errorf("%s, %d hosts, one removed: %d keys of other hosts moved, want ≤ %d", tt.policy, n, stray, tt.strayRemove)
			}
			if movedGone == 0 {
				t.Errorf("%s, %d hosts: the removed host had no keys", tt.policy, n)
			}
			// Adding a host to n moves about 1/(n+1) of the keys, to it.
			want := keys / (n + 1)
			if moved < want*8/10 || moved > want*12/10 {
				t.Errorf("%s, %d hosts, one added: %d keys moved to it, want %d ± 20%%", tt.policy, n, moved, want)
			}
			if strayAdded > tt.strayAdd {
				t.Errorf("%s, %d hosts, one added: %d keys moved between old hosts, want ≤ %d", tt.policy, n, strayAdded, tt.strayAdd)
			}
			t.Logf("%s, %d hosts: remove one: %d other keys moved; add one: %d moved to it, %d between others", tt.policy, n, stray, moved, strayAdded)
		}
	}
}

// TestHashTablesFollowWeights counts the ring points and maglev slots
// each host owns.
func TestHashTablesFollowWeights(t *testing.T) {
	hosts := hostsAt(hostAddrs(3, 1)...)
	for i, h := range hosts {
		h.weight = uint32(i + 1)
	}
	r := newHashRing(hosts)
	points := make([]int, 3)
	for _, o := range r.owner {
		points[o]++
	}
	if want := []int{342, 683, 1024}; fmt.Sprint(points) != fmt.Sprint(want) {
		t.Errorf("ring points per host (weights 1:2:3) = %v, want %v", points, want)
	}
	m := newMaglevTable(hosts)
	slots := make([]int, 3)
	for _, o := range m.slots {
		slots[o]++
	}
	for i, n := range slots {
		want := maglevSize * (i + 1) / 6
		if n < want-maglevSize/100 || n > want+maglevSize/100 {
			t.Errorf("maglev slots of host %d (weight %d) = %d, want %d ± 1%%", i, i+1, n, want)
		}
	}
	// One host alone: Envoy's minimum ring size.
	if n := len(newHashRing(hosts[:1]).hashes); n != 1024 {
		t.Errorf("ring size for one host = %d, want 1024", n)
	}
}

func TestHashRingIsKetama(t *testing.T) {
	// A key hashing exactly onto a point goes to its host, a key just past
	// it to the next point's host, and one past the last point wraps to
	// the first.
	b := newBalancer("ring_hash", hostsAt(hostAddrs(3, 1)...))
	r := b.ring
	for _, i := range []int{0, 1, 500, len(r.hashes) - 2} {
		if got, want := lookup(b, r.hashes[i]), b.hosts[r.owner[i]]; got != want {
			t.Errorf("hash of point %d: %s, want %s", i, got.Address(), want.Address())
		}
		if got, want := lookup(b, r.hashes[i]+1), b.hosts[r.owner[i+1]]; got != want {
			t.Errorf("hash after point %d: %s, want %s", i, got.Address(), want.Address())
		}
	}
	if got, want := lookup(b, r.hashes[len(r.hashes)-1]+1), b.hosts[r.owner[0]]; got != want {
		t.Errorf("hash past the last point: %s, want %s (wrap around)", got.Address(), want.Address())
	}
	// Points are at xxHash64("ip:port_i"), as Envoy places them.
	want := xxhash.Sum64String("10.1.0.1:8080_0")
	found := false
	for i, h := range r.hashes {
		if h == want && b.hosts[r.owner[i]].Address() == "10.1.0.1:8080" {
			found = true
		}
	}
	if !found {
		t.Error(`no point at xxHash64("10.1.0.1:8080_0") owned by 10.1.0.1:8080`)
	}
}

func TestRequestHash(t *testing.T) {
	h := func(s string) uint64 { return xxhash.Sum64String(s) }
	combine := func(a, b uint64) uint64 { return bits.RotateLeft64(a, 1) ^ b }
	req := func(remote string, fields ...string) *message.Request {
		r := get("/")
		for i := 0; i+1 < len(fields); i += 2 {
			r.Header.Add(fields[i], fields[i+1])
		}
		if remote != "" {
			r.RemoteAddr = netip.MustParseAddrPort(remote)
		}
		return r
	}
	hdr := config.HashPolicy{Header: "X-User"}
	ck := config.HashPolicy{Cookie: "session"}
	ip := config.HashPolicy{SourceIP: true}
	tests := []struct {
		name     string
		policies []config.HashPolicy
		req      *message.Request
		want     uint64
		ok       bool
	}{
		{"nil request", []config.HashPolicy{hdr}, nil, 0, false},
		{"header", []config.HashPolicy{hdr}, req("", "x-user", "alice"), h("alice"), true},
		{"header empty value", []config.HashPolicy{hdr}, req("", "x-user", ""), h(""), true},
		{"header absent", []config.HashPolicy{hdr}, req("", "x-other", "alice"), 0, false},
		{"header twice, any order", []config.HashPolicy{hdr}, req("", "x-user", "b", "x-user", "a"), h("a") + h("b"), true},
		{"cookie", []config.HashPolicy{ck}, req("", "cookie", "session=s1"), h("s1"), true},
		{"cookie among others", []config.HashPolicy{ck}, req("", "cookie", "theme=dark;  session=s1 ; x=y"), h("s1"), true},
		{"cookie quoted", []config.HashPolicy{ck}, req("", "cookie", `session="s1"`), h("s1"), true},
		{"cookie in a second field", []config.HashPolicy{ck}, req("", "cookie", "a=b", "cookie", "session=s2"), h("s2"), true},
		{"cookie name is a suffix of another", []config.HashPolicy{ck}, req("", "cookie", "xsession=s1"), 0, false},
		{"cookie empty", []config.HashPolicy{ck}, req("", "cookie", "session="), 0, false},
		{"cookie absent", []config.HashPolicy{ck}, req("", "x-user", "session=s1"), 0, false},
		{"source ip v4", []config.HashPolicy{ip}, req("192.0.2.7:1234"), h("192.0.2.7"), true},
		{"source ip port ignored", []config.HashPolicy{ip}, req("192.0.2.7:5678"), h("192.0.2.7"), true},
		{"source ip v4-mapped", []config.HashPolicy{ip}, req("[::ffff:192.0.2.7]:1"), h("192.0.2.7"), true},
		{"source ip v6", []config.HashPolicy{ip}, req("[2001:db8::1]:1"), h("2001:db8::1"), true},
		{"source ip unknown", []config.HashPolicy{ip}, req(""), 0, false},
		{"combined in order", []config.HashPolicy{hdr, ck, ip}, req("192.0.2.7:1", "x-user", "alice", "cookie", "session=s1"),
			combine(combine(h("alice"), h("s1")), h("192.0.2.7")), true},
		{"combined, first missing", []config.HashPolicy{hdr, ck}, req("", "cookie", "session=s1"), h("s1"), true},
	}
	for _, tt := range tests {
		got, ok := requestHash(newHashPolicies(tt.policies), tt.req)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: hash %x, %v; want %x, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

// TestHashPolicyThroughPick checks each key kind end to end through
// Cluster.Pick: one key always goes to one host, the host its hash names,
// and keys spread over the hosts.
func TestHashPolicyThroughPick(t *testing.T) {
	kinds := []struct {
		kind, yaml string
		key        func(i int) string
	}{
		{"header", "{header: x-user}", func(i int) string { return fmt.Sprint("user-", i) }},
		{"cookie", "{cookie: session}", func(i int) string { return fmt.Sprint("s", i) }},
		{"source_ip", "{source_ip: true}", func(i int) string { return fmt.Sprintf("198.51.%d.%d", i/200, i%200) }},
	}
	for _, policy := range hashPolicies {
		for _, k := range kinds {
			c, _ := policyCluster(t, policy, "    hash_policy: ["+k.yaml+"]\n", equalWeights(4)...)
			b := c.snap.Load().lb
			counts := make(map[*Host]int)
			for i := range 2000 {
				key := k.key(i)
				h, err := c.Pick(keyedRequest(k.kind, key))
				if err != nil {
					t.Fatal(err)
				}
				if want := lookup(b, xxhash.Sum64String(key)); h != want {
					t.Fatalf("%s by %s: key %q went to %s, want %s (the host of its hash)", policy, k.kind, key, h.Address(), want.Address())
				}
				req := keyedRequest(k.kind, key)
				req.Path = "/other"
				req.Header.Add("x-noise", fmt.Sprint(i))
				if again, _ := c.Pick(req); again != h {
					t.Fatalf("%s by %s: key %q went to %s, then %s", policy, k.kind, key, h.Address(), again.Address())
				}
				counts[h]++
			}
			for _, h := range c.Hosts() {
				if counts[h] < 2000/4/2 {
					t.Errorf("%s by %s: host %s got %d of 2000 keys", policy, k.kind, h.Address(), counts[h])
				}
			}
		}
	}
}

func TestHashNoKeySpreads(t *testing.T) {
	for _, policy := range hashPolicies {
		c, _ := policyCluster(t, policy, "    hash_policy: [{header: x-user}]\n", equalWeights(4)...)
		seedLB(c, 17)
		for _, req := range []*message.Request{nil, get("/")} {
			counts := countPicks(t, c, 4000, req)
			for _, h := range c.Hosts() {
				if counts[h] < 800 || counts[h] > 1200 {
					t.Errorf("%s without a key (request %v): host %s got %d of 4000, want 1000 ± 200", policy, req != nil, h.Address(), counts[h])
				}
			}
		}
	}
}

// TestHashSkipsUnavailableAndExcluded: a key whose host is unavailable or
// already tried goes to the next host along the ring or table, the same one
// every time, and other keys stay where they are.
func TestHashSkipsUnavailableAndExcluded(t *testing.T) {
	for _, policy := range hashPolicies {
		c, _ := policyCluster(t, policy, "    hash_policy: [{header: x-user}]\n", equalWeights(4)...)
		hosts := c.Hosts()
		home := make([]*Host, 400)
		for i := range home {
			home[i], _ = c.Pick(keyedRequest("header", fmt.Sprint("user-", i)))
		}
		for _, how := range []string{"unavailable", "excluded"} {
			var exclude []*Host
			if how == "unavailable" {
				setUnavailable(c, hosts[2])
			} else {
				exclude = hosts[2:3]
			}
			moved := 0
			for i := range home {
				req := keyedRequest("header", fmt.Sprint("user-", i))
				h, _ := c.Pick(req, exclude...)
				if again, _ := c.Pick(req, exclude...); again != h {
					t.Fatalf("%s, host %s %s: key %d went to %s, then %s", policy, hosts[2].Address(), how, i, h.Address(), again.Address())
				}
				switch {
				case h == hosts[2]:
					t.Fatalf("%s: key %d went to the %s host", policy, i, how)
				case home[i] != hosts[2] && h != home[i]:
					t.Errorf("%s, host %s %s: key %d moved from %s to %s", policy, hosts[2].Address(), how, i, home[i].Address(), h.Address())
				case home[i] == hosts[2]:
					moved++
				}
			}
			if moved == 0 {
				t.Errorf("%s: no key lived on host %s", policy, hosts[2].Address())
			}
			setUnavailable(c)
		}
	}
}

// TestHashRebuiltWhenHostsChange goes through the cluster's own host-set
// change (what a DNS refresh calls): the new set gets its own table, and
// keys of hosts that stay keep their host.
func TestHashRebuiltWhenHostsChange(t *testing.T) {
	c, _ := policyCluster(t, "ring_hash", "    hash_policy: [{header: x-user}]\n", equalWeights(4)...)
	before := c.Hosts()
	home := make(map[int]*Host)
	for i := range 1000 {
		home[i], _ = c.Pick(keyedRequest("header", fmt.Sprint("user-", i)))
	}
	var specs []hostSpec
	for i, h := range before {
		if i != 1 {
			specs = append(specs, hostSpec{addr: h.Address(), hostname: h.hostname, weight: h.weight})
		}
	}
	oldLB := c.snap.Load().lb
	c.setHosts(specs)
	if c.snap.Load().lb == oldLB || len(c.snap.Load().lb.ring.owner) != 3*ringPointsMax {
		t.Fatalf("ring not rebuilt for 3 hosts")
	}
	for i := range 1000 {
		h, _ := c.Pick(keyedRequest("header", fmt.Sprint("user-", i)))
		switch {
		case h == before[1]:
			t.Fatalf("key %d went to the removed host", i)
		case home[i] != before[1] && h != home[i]:
			t.Errorf("key %d moved from %s to %s", i, home[i].Address(), h.Address())
		}
	}
}

func BenchmarkBuildTables(b *testing.B) {
	for _, n := range []int{4, 100} {
		hosts := hostsAt(hostAddrs(n, 1)...)
		for _, policy := range []string{"round_robin", "ring_hash", "maglev"} {
			b.Run(fmt.Sprintf("%s/hosts=%d", policy, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					newBalancer(policy, hosts)
				}
			})
		}
	}
}
