package upstream

import (
	"fmt"
	"math/bits"
	"math/rand/v2"

	"github.com/edgeproxy/edge/edge/message"
	"github.com/edgeproxy/edge/edge/stats"
)

// policy is a cluster's lb_policy.
type policy uint8

const (
	policyRoundRobin policy = iota
	policyLeastRequest
	policyRandom
	policyRingHash
	policyMaglev
)

// parsePolicy maps a config lb_policy to a policy ("" is round_robin).
func parsePolicy(s string) (policy, error) {
	switch s {
	case "round_robin", "":
		return policyRoundRobin, nil
	case "least_request":
		return policyLeastRequest, nil
	case "random":
		return policyRandom, nil
	case "ring_hash":
		return policyRingHash, nil
	case "maglev":
		return policyMaglev, nil
	}
	return 0, fmt.Errorf("unknown lb_policy %q: use round_robin, least_request, random, ring_hash or maglev", s)
}

// panicPercent is Envoy's default healthy_panic_threshold: when fewer than
// this percentage of a cluster's hosts are available, the balancer picks
// among all hosts as if every one were healthy, rather than piling the
// whole load on the few that are left.
const panicPercent = 50

// balancer chooses hosts from one immutable host set. It is built once per
// host set (newBalancer, when the cluster's hosts change), never per pick;
// picks read its tables without locks and allocate nothing. Which tables
// exist depends on the policy:
//
//   - round_robin: the smooth weighted cycle (roundRobin).
//   - least_request and random: only the cumulative weights.
//   - ring_hash: the ring (hashRing).
//   - maglev: the lookup table (maglevTable).
//
// Every policy also keeps the cumulative weights, for its fallback: when
// the policy's own choice is excluded (a retry already tried it) or
// unavailable (health), the host is drawn at random, by weight, among the
// eligible ones (hash policies walk their ring or table instead).
//
// It is a concrete type rather than an interface so that the exclusion
// list passed to Cluster.Pick does not escape to the heap through an
// interface call.
type balancer struct {
	policy policy
	hosts  []*Host

	// cum are the cumulative weights of hosts; total is their sum.
	// uniform says every weight is the same (draws skip the search).
	cum     []uint64
	total   uint64
	uniform bool

	rr     *roundRobin  // round_robin
	ring   *hashRing    // ring_hash
	maglev *maglevTable // maglev

	// rnd returns uniformly random 64-bit values; it must be safe for
	// concurrent use. Tests replace it with a seeded source.
	rnd func() uint64
}

// newBalancer builds the balancer for policy over hosts (not empty). An
// unknown policy is rejected when the cluster is compiled; here it falls to
// round robin.
func newBalancer(name string, hosts []*Host) *balancer {
	p, _ := parsePolicy(name)
	b := &balancer{policy: p, hosts: hosts, rnd: rand.Uint64, uniform: true}
	b.cum = make([]uint64, len(hosts))
	for i, h := range hosts {
		w := uint64(max(h.weight, 1))
		b.total += w
		b.cum[i] = b.total
		if h.weight != hosts[0].weight {
			b.uniform = false
		}
	}
	switch p {
	case policyRoundRobin:
		b.rr = newRoundRobin(hosts)
	case policyRingHash:
		b.ring = newHashRing(hosts)
	case policyMaglev:
		b.maglev = newMaglevTable(hosts)
	}
	return b
}

// hashed reports whether the policy consistently hashes requests.
func (b *balancer) hashed() bool {
	return b.policy == policyRingHash || b.policy == policyMaglev
}

// Pick chooses a host for req by the cluster's load-balancing policy.
//
// Hosts in exclude (those a retry already tried) are avoided while another
// host is eligible; if every host was tried, the policy picks among all of
// them again rather than fail. Hosts that are not available (failing
// active health checks or ejected by outlier detection) are avoided too,
// unless fewer than half the cluster's hosts are available: then the
// cluster is in panic and every host counts as available (Envoy's
// healthy_panic_threshold, 50%), and edge_cluster_lb_healthy_panic counts
// the pick.
//
// ring_hash and maglev hash req by the cluster's hash_policy; req may be
// nil, and a request that yields no hash key goes to a random host. Other
// policies ignore req.
//
// Pick returns ErrNoHealthyEndpoint only when the cluster has no host. It
// takes no lock and allocates nothing.
func (c *Cluster) Pick(req *message.Request, exclude ...*Host) (*Host, error) {
	s := c.snap.Load()
	if s == nil || s.lb == nil {
		return nil, ErrNoHealthyEndpoint
	}
	b := s.lb
	var hash uint64
	if b.hashed() {
		var ok bool
		if hash, ok = requestHash(c.hash, req); !ok {
			hash = b.rnd()
		}
	}
	// The policy's choice, then whether it may be taken: the fast path.
	var h *Host
	switch b.policy {
	case policyRoundRobin:
		h = b.rr.pick()
	case policyLeastRequest:
		h = b.better(b.hosts[b.drawIndex()], b.hosts[b.drawIndex()])
	case policyRandom:
		h = b.hosts[b.drawIndex()]
	case policyRingHash:
		h = b.hosts[b.ring.owner[b.ring.search(hash)]]
	case policyMaglev:
		h = b.hosts[b.maglev.slots[hash%maglevSize]]
	}
	if !excluded(exclude, h) && h.available() {
		return h, nil
	}
	f := filter{hosts: b.hosts, exclude: exclude, panicStat: c.Stats.LBHealthyPanic}
	if f.ok(h) { // unavailable, but the cluster is in panic
		return h, nil
	}
	if h := b.choose(hash, &f); h != nil {
		return h, nil
	}
	// Every eligible host was tried: any eligible host rather than none.
	f.exclude = nil
	if h := b.choose(hash, &f); h != nil {
		return h, nil
	}
	// Not reached: without exclusions some host is always eligible (with
	// none available the cluster is in panic).
	return b.hosts[0], nil
}

