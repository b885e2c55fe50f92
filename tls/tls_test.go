package tls_test

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edgeproxy/edge/edge/config"
	edgetls "github.com/edgeproxy/edge/tls"
)

// sniFixture is a listener with three certificates: a default, an exact
// name and a wildcard.
type sniFixture struct {
	ca               *pki
	def, exact, wild issued
	cfg              *config.Config
	listener         *config.ListenerTLS
	serverConfig     *tls.Config
}

func newSNIFixture(t *testing.T) *sniFixture {
	t.Helper()
	dir := t.TempDir()
	f := &sniFixture{ca: newPKI(t, dir, "ca")}
	f.def = f.ca.issue("default", leafOpts{cn: "default.test", dns: []string{"default.test"}})
	f.exact = f.ca.issue("api", leafOpts{cn: "api", dns: []string{"api.example.com"}})
	f.wild = f.ca.issue("wild", leafOpts{cn: "wild", dns: []string{"*.example.com"}, rsa: true})
	f.cfg = testConfig(dir)
	f.listener = &config.ListenerTLS{
		Certificates: []config.CertificateFiles{
			{CertFile: f.def.certFile, KeyFile: f.def.keyFile},
			{CertFile: f.exact.certFile, KeyFile: f.exact.keyFile},
			{CertFile: filepath.Join(dir, f.wild.certFile), KeyFile: f.wild.keyFile}, // absolute path too
		},
	}
	sc, err := edgetls.ServerConfig(f.cfg, "listeners[0].tls", f.listener, []string{"h2", "http/1.1"})
	if err != nil {
		t.Fatalf("ServerConfig: %v", err)
	}
	f.serverConfig = sc
	return f
}

func TestSNISelectsCertificate(t *testing.T) {
	f := newSNIFixture(t)
	tests := []struct {
		sni  string
		want issued
		name string
	}{
		{"api.example.com", f.exact, "exact"},
		{"API.Example.COM", f.exact, "exact, other case"},
		{"www.example.com", f.wild, "wildcard"},
		{"Other.EXAMPLE.com", f.wild, "wildcard, other case"},
		{"a.b.example.com", f.def, "wildcard matches one label only"},
		{"example.com", f.def, "wildcard does not match the bare domain"},
		{"unknown.test", f.def, "unknown name gets the default"},
		{"", f.def, "no SNI gets the default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := &tls.Config{ServerName: tt.sni, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
			srv, cli := handshake(t, f.serverConfig, cc)
			if srv.err != nil || cli.err != nil {
				t.Fatalf("handshake: server %v, client %v", srv.err, cli.err)
			}
			if got := srv.state.ServerName; got != tt.sni {
				t.Errorf("server saw SNI %q, want %q", got, tt.sni)
			}
			got := cli.state.PeerCertificates[0]
			if !got.Equal(tt.want.leaf) {
				t.Errorf("SNI %q: got certificate %v, want %v", tt.sni, got.DNSNames, tt.want.leaf.DNSNames)
			}
		})
	}
}

func TestSNIVerifiedByClient(t *testing.T) {
	// A real client verifying the chain and the name accepts what SNI picked.
	f := newSNIFixture(t)
	for _, name := range []string{"api.example.com", "x.example.com", "default.test"} {
		cc := &tls.Config{ServerName: name, RootCAs: f.ca.pool()}
		if srv, cli := handshake(t, f.serverConfig, cc); srv.err != nil || cli.err != nil {
			t.Errorf("SNI %q: server %v, client %v", name, srv.err, cli.err)
		}
	}
}

