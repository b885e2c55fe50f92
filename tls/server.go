package tls

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/edgeproxy/edge/edge/config"
)

// Errors VerifyConnection returns (wrapped, with the peer's details) when a
// client certificate verified against the CA but fails the listener's
// peer policy. Callers may count them with errors.Is.
var (
	// ErrSANNotAllowed: none of the leaf's DNS or URI SANs is in
	// client_auth.allowed_sans.
	ErrSANNotAllowed = errors.New("client certificate SAN not allowed")
	// ErrPinMismatch: the leaf's SHA-256 is not in client_auth.pinned_sha256.
	ErrPinMismatch = errors.New("client certificate hash not pinned")
)

// cipherSuites are the TLS 1.2 suites a listener offers: ECDHE key exchange
// with an AEAD only (the set Mozilla's "intermediate" profile and Envoy's
// default share, minus CBC). TLS 1.3 suites are not configurable in Go and
// are all AEAD already.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// curves are the key exchanges a listener accepts. Listed explicitly, rather
// than left to Go's default, so the set is the documented one whatever the
// Go release: the hybrid post-quantum X25519MLKEM768 and SecP256r1MLKEM768
// (Go's defaults since 1.24 and 1.26), X25519 and P-256. P-384 and P-521
// are left out: every client that offers them also offers P-256. Go ignores
// the order and applies its own preference (hybrids first).
var curves = []tls.CurveID{
	tls.X25519MLKEM768,
	tls.SecP256r1MLKEM768,
	tls.X25519,
	tls.CurveP256,
}

// ServerOptions are the process-wide parts of a listener's TLS: ACME,
// session ticket keys, OCSP stapling. The zero value has none of them.
type ServerOptions struct {
	// ACME serves the certificates of the listener's tls.acme section
	// (from NewACME for that section). When nil and the section is set,
	// ServerConfigWith checks the section and builds an unstarted manager
	// of its own, so the listener serves its certificate files only.
	ACME *ACME
	// TicketKeys encrypts session tickets (nil: Go's per-process keys,
	// not shared across a hot restart).
	TicketKeys *TicketKeys
	// Stapler staples OCSP responses to certificate files that name a
	// responder (nil: no stapling).
	Stapler *Stapler
}

// ServerConfig is ServerConfigWith without options: certificate files,
// client authentication and Go's own session tickets; an acme section is
// checked but not served.
func ServerConfig(cfg *config.Config, path string, l *config.ListenerTLS, nextProtos []string) (*tls.Config, error) {
	return ServerConfigWith(cfg, path, l, nextProtos, ServerOptions{})
}

