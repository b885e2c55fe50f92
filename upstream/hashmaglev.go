package upstream

import "github.com/cespare/xxhash/v2"

// maglevSize is the maglev lookup table's size: Envoy's default, a prime
// (the permutations below need it).
const maglevSize = 65537

// maglevTable is maglev's lookup table (Eisenbud et al., "Maglev: A Fast
// and Reliable Software Network Load Balancer", NSDI 2016, §3.4, with
// Envoy's weighting): entry hash mod maglevSize names the request's host.
//
// Each host has a permutation of the table's slots, starting at
// offset = xxHash64(address) mod M with step skip = xxHash64(address,
// seed 1) mod (M-1) + 1. The hosts take turns claiming the next free slot
// of their permutation until the table is full; a host of weight w takes
// its turn in only w of every heaviest-weight rounds, so slots (and keys)
// are shared by weight. A host set change moves few keys other than those
// of hosts that come or go, but not none: claims shift when the turns
// change (see the tests for numbers).
type maglevTable struct {
	slots []uint32 // host index per slot
	hosts []*Host
}

func newMaglevTable(hosts []*Host) *maglevTable {
	const free = ^uint32(0)
	type builder struct {
		pos, skip      uint64 // next slot of the permutation; its step
		weight, target uint64
	}
	bs := make([]builder, len(hosts))
	var heaviest uint64
	d := xxhash.NewWithSeed(1)
	for i, h := range hosts {
		a := h.Address()
		d.ResetWithSeed(1)
		d.WriteString(a)
		bs[i] = builder{
			pos:    xxhash.Sum64String(a) % maglevSize,
			skip:   d.Sum64()%(maglevSize-1) + 1,
			weight: uint64(max(h.weight, 1)),
		}
		heaviest = max(heaviest, bs[i].weight)
	}
	t := &maglevTable{slots: make([]uint32, maglevSize), hosts: hosts}
	for i := range t.slots {
		t.slots[i] = free
	}
	filled := 0
	for round := uint64(1); filled < maglevSize; round++ {
		for i := range bs {
			b := &bs[i]
			// A host of the heaviest weight claims a slot every round; one
			// of a third of that weight every third round.
			if round*b.weight < b.target {
				continue
			}
			b.target += heaviest
			for t.slots[b.pos] != free {
				b.pos = (b.pos + b.skip) % maglevSize
			}
			t.slots[b.pos] = uint32(i)
			b.pos = (b.pos + b.skip) % maglevSize
			if filled++; filled == maglevSize {
				break
			}
		}
	}
	return t
}

// pick returns the host for hash among those f accepts, or nil if it
// accepts none. A host f refuses is skipped by trying the next slots in
// order.
func (t *maglevTable) pick(hash uint64, f *filter) *Host {
	i := int(hash % maglevSize)
	if h := t.hosts[t.slots[i]]; f.ok(h) {
		return h
	}
	if !f.any() {
		return nil
	}
	for k := 1; k < maglevSize; k++ {
		j := i + k
		if j >= maglevSize {
			j -= maglevSize
		}
		if h := t.hosts[t.slots[j]]; f.ok(h) {
			return h
		}
	}
	return f.first() // an eligible host without slots (more hosts than slots)
}