func TestStoreLookup(t *testing.T) {
	dir := t.TempDir()
	ca := newPKI(t, dir, "ca")
	def := ca.issue("def", leafOpts{cn: "cn-only.test"}) // no SANs: the CN counts
	ecdsaCert := ca.issue("ec", leafOpts{dns: []string{"dual.test", "EXTRA.test."}})
	rsaCert := ca.issue("rsa", leafOpts{dns: []string{"dual.test"}, rsa: true})
	partial := ca.issue("partial", leafOpts{dns: []string{"w*.example.com", "*.wild.test"}})
	s, err := edgetls.NewStore([]tls.Certificate{def.tlsCert, ecdsaCert.tlsCert, rsaCert.tlsCert, partial.tlsCert})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want issued
	}{
		{"cn-only.test", def},
		{"cn-only.test.", def},
		{"dual.test", ecdsaCert},
		{"DUAL.TEST.", ecdsaCert},
		{"extra.test", ecdsaCert},
		{"www.example.com", def}, // partial wildcards are not honoured
		{"a.wild.test", partial},
		{"wild.test", def},
		{".wild.test", def},
		{".", def},
		{"", def},
		{strings.Repeat("a", 300) + ".wild.test", def},
	}
	for _, tt := range tests {
		if got := s.Lookup(tt.name); !got.Leaf.Equal(tt.want.leaf) {
			t.Errorf("Lookup(%q) = %v %q, want %v %q", tt.name, got.Leaf.DNSNames, got.Leaf.Subject.CommonName, tt.want.leaf.DNSNames, tt.want.leaf.Subject.CommonName)
		}
	}
	if got, want := s.Len(), 4; got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
	if !s.Default().Leaf.Equal(def.leaf) {
		t.Errorf("Default() is not the first certificate")
	}

	// A client that supports only RSA gets the RSA certificate for a name
	// that has both.
	sc := &tls.Config{GetCertificate: s.GetCertificate, MaxVersion: tls.VersionTLS12}
	cc := &tls.Config{ServerName: "dual.test", RootCAs: ca.pool(), MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}
	srv, cli := handshake(t, sc, cc)
	if srv.err != nil || cli.err != nil {
		t.Fatalf("handshake: server %v, client %v", srv.err, cli.err)
	}
	if got := cli.state.PeerCertificates[0]; !got.Equal(rsaCert.leaf) {
		t.Errorf("RSA-only client got %T key, want the RSA certificate", got.PublicKey)
	}
	cc.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	if _, cli := handshake(t, sc, cc); cli.err != nil || !cli.state.PeerCertificates[0].Equal(ecdsaCert.leaf) {
		t.Errorf("ECDSA-only client: err %v, want the ECDSA certificate", cli.err)
	}

	// A second certificate without names could never be picked.
	noName := ca.issue("noname", leafOpts{})
	if _, err := edgetls.NewStore([]tls.Certificate{def.tlsCert, noName.tlsCert}); err == nil || !strings.Contains(err.Error(), "certificate 1") {
		t.Errorf("NewStore with a nameless second certificate: err %v, want one naming certificate 1", err)
	}
	if _, err := edgetls.NewStore(nil); err == nil {
		t.Errorf("NewStore(nil): got no error")
	}
}

func TestALPN(t *testing.T) {
	f := newSNIFixture(t)
	tests := []struct {
		client  []string
		want    string
		refused bool
	}{
		{[]string{"h2", "http/1.1"}, "h2", false},
		{[]string{"http/1.1", "h2"}, "h2", false}, // server preference
		{[]string{"http/1.1"}, "http/1.1", false},
		{nil, "", false},
		{[]string{"spdy/3"}, "", true}, // offered ALPN but none in common
	}
	for _, tt := range tests {
		cc := &tls.Config{ServerName: "api.example.com", RootCAs: f.ca.pool(), NextProtos: tt.client}
		srv, cli := handshake(t, f.serverConfig, cc)
		if tt.refused {
			if srv.err == nil {
				t.Errorf("client ALPN %q: handshake succeeded with %q, want refused", tt.client, srv.state.NegotiatedProtocol)
			}
			continue
		}
		if srv.err != nil || cli.err != nil {
			t.Errorf("client ALPN %q: server %v, client %v", tt.client, srv.err, cli.err)
			continue
		}
		if got := cli.state.NegotiatedProtocol; got != tt.want {
			t.Errorf("client ALPN %q: negotiated %q, want %q", tt.client, got, tt.want)
		}
	}
}

