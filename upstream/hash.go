package upstream

import (
	"math/bits"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/edge/message"
)

// hashKind is what one hash_policy entry hashes.
type hashKind uint8

const (
	hashHeader hashKind = iota + 1
	hashCookie
	hashSourceIP
)

// hashPolicy is one compiled hash_policy entry.
type hashPolicy struct {
	kind hashKind
	name string // header name (lower case) or cookie name
}

// newHashPolicies compiles a cluster's hash_policy (validated by package
// config: exactly one of header, cookie, source_ip per entry).
func newHashPolicies(cps []config.HashPolicy) []hashPolicy {
	var out []hashPolicy
	for _, p := range cps {
		switch {
		case p.Header != "":
			out = append(out, hashPolicy{kind: hashHeader, name: strings.ToLower(p.Header)})
		case p.Cookie != "":
			out = append(out, hashPolicy{kind: hashCookie, name: p.Cookie})
		case p.SourceIP:
			out = append(out, hashPolicy{kind: hashSourceIP})
		}
	}
	return out
}

// requestHash computes req's hash key under policies, as Envoy does: every
// policy that yields a value is hashed (xxHash64, seed 0) and the hashes
// are combined in order, each step rotating the previous result left by
// one bit and XORing the next. ok is false when no policy yields a value
// (or req is nil): the caller then picks a random host.
func requestHash(policies []hashPolicy, req *message.Request) (hash uint64, ok bool) {
	if req == nil {
		return 0, false
	}
	for i := range policies {
		h, got := policies[i].hash(req)
		if !got {
			continue
		}
		if ok {
			hash = bits.RotateLeft64(hash, 1) ^ h
		} else {
			hash, ok = h, true
		}
	}
	return hash, ok
}

// hash returns the hash of the request's value for p, if it has one.
func (p *hashPolicy) hash(req *message.Request) (uint64, bool) {
	switch p.kind {
	case hashHeader:
		return headerHash(&req.Header, p.name)
	case hashCookie:
		if v := cookieValue(&req.Header, p.name); v != "" {
			return xxhash.Sum64String(v), true
		}
	case hashSourceIP:
		a := req.RemoteAddr.Addr()
		if !a.IsValid() {
			return 0, false
		}
		// The address's text, as Envoy hashes it; IPv4-mapped IPv6
		// addresses as IPv4, so a dual-stack listener hashes a client the
		// same way as an IPv4 one.
		var buf [64]byte
		return xxhash.Sum64(a.Unmap().AppendTo(buf[:0])), true
	}
	return 0, false
}

// headerHash hashes the values of header name: present with any value
// (even empty) yields a hash. Several fields of that name hash the same
// whatever their order (Envoy sorts them first): their values' hashes are
// added.
func headerHash(h *message.Header, name string) (uint64, bool) {
	var sum uint64
	found := false
	for _, f := range h.Fields() {
		if f.Name == name {
			sum += xxhash.Sum64String(f.Value)
			found = true
		}
	}
	return sum, found
}

// cookieValue returns the value of the first cookie named name in the
// request's cookie fields (RFC 6265 §5.4: "name=value" pairs separated by
// ";"), without surrounding double quotes, or "".
func cookieValue(h *message.Header, name string) string {
	for _, f := range h.Fields() {
		if f.Name != "cookie" {
			continue
		}
		s := f.Value
		for s != "" {
			var pair string
			pair, s, _ = strings.Cut(s, ";")
			k, v, found := strings.Cut(trimOWS(pair), "=")
			if !found || trimOWS(k) != name {
				continue
			}
			v = trimOWS(v)
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v
		}
	}
	return ""
}

// trimOWS trims spaces and tabs at both ends of s.
func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
