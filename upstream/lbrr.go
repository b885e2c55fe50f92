package upstream

import (
	"math/bits"
	"sync/atomic"
)

// Limits for the precomputed smooth round-robin cycle: its length (the sum
// of weights divided by their GCD) and the work to compute it. Beyond
// them, the strided schedule below is used.
const (
	maxCycle     = 1 << 16
	maxCycleWork = 1 << 22
)

// roundRobin is weighted round robin: over every cycle of W picks (W the
// sum of the weights, divided by their GCD), host i is picked exactly
// w[i]/GCD times.
//
// For cycles up to maxCycle it precomputes nginx's smooth weighted round
// robin (each step adds every host's weight to its credit, picks the
// largest credit and takes W off it), which interleaves hosts as evenly as
// possible: weights 5,1,1 give a a b a c a a. A pick is then one atomic add
// and an index. Longer cycles (huge or coprime weights over many hosts)
// map pick number n to position n*stride mod W, stride coprime with W, in
// the cumulative weights (a binary search): exact per cycle, less smooth.
type roundRobin struct {
	hosts []*Host
	next  atomic.Uint64 // picks so far

	seq []uint32 // smooth cycle of host indices, or nil

	cum    []uint64 // cumulative weights, for the strided schedule
	total  uint64
	stride uint64
}

func newRoundRobin(hosts []*Host) *roundRobin {
	rr := &roundRobin{hosts: hosts}
	g := uint64(0)
	for _, h := range hosts {
		g = gcd(g, uint64(h.weight))
	}
	if g == 0 {
		g = 1
	}
	w := make([]uint64, len(hosts))
	var total uint64
	for i, h := range hosts {
		w[i] = max(uint64(h.weight)/g, 1)
		total += w[i]
	}
	if total <= maxCycle && total*uint64(len(hosts)) <= maxCycleWork {
		rr.seq = smoothCycle(w, total)
		return rr
	}
	rr.cum = make([]uint64, len(hosts))
	var sum uint64
	for i := range w {
		sum += w[i]
		rr.cum[i] = sum
	}
	rr.total = total
	rr.stride = coprimeStride(total)
	return rr
}

// smoothCycle computes one cycle of nginx's smooth weighted round robin.
func smoothCycle(w []uint64, total uint64) []uint32 {
	credit := make([]int64, len(w))
	seq := make([]uint32, total)
	for n := range seq {
		best := 0
		for i := range w {
			credit[i] += int64(w[i])
			if credit[i] > credit[best] {
				best = i
			}
		}
		credit[best] -= int64(total)
		seq[n] = uint32(best)
	}
	return seq
}

// coprimeStride returns a stride near total/φ that is coprime with total,
// so that consecutive picks land far apart in the cumulative weights.
func coprimeStride(total uint64) uint64 {
	s := total*5/8 + 1
	for gcd(s, total) != 1 {
		s++
	}
	return s
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func (rr *roundRobin) pick() *Host {
	n := rr.next.Add(1) - 1
	if rr.seq != nil {
		return rr.hosts[rr.seq[n%uint64(len(rr.seq))]]
	}
	hi, lo := bits.Mul64(n%rr.total, rr.stride)
	_, pos := bits.Div64(hi, lo, rr.total)
	return rr.hosts[firstAbove(rr.cum, pos)]
}

// firstAbove returns the index of the first cum[i] > v (binary search).
func firstAbove(cum []uint64, v uint64) int {
	lo, hi := 0, len(cum)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if cum[m] > v {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}