func TestVersionsAndCiphers(t *testing.T) {
	f := newSNIFixture(t)
	l13 := *f.listener
	l13.MinVersion = "1.3"
	sc13, err := edgetls.ServerConfig(f.cfg, "listeners[0].tls", &l13, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		sc        *tls.Config
		min, max  uint16
		ciphers   []uint16
		wantVer   uint16
		wantError bool
	}{
		{"TLS 1.1 client refused", f.serverConfig, tls.VersionTLS10, tls.VersionTLS11, nil, 0, true},
		{"TLS 1.2 client accepted", f.serverConfig, tls.VersionTLS12, tls.VersionTLS12, nil, tls.VersionTLS12, false},
		{"TLS 1.3 client accepted", f.serverConfig, tls.VersionTLS12, tls.VersionTLS13, nil, tls.VersionTLS13, false},
		{"1.3-only listener refuses TLS 1.2", sc13, tls.VersionTLS12, tls.VersionTLS12, nil, 0, true},
		{"1.3-only listener accepts TLS 1.3", sc13, tls.VersionTLS13, tls.VersionTLS13, nil, tls.VersionTLS13, false},
		{"CBC suite refused", f.serverConfig, tls.VersionTLS12, tls.VersionTLS12,
			[]uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}, 0, true},
		{"RSA key exchange refused", f.serverConfig, tls.VersionTLS12, tls.VersionTLS12,
			[]uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}, 0, true},
		{"ChaCha20 accepted", f.serverConfig, tls.VersionTLS12, tls.VersionTLS12,
			[]uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, tls.VersionTLS12, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := &tls.Config{ServerName: "api.example.com", RootCAs: f.ca.pool(),
				MinVersion: tt.min, MaxVersion: tt.max, CipherSuites: tt.ciphers}
			srv, cli := handshake(t, tt.sc, cc)
			if tt.wantError {
				if srv.err == nil {
					t.Fatalf("handshake succeeded with version %x cipher %s, want refused", srv.state.Version, tls.CipherSuiteName(srv.state.CipherSuite))
				}
				return
			}
			if srv.err != nil || cli.err != nil {
				t.Fatalf("handshake: server %v, client %v", srv.err, cli.err)
			}
			if got := srv.state.Version; got != tt.wantVer {
				t.Errorf("version = %x, want %x", got, tt.wantVer)
			}
		})
	}

	// The key exchange is one of the configured groups.
	_, cli := handshake(t, f.serverConfig, &tls.Config{ServerName: "api.example.com", RootCAs: f.ca.pool(),
		CurvePreferences: []tls.CurveID{tls.CurveP384, tls.CurveP256}})
	if cli.err != nil || cli.state.CurveID != tls.CurveP256 {
		t.Errorf("client offering P-384 and P-256: curve %v err %v, want P-256", cli.state.CurveID, cli.err)
	}
	_, cli = handshake(t, f.serverConfig, &tls.Config{ServerName: "api.example.com", RootCAs: f.ca.pool(),
		CurvePreferences: []tls.CurveID{tls.CurveP384}})
	if cli.err == nil {
		t.Errorf("client offering only P-384: handshake succeeded with %v, want refused", cli.state.CurveID)
	}
}

// mtlsFixture has a server certificate, a good client (pop), a client
// with another SAN (other), and a client from a different CA (rogue).
type mtlsFixture struct {
	dir               string
	cfg               *config.Config
	ca, otherCA       *pki
	server            issued
	pop, other, rogue issued
}

func newMTLSFixture(t *testing.T) *mtlsFixture {
	t.Helper()
	dir := t.TempDir()
	f := &mtlsFixture{dir: dir, cfg: testConfig(dir)}
	f.ca = newPKI(t, dir, "dc-ca")
	f.otherCA = newPKI(t, dir, "other-ca")
	f.server = f.ca.issue("front", leafOpts{cn: "front", dns: []string{"front.dc.internal"}})
	f.pop = f.ca.issue("pop", leafOpts{cn: "pop1", dns: []string{"pop.edge.internal"}, uris: []string{"spiffe://edge/pop/fra1"}})
	f.other = f.ca.issue("other", leafOpts{cn: "other", dns: []string{"other.edge.internal"}, uris: []string{"spiffe://edge/other"}})
	f.rogue = f.otherCA.issue("rogue", leafOpts{cn: "rogue", dns: []string{"pop.edge.internal"}})
	return f
}

func (f *mtlsFixture) serverConfig(t *testing.T, ca *config.ClientAuth) *tls.Config {
	t.Helper()
	l := &config.ListenerTLS{
		Certificates: []config.CertificateFiles{{CertFile: f.server.certFile, KeyFile: f.server.keyFile}},
		ClientAuth:   ca,
	}
	sc, err := edgetls.ServerConfig(f.cfg, "listeners[0].tls", l, []string{"h2"})
	if err != nil {
		t.Fatalf("ServerConfig: %v", err)
	}
	return sc
}