// ServerConfigWith builds the *tls.Config for a listener's TLS section l
// (path is its field path, such as "listeners[0].tls", used in errors).
//
// Every certificate file is loaded (paths resolved with cfg.Resolve) and
// compiled into a Store. MinVersion is l.MinVersion ("1.2" when empty, or
// "1.3"); TLS 1.2 offers only ECDHE AEAD cipher suites. The caller gives
// NextProtos (ALPN), e.g. ["h2", "http/1.1"]. Client certificates are
// verified as l.ClientAuth says: mode "request" verifies one if sent,
// "require" refuses a handshake without a valid one, both against ca_file;
// allowed_sans and pinned_sha256, when set, must both be satisfied by the
// leaf (checked in VerifyConnection, so resumed sessions are checked too).
//
// Certificate selection, per handshake:
//
//  1. A TLS-ALPN-01 validation (SNI set, acme-tls/1 the only protocol
//     offered) gets, through GetConfigForClient, a separate config that
//     serves the challenge certificate and negotiates acme-tls/1, with no
//     client authentication. The listener's own NextProtos are left as
//     given, so ordinary clients never negotiate acme-tls/1.
//  2. A certificate file whose names match the SNI (the Store's rules).
//  3. ACME: a managed domain's certificate once obtained, or, with
//     on_demand_ask, one obtained on demand for a name the endpoint allows.
//  4. The default: the first certificate file; without files, the first
//     managed domain that has a certificate. Without any, the handshake
//     fails.
//
// With opts.TicketKeys, tickets are encrypted with those rotating keys;
// with opts.Stapler, certificate files with an OCSP responder are served
// with a staple (ServerConfigWith waits up to two seconds for the first
// responses).
//
// Every problem found is returned, as a config.Errors whose entries name
// the field (e.g. listeners[0].tls.certificates[1].key_file), the file and
// what is wrong with it.
func ServerConfigWith(cfg *config.Config, path string, l *config.ListenerTLS, nextProtos []string, opts ServerOptions) (*tls.Config, error) {
	if l == nil {
		return nil, cfg.Errorf(config.Pos{}, path, "missing: a TLS listener needs a tls section")
	}
	var errs config.Errors
	m := opts.ACME
	if l.ACME != nil && m == nil {
		var err error
		if m, err = NewACME(cfg, path+".acme", l.ACME, ACMEOptions{}); err != nil {
			var ce config.Errors
			if errors.As(err, &ce) {
				errs = append(errs, ce...)
			} else {
				errs = append(errs, cfg.Errorf(l.KeyPos("acme"), path+".acme", "%v", err))
			}
		}
	}
	certs := make([]tls.Certificate, 0, len(l.Certificates))
	for i := range l.Certificates {
		cf := &l.Certificates[i]
		cp := fmt.Sprintf("%s.certificates[%d]", path, i)
		c, err := loadKeyPair(cfg, &cf.Meta, cp, cf.CertFile, cf.KeyFile)
		if err != nil {
			errs = append(errs, err...)
			continue
		}
		certs = append(certs, c)
	}
	var store *Store
	switch {
	case len(l.Certificates) == 0:
		if l.ACME == nil && opts.ACME == nil {
			errs = append(errs, cfg.Errorf(l.KeyPos("certificates"), path+".certificates",
				"missing: list at least one certificate (cert_file and key_file), or configure acme"))
		}
	case len(certs) == len(l.Certificates):
		var err error
		if store, err = newStore(certs, opts.Stapler); err != nil {
			errs = append(errs, cfg.Errorf(l.KeyPos("certificates"), path+".certificates", "%v", err))
		}
	}

	tc := &tls.Config{
		NextProtos:       append([]string(nil), nextProtos...),
		CipherSuites:     cipherSuites,
		CurvePreferences: curves,
	}
	switch {
	case m != nil:
		sel := &selector{store: store, acme: m}
		tc.GetCertificate = sel.getCertificate
		tc.GetConfigForClient = sel.getConfigForClient
	case store != nil:
		tc.GetCertificate = store.GetCertificate
	}
	switch l.MinVersion {
	case "", "1.2":
		tc.MinVersion = tls.VersionTLS12
	case "1.3":
		tc.MinVersion = tls.VersionTLS13
	default:
		errs = append(errs, cfg.Errorf(l.KeyPos("min_version"), path+".min_version",
			"unsupported TLS version %q: use \"1.2\" or \"1.3\"", l.MinVersion))
	}
	if ca := l.ClientAuth; ca != nil {
		errs = append(errs, clientAuth(cfg, path+".client_auth", ca, tc)...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if opts.TicketKeys != nil {
		opts.TicketKeys.Apply(tc)
	}
	if store != nil {
		var pending []*stapled
		for _, e := range store.certs {
			if e.ocsp != nil {
				pending = append(pending, e.ocsp)
			}
		}
		waitFirst(pending, ocspLoadWait)
	}
	return tc, nil
}

// selector picks certificates for a listener with ACME (see
// ServerConfigWith for the order).
type selector struct {
	store *Store // nil without certificate files
	acme  *ACME
}

func (s *selector) getConfigForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if isChallengeHello(hello) {
		return s.acme.challengeTLS, nil
	}
	return nil, nil
}

func (s *selector) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s.store != nil {
		if c := s.store.matchHello(hello); c != nil {
			return c, nil
		}
	}
	if c, err := s.acme.certificate(hello); err == nil && c != nil {
		return c, nil
	}
	if s.store != nil {
		return s.store.Default(), nil
	}
	return s.acme.defaultCertificate(hello)
}