// choose returns the policy's choice among the hosts f accepts, or nil if
// it accepts none: the slow path, once the policy's first choice was
// refused.
func (b *balancer) choose(hash uint64, f *filter) *Host {
	switch b.policy {
	case policyLeastRequest:
		return b.leastRequest(f)
	case policyRingHash:
		return b.ring.pick(hash, f)
	case policyMaglev:
		return b.maglev.pick(hash, f)
	}
	// random, and round robin: the smooth cycle's next host would take the
	// refused host's turn and get more than its share (twice as much, for
	// equal weights); a weighted draw among the eligible hosts spreads the
	// turn by weight.
	return b.draw(f)
}

// maxRejections bounds the weighted draws that may land on ineligible
// hosts before draw computes the eligible weights exactly.
const maxRejections = 4

// draw returns a host drawn at random by weight among those f accepts, or
// nil if it accepts none.
func (b *balancer) draw(f *filter) *Host {
	for range maxRejections {
		if h := b.hosts[b.drawIndex()]; f.ok(h) {
			return h
		}
	}
	// Many hosts are ineligible: draw over the eligible ones' weights.
	var eligible uint64
	for _, h := range b.hosts {
		if f.ok(h) {
			eligible += uint64(max(h.weight, 1))
		}
	}
	if eligible == 0 {
		return nil
	}
	r, _ := bits.Mul64(b.rnd(), eligible)
	for _, h := range b.hosts {
		if !f.ok(h) {
			continue
		}
		w := uint64(max(h.weight, 1))
		if r < w {
			return h
		}
		r -= w
	}
	return nil // not reached
}

// drawIndex returns a host index drawn at random by weight.
func (b *balancer) drawIndex() int {
	if b.uniform {
		i, _ := bits.Mul64(b.rnd(), uint64(len(b.hosts)))
		return int(i)
	}
	r, _ := bits.Mul64(b.rnd(), b.total)
	return firstAbove(b.cum, r)
}

// leastRequest is Envoy's power of two choices, in a weighted form: draw
// two hosts at random by weight (possibly the same one) and keep the one
// with fewer active requests per unit of weight, the first on a tie.
//
// With equal weights this is plain P2C. With unequal ones, an idle cluster
// (every tie) is spread exactly by weight, and under load the comparison
// steers requests so that active requests follow the weights. (Envoy uses
// an EDF schedule over weight/(active+1) for unequal weights, which needs
// a lock per pick.)
func (b *balancer) leastRequest(f *filter) *Host {
	x := b.draw(f)
	if x == nil {
		return nil
	}
	return b.better(x, b.draw(f))
}

// better returns the host with fewer active requests per unit of weight,
// x on a tie.
func (b *balancer) better(x, y *Host) *Host {
	// y.active/y.weight < x.active/x.weight, without division.
	if y.active.Load()*int64(max(x.weight, 1)) < x.active.Load()*int64(max(y.weight, 1)) {
		return y
	}
	return x
}

// filter decides which hosts a pick may return: not excluded, and
// available unless the cluster is in panic. Whether it is in panic is
// computed once per pick, and only when an unavailable host comes up.
type filter struct {
	hosts     []*Host
	exclude   []*Host
	panicky   int8 // 0 not known yet, 1 in panic, -1 not
	panicStat stats.Counter
}

// ok reports whether h may be picked.
func (f *filter) ok(h *Host) bool {
	if excluded(f.exclude, h) {
		return false
	}
	return h.available() || f.panic()
}

// panic reports whether fewer than panicPercent of the hosts are
// available, counting the pick on edge_cluster_lb_healthy_panic the first
// time it finds so.
func (f *filter) panic() bool {
	if f.panicky == 0 {
		n := 0
		for _, h := range f.hosts {
			if h.available() {
				n++
			}
		}
		f.panicky = -1
		if n*100 < panicPercent*len(f.hosts) {
			f.panicky = 1
			f.panicStat.Inc()
		}
	}
	return f.panicky > 0
}

// any reports whether f accepts some host.
func (f *filter) any() bool {
	for _, h := range f.hosts {
		if f.ok(h) {
			return true
		}
	}
	return false
}

// first returns the first host f accepts, or nil.
func (f *filter) first() *Host {
	for _, h := range f.hosts {
		if f.ok(h) {
			return h
		}
	}
	return nil
}

// excluded reports whether h is in exclude.
func excluded(exclude []*Host, h *Host) bool {
	for _, x := range exclude {
		if x == h {
			return true
		}
	}
	return false
}
