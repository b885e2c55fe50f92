package edge

import (
	"crypto/tls"
	"encoding/hex"
	"math/rand/v2"
	"net/netip"
	"strings"

	"github.com/edgeproxy/edge/edge/message"
	edgetls "github.com/edgeproxy/edge/tls"
)

// Header names edge reads or writes on every request, lower case.
const (
	hdrXFF          = "x-forwarded-for"
	hdrXFP          = "x-forwarded-proto"
	hdrRequestID    = "x-request-id"
	hdrInternal     = "x-edge-internal"
	hdrOriginalPath = "x-edge-original-path"
	hdrConnection   = "connection"
	hdrUpgrade      = "upgrade"
	hdrTE           = "te"
	hdrContentLen   = "content-length"
	hdrTrailer      = "trailer"
)

// isHopByHop reports whether name is a connection-specific header that a
// proxy must not forward (RFC 9110 §7.6.1). upgrade is handled separately.
func isHopByHop(name string) bool {
	switch name {
	case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "te",
		"trailer", "upgrade", "proxy-authenticate", "proxy-authorization", "http2-settings":
		return true
	}
	return false
}

// connectionTokens calls f for each comma-separated token of every
// connection header, lower-cased.
func connectionTokens(h *message.Header, f func(tok string)) {
	for _, fl := range h.Fields() {
		if fl.Name != hdrConnection {
			continue
		}
		for v := fl.Value; v != ""; {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			tok = strings.TrimSpace(tok)
			if tok != "" {
				f(asciiLower(tok))
			}
		}
	}
}

// asciiLower lower-cases s, allocating only when s has an upper-case byte.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// isWebSocketUpgrade reports whether the request asks to upgrade the
// connection (RFC 9110 §7.8), as WebSocket clients do.
func isUpgradeRequest(h *message.Header) bool {
	if !h.Has(hdrUpgrade) {
		return false
	}
	up := false
	connectionTokens(h, func(tok string) { up = up || tok == "upgrade" })
	return up
}

// removeHopByHop deletes hop-by-hop fields and every field the connection
// header names. keepUpgrade keeps connection and upgrade for a protocol
// upgrade. te: trailers is kept: gRPC needs it to reach the upstream.
func removeHopByHop(h *message.Header, keepUpgrade bool) {
	var named [4]string
	n := 0
	connectionTokens(h, func(tok string) {
		if tok != "upgrade" && tok != "close" && tok != "keep-alive" && n < len(named) {
			named[n] = tok
			n++
		}
	})
	teTrailers := false
	h.DelFunc(func(f message.Field) bool {
		switch f.Name {
		case hdrTE:
			if strings.Contains(asciiLower(f.Value), "trailers") {
				teTrailers = true
			}
			return true
		case hdrConnection, hdrUpgrade:
			return !keepUpgrade
		}
		for _, t := range named[:n] {
			if f.Name == t {
				return true
			}
		}
		return isHopByHop(f.Name)
	})
	if keepUpgrade {
		h.Set(hdrConnection, "upgrade")
	}
	if teTrailers {
		h.Add(hdrTE, "trailers")
	}
}

// isEdgeHeader reports whether name is one of edge's own control headers,
// which only trusted (internal) clients may send.
func isEdgeHeader(name string) bool { return strings.HasPrefix(name, "x-edge-") }

// forwarding is what the connection manager learns about a request's
// origin before routing.
type forwarding struct {
	// client is the trusted client address: the peer, or the entry
	// xff_trusted_hops from the right of X-Forwarded-For.
	client netip.Addr
	// internal: the request came straight from an internal address with
	// no X-Forwarded-For of its own (Envoy's rule).
	internal bool
}