// clientAuth sets tc's client-certificate verification from ca.
func clientAuth(cfg *config.Config, path string, ca *config.ClientAuth, tc *tls.Config) config.Errors {
	var errs config.Errors
	switch ca.Mode {
	case "none":
		if len(ca.AllowedSANs) > 0 || len(ca.PinnedSHA256) > 0 {
			key := "allowed_sans"
			if len(ca.AllowedSANs) == 0 {
				key = "pinned_sha256"
			}
			errs = append(errs, cfg.Errorf(ca.KeyPos(key), path+"."+key,
				"mode none never asks for a client certificate, so %s would check nothing: set mode to request or require", key))
		}
		tc.ClientAuth = tls.NoClientCert
		return errs
	case "request":
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	case "", "require":
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	default:
		return append(errs, cfg.Errorf(ca.KeyPos("mode"), path+".mode",
			"unknown mode %q: use none, request or require", ca.Mode))
	}
	if ca.CAFile == "" {
		errs = append(errs, cfg.Errorf(ca.KeyPos("ca_file"), path+".ca_file",
			"missing: name the PEM CA bundle client certificates must chain to"))
	} else if pool, err := loadCAPool(cfg, &ca.Meta, "ca_file", path, ca.CAFile); err != nil {
		errs = append(errs, err)
	} else {
		tc.ClientCAs = pool
	}
	p := &peerPolicy{}
	for _, s := range ca.AllowedSANs {
		if s == "" {
			errs = append(errs, cfg.Errorf(ca.KeyPos("allowed_sans"), path+".allowed_sans", "an empty SAN matches nothing: remove it"))
			continue
		}
		p.sans = append(p.sans, s)
	}
	for i, s := range ca.PinnedSHA256 {
		sum, err := ParseFingerprint(s)
		if err != nil {
			errs = append(errs, cfg.Errorf(ca.KeyPos("pinned_sha256"), fmt.Sprintf("%s.pinned_sha256[%d]", path, i), "%v", err))
			continue
		}
		p.pins = append(p.pins, sum)
	}
	if len(p.sans) > 0 || len(p.pins) > 0 {
		tc.VerifyConnection = p.verify
	}
	return errs
}

// ParseFingerprint parses a hex SHA-256 fingerprint as Envoy's
// verify_certificate_hash accepts it: 64 hex digits, upper or lower case,
// optionally in colon-separated pairs ("AB:CD:...").
func ParseFingerprint(s string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	h := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	if len(h) != 2*sha256.Size {
		return sum, fmt.Errorf("invalid SHA-256 fingerprint %q: want 64 hex digits (colons between pairs allowed), got %d digits", s, len(h))
	}
	if _, err := hex.Decode(sum[:], []byte(h)); err != nil {
		return sum, fmt.Errorf("invalid SHA-256 fingerprint %q: %v", s, err)
	}
	return sum, nil
}

// peerPolicy is what a verified client certificate must also satisfy.
type peerPolicy struct {
	sans []string            // allowed DNS (case-insensitive) or URI (exact) SANs
	pins [][sha256.Size]byte // allowed leaf SHA-256 hashes
}

// verify implements tls.Config.VerifyConnection. It runs after chain
// verification, on full handshakes and resumptions alike. A connection
// without a client certificate (possible only in request mode) passes:
// the policy constrains who may present a certificate, not whether one is
// needed; use mode require for that.
func (p *peerPolicy) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	if len(p.sans) > 0 && !p.sanAllowed(leaf) {
		uris := make([]string, len(leaf.URIs))
		for i, u := range leaf.URIs {
			uris[i] = u.String()
		}
		return fmt.Errorf("client certificate %q (DNS SANs %q, URI SANs %q) matches none of client_auth.allowed_sans %q: %w",
			leaf.Subject.String(), leaf.DNSNames, uris, p.sans, ErrSANNotAllowed)
	}
	if len(p.pins) > 0 {
		sum := sha256.Sum256(leaf.Raw)
		ok := false
		for i := range p.pins {
			if bytes.Equal(p.pins[i][:], sum[:]) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("client certificate %q has SHA-256 %x, not one of client_auth.pinned_sha256: %w",
				leaf.Subject.String(), sum, ErrPinMismatch)
		}
	}
	return nil
}

func (p *peerPolicy) sanAllowed(leaf *x509.Certificate) bool {
	for _, want := range p.sans {
		for _, d := range leaf.DNSNames {
			if strings.EqualFold(strings.TrimSuffix(d, "."), strings.TrimSuffix(want, ".")) {
				return true
			}
		}
		for _, u := range leaf.URIs {
			if u.String() == want {
				return true
			}
		}
	}
	return false
}

// PeerIdentity describes the verified client certificate of a connection,
// in the terms of Envoy's x-forwarded-client-cert header: hash is the
// lower-case hex SHA-256 of the leaf's DER, subject its distinguished name
// (RFC 2253 form, as x509's pkix.Name.String gives it), uris and dns its
// URI and DNS SANs. All are empty when the peer sent no certificate.
func PeerIdentity(cs *tls.ConnectionState) (hash string, subject string, uris, dns []string) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return "", "", nil, nil
	}
	leaf := cs.PeerCertificates[0]
	sum := sha256.Sum256(leaf.Raw)
	hash = hex.EncodeToString(sum[:])
	subject = leaf.Subject.String()
	for _, u := range leaf.URIs {
		uris = append(uris, u.String())
	}
	dns = slices.Clone(leaf.DNSNames)
	return hash, subject, uris, dns
}
