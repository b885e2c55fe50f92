package tls

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
)

// maxServerName is the longest DNS name (RFC 1035, 253 octets without the
// trailing dot). Longer SNI values cannot match any certificate.
const maxServerName = 253

// Store picks a listener's certificate by SNI. It is compiled once from the
// listener's certificates and never changes; a reload compiles a new one.
//
// Names come from each certificate's DNS SANs, or its subject common name
// when it has no DNS SANs. A name "*.example.com" matches exactly one label
// in that position ("a.example.com", not "example.com" or
// "a.b.example.com"). Matching is case-insensitive and ignores one trailing
// dot. An exact name wins over a wildcard; among certificates with the same
// name, the first in config order that the client supports wins (so an
// ECDSA and an RSA certificate for one name can be served side by side). A
// ClientHello without SNI, or with a name nothing matches, gets the first
// certificate: the default.
//
// A certificate with an OCSP responder, loaded with a Stapler, is served
// with its current staple; the Store itself never changes, the staple is
// swapped atomically behind it.
type Store struct {
	certs []*entry            // config order; certs[0] is the default
	exact map[string][]*entry // lower-case name -> certificates
	wild  map[string][]*entry // "example.com" for "*.example.com"
}

// entry is one certificate of a Store: fixed, or with a refreshed OCSP
// staple.
type entry struct {
	cert *tls.Certificate // as loaded, without a staple
	ocsp *stapled         // nil: no stapling
}

// get returns the certificate to serve now.
func (e *entry) get() *tls.Certificate {
	if e.ocsp == nil {
		return e.cert
	}
	return e.ocsp.certificate()
}

// NewStore compiles certs into a Store. Each certificate must have Leaf set
// (as the certificates ServerConfig loads do) and, except the first, at
// least one DNS name: one without any could never be selected. The error
// says which certificate (by index) is at fault.
func NewStore(certs []tls.Certificate) (*Store, error) {
	return newStore(certs, nil)
}

// newStore is NewStore with OCSP stapling by st (nil: none) for the
// certificates that name a responder.
func newStore(certs []tls.Certificate, st *Stapler) (*Store, error) {
	if len(certs) == 0 {
		return nil, fmt.Errorf("no certificates: a TLS listener needs at least one")
	}
	certs = slices.Clone(certs) // s points into its own copy
	s := &Store{
		certs: make([]*entry, len(certs)),
		exact: make(map[string][]*entry),
		wild:  make(map[string][]*entry),
	}
	for i := range certs {
		c := &certs[i]
		if c.Leaf == nil {
			return nil, fmt.Errorf("certificate %d: Leaf is not set", i)
		}
		e := &entry{cert: c}
		s.certs[i] = e
		names := CertificateNames(c.Leaf.DNSNames, c.Leaf.Subject.CommonName)
		if len(names) == 0 && i > 0 {
			return nil, fmt.Errorf("certificate %d (subject %q) has no DNS names, so SNI can never select it; only the first (default) certificate may have none",
				i, c.Leaf.Subject.String())
		}
		for _, n := range names {
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				if !strings.Contains(rest, "*") && rest != "" {
					s.wild[rest] = appendOnce(s.wild[rest], e)
				}
				continue
			}
			if strings.Contains(n, "*") {
				continue // partial wildcards such as "w*.example.com" are not honoured (RFC 6125 6.4.3 allows refusing them)
			}
			s.exact[n] = appendOnce(s.exact[n], e)
		}
	}
	if st != nil {
		for _, e := range s.certs {
			e.ocsp = st.add(e.cert)
		}
	}
	return s, nil
}

// CertificateNames returns the names SNI matches a certificate by: its DNS
// SANs, or cn when it has none, lower-cased and without a trailing dot.
func CertificateNames(dnsSANs []string, cn string) []string {
	src := dnsSANs
	if len(src) == 0 && cn != "" {
		src = []string{cn}
	}
	out := make([]string, 0, len(src))
	for _, n := range src {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if n != "" {
			out = append(out, n)
		}
	}
	return out
}

func appendOnce(cs []*entry, c *entry) []*entry {
	for _, x := range cs {
		if x == c {
			return cs
		}
	}
	return append(cs, c)
}

// Default returns the certificate served when SNI matches nothing.
func (s *Store) Default() *tls.Certificate { return s.certs[0].get() }

// Len reports how many certificates s holds.
func (s *Store) Len() int { return len(s.certs) }

// Lookup returns the certificate for serverName as GetCertificate would
// for a client that supports every certificate.
func (s *Store) Lookup(serverName string) *tls.Certificate {
	return s.pick(s.match(serverName), nil).get()
}

// GetCertificate implements tls.Config.GetCertificate. It does not allocate
// and never fails: with no SNI or no match it returns the default.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.pick(s.match(hello.ServerName), hello).get(), nil
}

// matchHello returns the certificate SNI selects, or nil when the name
// matches none (the caller picks a default).
func (s *Store) matchHello(hello *tls.ClientHelloInfo) *tls.Certificate {
	cs := s.match(hello.ServerName)
	if len(cs) == 0 {
		return nil
	}
	return s.pick(cs, hello).get()
}

// match returns the certificates for name: exact first, then the one-label
// wildcard, nil if none.
func (s *Store) match(name string) []*entry {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > maxServerName {
		return nil
	}
	// Lower-case into a stack buffer; m[string(b)] does not allocate.
	var buf [maxServerName]byte
	b := append(buf[:0], name...)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	if cs, ok := s.exact[string(b)]; ok {
		return cs
	}
	for i, c := range b {
		if c == '.' {
			if i == 0 {
				return nil // ".example.com" has an empty first label
			}
			return s.wild[string(b[i+1:])]
		}
	}
	return nil
}

// pick chooses among certificates for one name: the first the client
// supports, else the first. With no candidates it returns the default.
func (s *Store) pick(cs []*entry, hello *tls.ClientHelloInfo) *entry {
	switch {
	case len(cs) == 0:
		return s.certs[0]
	case len(cs) == 1 || hello == nil:
		return cs[0]
	}
	for _, c := range cs {
		if hello.SupportsCertificate(c.cert) == nil {
			return c
		}
	}
	return cs[0]
}