// sanitize applies edge's request header policy, as Envoy's connection
// manager does with use_remote_address: true. It appends the peer to
// X-Forwarded-For, classifies the request as internal or external, strips
// x-edge-* from external ones, sets X-Forwarded-Proto and x-request-id.
//
// On a listener that verifies client certificates (peerMustVerify), only
// a peer that presented a verified, allowed certificate is a trusted hop:
// anyone else gets xff_trusted_hops 0 and loses its
// x-forwarded-client-cert, so a client talking to a data-centre proxy
// directly cannot spoof the user's address or identity.
func sanitize(req *message.Request, trustedHops int, peerMustVerify bool) forwarding {
	h := &req.Header
	peer := req.RemoteAddr.Addr().Unmap()
	var fw forwarding
	verified := req.TLSState != nil && len(req.TLSState.VerifiedChains) > 0
	if peerMustVerify && !verified {
		trustedHops = 0
	}
	setClientCert(h, req.TLSState, verified)

	// X-Forwarded-For: join repeated fields, find the trusted client, append the peer.
	xff := ""
	nxff := 0
	for _, f := range h.Fields() {
		if f.Name == hdrXFF {
			if nxff > 0 {
				xff += ", "
			}
			xff += f.Value
			nxff++
		}
	}
	fw.client = peer
	if trustedHops > 0 && xff != "" {
		if a, ok := nthFromRight(xff, trustedHops-1); ok {
			fw.client = a
		}
	}
	var buf [64]byte
	p := peer.AppendTo(buf[:0])
	if xff == "" {
		h.Set(hdrXFF, string(p))
		fw.internal = isInternal(peer)
	} else {
		h.Set(hdrXFF, xff+", "+string(p))
	}

	h.Del(hdrInternal)
	if !fw.internal {
		h.DelFunc(func(f message.Field) bool { return isEdgeHeader(f.Name) })
	} else {
		h.Add(hdrInternal, "true")
	}

	// X-Forwarded-Proto: from the connection, unless a trusted proxy told us.
	if trustedHops == 0 || !h.Has(hdrXFP) {
		h.Set(hdrXFP, req.Scheme)
	} else if v := h.Get(hdrXFP); v == "https" || v == "http" {
		req.Scheme = v
	}

	// x-request-id: replaced for external requests, generated when absent.
	if id, ok := h.Lookup(hdrRequestID); !ok || !fw.internal || !validRequestID(id) {
		h.Set(hdrRequestID, newRequestID())
	}
	return fw
}

// nthFromRight returns the address n entries from the right of an
// X-Forwarded-For list (0 = rightmost).
func nthFromRight(xff string, n int) (netip.Addr, bool) {
	for i := 0; ; i++ {
		j := strings.LastIndexByte(xff, ',')
		entry := strings.TrimSpace(xff[j+1:])
		if i == n {
			a, err := netip.ParseAddr(entry)
			return a.Unmap(), err == nil
		}
		if j < 0 {
			return netip.Addr{}, false
		}
		xff = xff[:j]
	}
}

// isInternal reports whether a is loopback or private (RFC 1918, RFC 4193).
func isInternal(a netip.Addr) bool {
	return a.IsLoopback() || a.IsPrivate()
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// newRequestID returns a random UUIDv4 string.
func newRequestID() string {
	var b [16]byte
	hi, lo := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		b[i] = byte(hi >> (8 * i))
		b[8+i] = byte(lo >> (8 * i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

const hdrXFCC = "x-forwarded-client-cert"

// setClientCert applies Envoy's x-forwarded-client-cert policy: an
// incoming value survives only from a peer whose certificate edge verified
// (a proxy in front of edge); that peer's own identity is appended. From
// anyone else the header is removed.
func setClientCert(h *message.Header, cs *tls.ConnectionState, verified bool) {
	if !verified {
		h.Del(hdrXFCC)
		return
	}
	prev := ""
	for _, f := range h.Fields() {
		if f.Name == hdrXFCC {
			if prev != "" {
				prev += ","
			}
			prev += f.Value
		}
	}
	elem := xfccElement(cs)
	if prev != "" {
		elem = prev + "," + elem
	}
	h.Set(hdrXFCC, elem)
}

// xfccElement describes the verified peer certificate in Envoy's XFCC
// format: Hash (SHA-256 of the DER, hex), Subject, and every URI and DNS SAN.
func xfccElement(cs *tls.ConnectionState) string {
	hash, subject, uris, dns := edgetls.PeerIdentity(cs)
	var b strings.Builder
	b.WriteString("Hash=")
	b.WriteString(hash)
	b.WriteString(`;Subject="`)
	b.WriteString(strings.ReplaceAll(strings.ReplaceAll(subject, `\`, `\\`), `"`, `\"`))
	b.WriteByte('"')
	for _, u := range uris {
		b.WriteString(";URI=")
		b.WriteString(xfccValue(u))
	}
	for _, d := range dns {
		b.WriteString(";DNS=")
		b.WriteString(xfccValue(d))
	}
	return b.String()
}

// xfccValue quotes a value that holds one of XFCC's separators.
func xfccValue(v string) string {
	if strings.ContainsAny(v, `,;="`) {
		return `"` + strings.ReplaceAll(v, `"`, `\"`) + `"`
	}
	return v
}
