package router

// routeIndex narrows the routes a path can match without changing their
// order. Every route has a required literal: the path or prefix it matches
// (lower-cased when case-insensitive) or the literal prefix of its regex. A
// path can only match a route whose literal is longer than pos if the
// path's byte at pos equals the literal's byte there (or, for a
// case-insensitive route, its upper-case form). masks holds, for each byte
// value, a bitset (words uint64s, bit i = route i) of the routes that byte
// allows; routes with a short literal are in every set. Iterating the set
// bits in order visits the candidates in config order, so first-match
// semantics are unchanged. masks is nil when no position helps.
type routeIndex struct {
	pos   int
	words int
	masks []uint64
}

// maxIndexPos bounds the positions buildIndex considers.
const maxIndexPos = 16

// requiredLiteral returns the literal every path r matches starts with, and
// whether it is compared case-insensitively.
func (r *Route) requiredLiteral() (lit string, fold bool) {
	if r.pathKind == matchRegex {
		return r.rePrefix, false
	}
	return r.pattern, r.fold
}

// buildIndex picks the byte position that best splits routes and builds
// its masks. A position's score is the expected number of candidates when
// the request aims at one of the routes with a literal long enough for that
// position: the mean, over those routes' bytes, of the number of routes the
// byte allows (its own plus every route with a shorter literal). The lowest
// score wins if it beats scanning every route.
func buildIndex(routes []Route) routeIndex {
	if len(routes) < 4 {
		return routeIndex{} // a scan is as fast
	}
	best, bestNum, bestDen := 0, len(routes), 1
	var count [256]int
	for pos := 1; pos < maxIndexPos; pos++ {
		clear(count[:])
		short, den := 0, 0
		for i := range routes {
			lit, fold := routes[i].requiredLiteral()
			if len(lit) <= pos {
				short++
				continue
			}
			c := lit[pos]
			count[c]++
			den++
			if fold && isLower(c) {
				count[c-('a'-'A')]++
				den++
			}
		}
		if den == 0 {
			break // longer positions have no literals either
		}
		num := 0
		for _, n := range count {
			num += n * (n + short)
		}
		if num*bestDen < bestNum*den {
			best, bestNum, bestDen = pos, num, den
		}
	}
	if best == 0 {
		return routeIndex{}
	}
	x := routeIndex{pos: best, words: (len(routes) + 63) / 64}
	x.masks = make([]uint64, 256*x.words)
	set := func(c byte, i int) { x.masks[int(c)*x.words+i>>6] |= 1 << (i & 63) }
	for i := range routes {
		lit, fold := routes[i].requiredLiteral()
		if len(lit) <= best {
			for c := range 256 {
				set(byte(c), i)
			}
			continue
		}
		c := lit[best]
		set(c, i)
		if fold && isLower(c) {
			set(c-('a'-'A'), i)
		}
	}
	return x
}

func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