func (f *mtlsFixture) client(c *issued) *tls.Config {
	cc := &tls.Config{ServerName: "front.dc.internal", RootCAs: f.ca.pool(), NextProtos: []string{"h2"}}
	if c != nil {
		// Present the certificate whatever CAs the server names as
		// acceptable (crypto/tls's Certificates would quietly send none).
		cert := c.tlsCert
		cc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	return cc
}

func pinOf(i issued, colons bool) string {
	sum := sha256.Sum256(i.leaf.Raw)
	if !colons {
		return fmt.Sprintf("%x", sum)
	}
	parts := make([]string, len(sum))
	for j, b := range sum {
		parts[j] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

func TestClientAuth(t *testing.T) {
	f := newMTLSFixture(t)
	tests := []struct {
		name    string
		auth    config.ClientAuth
		client  *issued
		wantErr error // nil: accepted; errAny: refused for any reason
	}{
		{"require: no certificate", config.ClientAuth{Mode: "require", CAFile: "dc-ca.crt"}, nil, errAny},
		{"require: other CA", config.ClientAuth{Mode: "require", CAFile: "dc-ca.crt"}, &f.rogue, errAny},
		{"require: good", config.ClientAuth{Mode: "require", CAFile: "dc-ca.crt"}, &f.pop, nil},
		{"request: no certificate", config.ClientAuth{Mode: "request", CAFile: "dc-ca.crt"}, nil, nil},
		{"request: other CA", config.ClientAuth{Mode: "request", CAFile: "dc-ca.crt"}, &f.rogue, errAny},
		{"request: good", config.ClientAuth{Mode: "request", CAFile: "dc-ca.crt"}, &f.pop, nil},
		{"none: certificate ignored", config.ClientAuth{Mode: "none"}, &f.rogue, nil},
		{"allowed_sans DNS: allowed", config.ClientAuth{Mode: "require", CAFile: "dc-ca.crt",
			AllowedSANs: []string{"x.internal", "POP.edge.internal"}}, &f.pop, nil},
		{"allowed_sans URI: allowed", config.ClientAuth{Mode: "require", CAFile: "dc-ca.crt",
			AllowedSANs: []string{"spiffe://edge/pop/fra1"}}, &f.pop, nil},
		{"allowed_sans: refused", config.ClientAuth{Mode: "require", CAFile: "dc-ca.crt",
			AllowedSANs: []string{"pop.edge.internal", "spiffe://edge/pop/fra1"}}, &f.other, edgetls.ErrSANNotAllowed},
		{"allowed_sans, request: no certificate passes", config.ClientAuth{Mode: "request", CAFile: "dc-ca.crt",
			AllowedSANs: []string{"pop.edge.internal"}}, nil, nil},
		{"allowed_sans do not bypass the CA", config.ClientAuth{Mode: "require", CAFile: "dc-ca.crt",
			AllowedSANs: []string{"pop.edge.internal"}}, &f.rogue, errAny},
		{"pinned: allowed (colons, upper case)", config.ClientAuth{Mode: "require", CAFile: "dc-ca.crt",
			PinnedSHA256: []string{pinOf(f.other, false), pinOf(f.pop, true)}}, &f.pop, nil},
		{"pinned: refused", config.ClientAuth{Mode: "require", CAFile: "dc-ca.crt",
			PinnedSHA256: []string{pinOf(f.other, false)}}, &f.pop, edgetls.ErrPinMismatch},
		{"pinned and allowed_sans: both must hold", config.ClientAuth{Mode: "require", CAFile: "dc-ca.crt",
			AllowedSANs: []string{"other.edge.internal"}, PinnedSHA256: []string{pinOf(f.pop, false)}}, &f.other, edgetls.ErrPinMismatch},
		{"pinned and allowed_sans: both hold", config.ClientAuth{Mode: "require", CAFile: "dc-ca.crt",
			AllowedSANs: []string{"other.edge.internal"}, PinnedSHA256: []string{pinOf(f.other, false)}}, &f.other, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auth := tt.auth
			srv, cli := handshake(t, f.serverConfig(t, &auth), f.client(tt.client))
			switch {
			case tt.wantErr == nil:
				if srv.err != nil || cli.err != nil {
					t.Fatalf("got refused (server %v, client %v), want accepted", srv.err, cli.err)
				}
			case srv.err == nil:
				t.Fatalf("got accepted, want refused")
			case cli.err == nil:
				t.Errorf("server refused (%v) but the client did not notice", srv.err)
			case tt.wantErr != errAny && !errors.Is(srv.err, tt.wantErr):
				t.Errorf("server error %v, want %v", srv.err, tt.wantErr)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestResumptionRechecksPolicy(t *testing.T) {
	// A session resumed by a client must pass VerifyConnection again: here
	// the second server (same ticket keys, stricter pins) refuses it.
	f := newMTLSFixture(t)
	loose := f.serverConfig(t, &config.ClientAuth{Mode: "require", CAFile: "dc-ca.crt"})
	strict := f.serverConfig(t, &config.ClientAuth{Mode: "require", CAFile: "dc-ca.crt", PinnedSHA256: []string{pinOf(f.other, false)}})
	var key [32]byte
	loose.SetSessionTicketKeys([][32]byte{key})
	strict.SetSessionTicketKeys([][32]byte{key})
	cc := f.client(&f.pop)
	cc.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	if srv, cli := handshake(t, loose, cc); srv.err != nil || cli.err != nil {
		t.Fatalf("first handshake: server %v, client %v", srv.err, cli.err)
	}
	if srv, cli := handshake(t, loose, cc); srv.err != nil || cli.err != nil || !srv.state.DidResume {
		t.Fatalf("second handshake: server %v, client %v, resumed %v; want a resumed session", srv.err, cli.err, srv.state.DidResume)
	}
	srv, _ := handshake(t, strict, cc)
	if !errors.Is(srv.err, edgetls.ErrPinMismatch) {
		t.Errorf("resumption against a stricter policy: server error %v, want %v", srv.err, edgetls.ErrPinMismatch)
	}
}

func TestClientConfigMTLS(t *testing.T) {
	f := newMTLSFixture(t)
	sc := f.serverConfig(t, &config.ClientAuth{Mode: "require", CAFile: "dc-ca.crt", AllowedSANs: []string{"pop.edge.internal"}})
	up := &config.UpstreamTLS{ServerName: "front.dc.internal", CAFile: "dc-ca.crt", CertFile: "pop.crt", KeyFile: "pop.key"}
	cc, err := edgetls.ClientConfig(f.cfg, "clusters[0].tls", up, []string{"h2", "http/1.1"})
	if err != nil {
		t.Fatalf("ClientConfig: %v", err)
	}
	if cc.MinVersion != tls.VersionTLS12 || cc.ServerName != "front.dc.internal" || cc.InsecureSkipVerify {
		t.Errorf("ClientConfig: MinVersion %x ServerName %q InsecureSkipVerify %v, want 1.2, front.dc.internal, false",
			cc.MinVersion, cc.ServerName, cc.InsecureSkipVerify)
	}
	srv, cli := handshake(t, sc, cc)
	if srv.err != nil || cli.err != nil {
		t.Fatalf("handshake: server %v, client %v", srv.err, cli.err)
	}
	if got := cli.state.NegotiatedProtocol; got != "h2" {
		t.Errorf("ALPN = %q, want h2", got)
	}
	hash, subject, uris, dns := edgetls.PeerIdentity(&srv.state)
	if want := pinOf(f.pop, false); hash != want {
		t.Errorf("PeerIdentity hash = %s, want %s", hash, want)
	}
	if subject != "CN=pop1" {
		t.Errorf("PeerIdentity subject = %q, want CN=pop1", subject)
	}
	if !slices.Equal(uris, []string{"spiffe://edge/pop/fra1"}) || !slices.Equal(dns, []string{"pop.edge.internal"}) {
		t.Errorf("PeerIdentity SANs = %q %q, want [spiffe://edge/pop/fra1] [pop.edge.internal]", uris, dns)
	}
	if h, s, u, d := edgetls.PeerIdentity(&cli.state); h == "" || s != "CN=front" || u != nil || len(d) != 1 {
		t.Errorf("PeerIdentity of the server seen by the client = %q %q %q %q", h, s, u, d)
	}
	if h, s, u, d := edgetls.PeerIdentity(&tls.ConnectionState{}); h != "" || s != "" || u != nil || d != nil {
		t.Errorf("PeerIdentity without a peer certificate = %q %q %q %q, want empty", h, s, u, d)
	}

	// Without the client certificate the server refuses.
	noCert := *up
	noCert.CertFile, noCert.KeyFile = "", ""
	cc2, err := edgetls.ClientConfig(f.cfg, "clusters[0].tls", &noCert, nil)
	if err != nil {
		t.Fatal(err)
	}
	if srv, _ := handshake(t, sc, cc2); srv.err == nil {
		t.Errorf("client without certificate accepted, want refused")
	}

	// Trusting the wrong CA, the client refuses the server.
	wrongCA := *up
	wrongCA.CAFile = "other-ca.crt"
	cc3, err := edgetls.ClientConfig(f.cfg, "clusters[0].tls", &wrongCA, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, cli := handshake(t, sc, cc3); cli.err == nil {
		t.Errorf("client trusting another CA accepted the server, want refused")
	}

	// The wrong server name is refused; InsecureSkipVerify skips the check.
	wrongName := *up
	wrongName.ServerName = "not-front.dc.internal"
	cc4, _ := edgetls.ClientConfig(f.cfg, "clusters[0].tls", &wrongName, nil)
	if _, cli := handshake(t, sc, cc4); cli.err == nil {
		t.Errorf("client expecting another server name accepted the server, want refused")
	}
	wrongName.InsecureSkipVerify = true
	cc5, _ := edgetls.ClientConfig(f.cfg, "clusters[0].tls", &wrongName, nil)
	if _, cli := handshake(t, sc, cc5); cli.err != nil {
		t.Errorf("insecure_skip_verify: %v, want accepted", cli.err)
	}

	// nil settings: system roots, no client certificate.
	cc6, err := edgetls.ClientConfig(f.cfg, "clusters[0].tls", nil, []string{"h2"})
	if err != nil || cc6.RootCAs != nil || len(cc6.Certificates) != 0 || cc6.MinVersion != tls.VersionTLS12 {
		t.Errorf("ClientConfig(nil) = %+v, %v; want system roots, no certificate, TLS 1.2", cc6, err)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newPKI(t, dir, "ca")
	good := ca.issue("good", leafOpts{dns: []string{"a.test"}})
	other := ca.issue("other", leafOpts{dns: []string{"b.test"}})
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("garbage.pem", "this is not a certificate\n")
	keyPEM, _ := os.ReadFile(filepath.Join(dir, good.keyFile))
	write("only-key.pem", string(keyPEM))
	write("bad-der.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	write("encrypted.key", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(dir)
	abs := func(name string) string { return filepath.Join(dir, name) }

	listener := func(certs ...config.CertificateFiles) *config.ListenerTLS {
		return &config.ListenerTLS{Certificates: append([]config.CertificateFiles{{CertFile: good.certFile, KeyFile: good.keyFile}}, certs...)}
	}
	tests := []struct {
		name string
		l    *config.ListenerTLS
		want []string // substrings, each of which must appear
	}{
		{"missing cert file", listener(config.CertificateFiles{CertFile: "nope.crt", KeyFile: good.keyFile}),
			[]string{"edge.yaml: listeners[0].tls.certificates[1].cert_file: cannot read certificate file " + abs("nope.crt") + ": no such file or directory"}},
		{"missing key file", listener(config.CertificateFiles{CertFile: good.certFile, KeyFile: "nope.key"}),
			[]string{"listeners[0].tls.certificates[1].key_file: cannot read key file " + abs("nope.key")}},
		{"directory", listener(config.CertificateFiles{CertFile: "adir", KeyFile: good.keyFile}),
			[]string{"certificates[1].cert_file: cannot read certificate file " + abs("adir") + ": is a directory"}},
		{"garbage cert", listener(config.CertificateFiles{CertFile: "garbage.pem", KeyFile: good.keyFile}),
			[]string{"certificates[1].cert_file: certificate file " + abs("garbage.pem") + ": not PEM"}},
		{"garbage key", listener(config.CertificateFiles{CertFile: good.certFile, KeyFile: "garbage.pem"}),
			[]string{"certificates[1].key_file: key file " + abs("garbage.pem") + ": not PEM"}},
		{"key file instead of cert", listener(config.CertificateFiles{CertFile: "only-key.pem", KeyFile: good.keyFile}),
			[]string{"certificates[1].cert_file: certificate file " + abs("only-key.pem") + ": no CERTIFICATE block"}},
		{"cert file instead of key", listener(config.CertificateFiles{CertFile: good.certFile, KeyFile: good.certFile}),
			[]string{"certificates[1].key_file: key file " + abs(good.certFile) + ": no PRIVATE KEY block"}},
		{"bad DER", listener(config.CertificateFiles{CertFile: "bad-der.pem", KeyFile: good.keyFile}),
			[]string{"certificates[1].cert_file: certificate file " + abs("bad-der.pem") + ": certificate 1 does not parse"}},
		{"encrypted key", listener(config.CertificateFiles{CertFile: good.certFile, KeyFile: "encrypted.key"}),
			[]string{"certificates[1].key_file: key file " + abs("encrypted.key") + ": the private key is encrypted"}},
		{"key does not match", listener(config.CertificateFiles{CertFile: good.certFile, KeyFile: other.keyFile}),
			[]string{"certificates[1].key_file: key file " + abs(other.keyFile) + ": the private key does not match the certificate in " + abs(good.certFile)}},
		{"every problem reported", listener(
			config.CertificateFiles{CertFile: "nope.crt", KeyFile: "garbage.pem"},
			config.CertificateFiles{CertFile: other.certFile, KeyFile: good.keyFile}),
			[]string{"certificates[1].cert_file", "certificates[1].key_file", "certificates[2].key_file"}},
		{"no certificates", &config.ListenerTLS{}, []string{"listeners[0].tls.certificates: missing"}},
		{"acme section checked", &config.ListenerTLS{ACME: &config.ACME{Domains: []string{"*.a.test"}}},
			[]string{"listeners[0].tls.acme.domains[0]: \"*.a.test\": wildcard certificates need the DNS-01 challenge"}},
		{"bad min_version", &config.ListenerTLS{MinVersion: "1.1", Certificates: listener().Certificates},
			[]string{"listeners[0].tls.min_version: unsupported TLS version \"1.1\""}},
		{"CA file without certificates", &config.ListenerTLS{Certificates: listener().Certificates,
			ClientAuth: &config.ClientAuth{Mode: "require", CAFile: "only-key.pem"}},
			[]string{"listeners[0].tls.client_auth.ca_file: CA file " + abs("only-key.pem") + ": no certificates in CA file"}},
		{"CA file missing", &config.ListenerTLS{Certificates: listener().Certificates,
			ClientAuth: &config.ClientAuth{Mode: "request", CAFile: "nope.crt"}},
			[]string{"listeners[0].tls.client_auth.ca_file: cannot read CA file " + abs("nope.crt")}},
		{"CA file garbage", &config.ListenerTLS{Certificates: listener().Certificates,
			ClientAuth: &config.ClientAuth{Mode: "request", CAFile: "garbage.pem"}},
			[]string{"listeners[0].tls.client_auth.ca_file: CA file " + abs("garbage.pem") + ": not PEM"}},
		{"no CA file", &config.ListenerTLS{Certificates: listener().Certificates,
			ClientAuth: &config.ClientAuth{Mode: "require"}},
			[]string{"listeners[0].tls.client_auth.ca_file: missing"}},
		{"bad pin", &config.ListenerTLS{Certificates: listener().Certificates,
			ClientAuth: &config.ClientAuth{Mode: "require", CAFile: "ca.crt", PinnedSHA256: []string{pinOf(good, true), "abcd", strings.Repeat("zz", 32)}}},
			[]string{"client_auth.pinned_sha256[1]: invalid SHA-256 fingerprint \"abcd\": want 64 hex digits", "client_auth.pinned_sha256[2]: invalid SHA-256 fingerprint"}},
		{"policy with mode none", &config.ListenerTLS{Certificates: listener().Certificates,
			ClientAuth: &config.ClientAuth{Mode: "none", AllowedSANs: []string{"a"}}},
			[]string{"client_auth.allowed_sans: mode none never asks"}},
		{"unknown mode", &config.ListenerTLS{Certificates: listener().Certificates,
			ClientAuth: &config.ClientAuth{Mode: "optional", CAFile: "ca.crt"}},
			[]string{"client_auth.mode: unknown mode \"optional\""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, err := edgetls.ServerConfig(cfg, "listeners[0].tls", tt.l, nil)
			if err == nil {
				t.Fatalf("got config %v, want an error containing %q", sc != nil, tt.want)
			}
			var errs config.Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T %v, want config.Errors", err, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}

	// ClientConfig names the cluster's fields.
	clientTests := []struct {
		name string
		up   *config.UpstreamTLS
		want []string
	}{
		{"missing CA", &config.UpstreamTLS{CAFile: "nope.crt"},
			[]string{"clusters[3].tls.ca_file: cannot read CA file " + abs("nope.crt")}},
		{"empty CA", &config.UpstreamTLS{CAFile: "only-key.pem"},
			[]string{"clusters[3].tls.ca_file: CA file " + abs("only-key.pem") + ": no certificates in CA file"}},
		{"garbage key", &config.UpstreamTLS{CertFile: good.certFile, KeyFile: "garbage.pem"},
			[]string{"clusters[3].tls.key_file: key file " + abs("garbage.pem") + ": not PEM"}},
		{"mismatch", &config.UpstreamTLS{CertFile: good.certFile, KeyFile: other.keyFile},
			[]string{"clusters[3].tls.key_file: key file " + abs(other.keyFile) + ": the private key does not match"}},
		{"cert without key", &config.UpstreamTLS{CertFile: good.certFile},
			[]string{"clusters[3].tls.key_file: missing"}},
		{"both reported", &config.UpstreamTLS{CAFile: "garbage.pem", CertFile: "nope.crt", KeyFile: good.keyFile},
			[]string{"clusters[3].tls.ca_file", "clusters[3].tls.cert_file"}},
	}
	for _, tt := range clientTests {
		t.Run("client/"+tt.name, func(t *testing.T) {
			_, err := edgetls.ClientConfig(cfg, "clusters[3].tls", tt.up, nil)
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestConfigErrorPositions(t *testing.T) {
	// Through the real config loader, errors point at the line and column
	// of the offending field.
	dir := t.TempDir()
	ca := newPKI(t, dir, "ca")
	good := ca.issue("good", leafOpts{dns: []string{"a.test"}})
	other := ca.issue("other", leafOpts{dns: []string{"b.test"}})
	yaml := fmt.Sprintf(`listeners:
  - name: public
    address: 127.0.0.1:8443
    route_config: main
    tls:
      certificates:
        - cert_file: %s
          key_file: %s
        - cert_file: %s
          key_file: %s
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            direct_response: {status: 200}
`, good.certFile, good.keyFile, good.certFile, other.keyFile)
	cfg, err := config.Parse([]byte(yaml), "edge.yaml", dir)
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	_, err = edgetls.ServerConfig(cfg, "listeners[0].tls", cfg.Listeners[0].TLS, nil)
	want := "edge.yaml:10:21: listeners[0].tls.certificates[1].key_file: key file " + filepath.Join(dir, other.keyFile) + ": the private key does not match"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %v, want it to start with %q", err, want)
	}
}

func TestGetCertificateDoesNotAllocate(t *testing.T) {
	f := newSNIFixture(t)
	// The same files on a listener that also has ACME: file matches, and
	// names ACME has no certificate for, fall through without allocating.
	l := *f.listener
	l.ACME = &config.ACME{Domains: []string{"acme.example.org"}, Storage: "acme"}
	withACME, err := edgetls.ServerConfig(f.cfg, "listeners[0].tls", &l, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range []struct {
		name string
		tc   *tls.Config
	}{{"files", f.serverConfig}, {"files+acme", withACME}} {
		for _, name := range []string{"api.example.com", "API.EXAMPLE.COM", "www.example.com", "nothing.test", "", "ACME.example.org"} {
			hello := &tls.ClientHelloInfo{ServerName: name}
			if n := testing.AllocsPerRun(100, func() { sc.tc.GetCertificate(hello) }); n != 0 {
				t.Errorf("%s: GetCertificate(%q): %v allocations, want 0", sc.name, name, n)
			}
			if sc.tc.GetConfigForClient != nil {
				if n := testing.AllocsPerRun(100, func() { sc.tc.GetConfigForClient(hello) }); n != 0 {
					t.Errorf("%s: GetConfigForClient(%q): %v allocations, want 0", sc.name, name, n)
				}
			}
		}
	}
}

func BenchmarkGetCertificate(b *testing.B) {
	dir := b.TempDir()
	ca := newPKI(b, dir, "ca")
	var certs []tls.Certificate
	for i := range 50 {
		c := ca.issue(fmt.Sprintf("c%d", i), leafOpts{dns: []string{fmt.Sprintf("host%d.example.com", i), fmt.Sprintf("*.svc%d.example.com", i)}})
		certs = append(certs, c.tlsCert)
	}
	s, err := edgetls.NewStore(certs)
	if err != nil {
		b.Fatal(err)
	}
	// A listener with the first certificate file and ACME: selection
	// through the ACME selector (file match, then an unstarted manager).
	first := ca.issue("first", leafOpts{dns: []string{"host42.example.com"}})
	withACME, err := edgetls.ServerConfig(testConfig(dir), "listeners[0].tls", &config.ListenerTLS{
		Certificates: []config.CertificateFiles{{CertFile: first.certFile, KeyFile: first.keyFile}},
		ACME:         &config.ACME{Domains: []string{"acme.example.org"}, Storage: "acme"},
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("acme-listener-file-hit", func(b *testing.B) {
		hello := &tls.ClientHelloInfo{ServerName: "host42.example.com"}
		b.ReportAllocs()
		for b.Loop() {
			withACME.GetConfigForClient(hello)
			if c, _ := withACME.GetCertificate(hello); c == nil {
				b.Fatal("nil certificate")
			}
		}
	})
	for _, bc := range []struct{ name, sni string }{
		{"exact", "host42.example.com"},
		{"exact-upper", "HOST42.Example.com"},
		{"wildcard", "api.svc17.example.com"},
		{"miss", "nothing.example.org"},
		{"nosni", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			hello := &tls.ClientHelloInfo{ServerName: bc.sni}
			b.ReportAllocs()
			for b.Loop() {
				if c, _ := s.GetCertificate(hello); c == nil {
					b.Fatal("nil certificate")
				}
			}
		})
	}
}
