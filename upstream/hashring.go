package upstream

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// Ring sizes for ring_hash. The heaviest host gets ringPointsMax points
// (so the ring has at least that many: Envoy's minimum_ring_size, 1024),
// every other host ⌈ringPointsMax·weight/heaviest⌉, at least one. The
// ring is scaled down to maxRingSize points when that would be exceeded.
const (
	ringPointsMax = 1024
	maxRingSize   = 1 << 20
)

// hashRing is ring_hash's consistent-hash ring (ketama): each host has
// points on a 64-bit circle, at xxHash64("ip:port_i") for i = 0, 1, ...
// (Envoy's keys), and a request goes to the host of the first point at or
// after its hash, wrapping around.
//
// Unlike Envoy, which scales every host's points so that the least
// weighted one gets a whole number of them and the total reaches 1024, a
// host's points here depend only on its own weight and the heaviest
// weight. Hosts joining or leaving (DNS) therefore move only the keys of
// the hosts that come or go, unless the heaviest weight changes or the
// ring reaches maxRingSize; with Envoy's sizing, removing one host of four
// also moves about a fifth of the other hosts' keys among themselves. The
// cost is a larger ring: 1024 points per host of the heaviest weight
// (12 bytes each).
type hashRing struct {
	hashes []uint64 // point positions, ascending
	owner  []uint32 // index of the host of each point
	hosts  []*Host
}

func newHashRing(hosts []*Host) *hashRing {
	var heaviest uint64
	for _, h := range hosts {
		heaviest = max(heaviest, uint64(max(h.weight, 1)))
	}
	points := make([]uint64, len(hosts))
	var total uint64
	for i, h := range hosts {
		w := uint64(max(h.weight, 1))
		points[i] = (ringPointsMax*w + heaviest - 1) / heaviest
		total += points[i]
	}
	if total > maxRingSize {
		scaled := uint64(0)
		for i := range points {
			points[i] = max(points[i]*maxRingSize/total, 1)
			scaled += points[i]
		}
		total = scaled
	}
	type point struct {
		hash  uint64
		owner uint32
	}
	ps := make([]point, 0, total)
	for i, h := range hosts {
		key := append([]byte(h.Address()), '_')
		prefix := len(key)
		for n := range points[i] {
			key = strconv.AppendUint(key[:prefix], n, 10)
			ps = append(ps, point{xxhash.Sum64(key), uint32(i)})
		}
	}
	// Ties (two points at one position, practically never) are broken by
	// address, so that the ring does not depend on the hosts' order.
	slices.SortFunc(ps, func(a, b point) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		return cmp.Compare(hosts[a.owner].Address(), hosts[b.owner].Address())
	})
	r := &hashRing{hashes: make([]uint64, len(ps)), owner: make([]uint32, len(ps)), hosts: hosts}
	for i, p := range ps {
		r.hashes[i], r.owner[i] = p.hash, p.owner
	}
	return r
}

// pick returns the host for hash among those f accepts, or nil if it
// accepts none. A host f refuses is skipped by walking on along the ring,
// which sends its keys where they would go if it had left the ring.
func (r *hashRing) pick(hash uint64, f *filter) *Host {
	i := r.search(hash)
	if h := r.hosts[r.owner[i]]; f.ok(h) {
		return h
	}
	if !f.any() {
		return nil
	}
	n := len(r.hashes)
	for k := 1; k < n; k++ {
		j := i + k
		if j >= n {
			j -= n
		}
		if h := r.hosts[r.owner[j]]; f.ok(h) {
			return h
		}
	}
	return f.first() // an eligible host without points (only past maxRingSize)
}

// search returns the index of the first point at or after hash, wrapping
// to 0 past the last.
func (r *hashRing) search(hash uint64) int {
	lo, hi := 0, len(r.hashes)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.hashes[m] < hash {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(r.hashes) {
		return 0
	}
	return lo
}
