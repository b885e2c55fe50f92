package tls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/internal/pebbletest"
	edgetls "github.com/edgeproxy/edge/tls"
)

// The ACME tests run one real pebble (internal/pebbletest: letsencrypt's
// test ACME server with a DNS server answering 127.0.0.1 for every name)
// per test binary, with:
//   - a plain-HTTP server on loopback that answers HTTP-01 with
//     (*ACME).HTTPChallenge, at the port pebble validates HTTP-01 on;
//   - a crypto/tls listener on loopback serving the current test's
//     ServerConfigWith config, at the port pebble validates TLS-ALPN-01 on;
//     the tests' own clients handshake there too.
//
// Tests using it must not run in parallel: the listeners serve one test's
// manager at a time.

var (
	pebbleOnce sync.Once
	pebbleEnv  *acmeEnv
	pebbleErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pebbleEnv != nil {
		pebbleEnv.close()
	}
	os.Exit(code)
}

// acmeEnv is the shared pebble setup.
type acmeEnv struct {
	directory string         // pebble's ACME directory URL
	rootFile  string         // CA of pebble's own HTTPS certificate (ca_root_file)
	issuing   *x509.CertPool // pebble's issuing root, for verifying issued chains
	httpPort  int
	tlsPort   int
	tlsAddr   string

	pebble *pebbletest.Env
	httpLn net.Listener
	tlsLn  net.Listener
	wg     sync.WaitGroup

	acme      atomic.Pointer[edgetls.ACME] // answers HTTP-01
	serverTLS atomic.Pointer[tls.Config]   // serves the TLS listener
	httpHits  atomic.Int64                 // HTTP-01 requests answered
	alpnHits  atomic.Int64                 // handshakes that negotiated acme-tls/1
}

// blockedDomain is refused by pebble's policy (domainBlocklist).
const blockedDomain = "blocked.edge.test"

// getACMEEnv starts the shared environment on first use.
func getACMEEnv(t *testing.T) *acmeEnv {
	t.Helper()
	pebbleOnce.Do(func() {
		start := time.Now()
		pebbleEnv, pebbleErr = startACMEEnv(t)
		if pebbleErr == nil {
			t.Logf("pebble environment ready in %v", time.Since(start).Round(time.Millisecond))
		}
	})
	if pebbleErr != nil {
		t.Fatalf("ACME test environment: %v", pebbleErr)
	}
	if pebbleEnv == nil {
		t.Fatalf("ACME test environment: setup failed in an earlier test")
	}
	pebbleEnv.acme.Store(nil)
	pebbleEnv.serverTLS.Store(nil)
	pebbleEnv.httpHits.Store(0)
	pebbleEnv.alpnHits.Store(0)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble output (tail):\n%s", tail(pebbleEnv.pebble.Output(), 4000))
		}
	})
	return pebbleEnv
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func startACMEEnv(t *testing.T) (_ *acmeEnv, err error) {
	e := &acmeEnv{}
	defer func() {
		if err != nil {
			e.close()
		}
	}()

	// HTTP-01: the current test's manager answers.
	if e.httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	e.httpPort = e.httpLn.Addr().(*net.TCPAddr).Port
	httpSrv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := e.acme.Load(); m != nil && r.Method == http.MethodGet {
			if body, ok := m.HTTPChallenge(r.Host, r.URL.Path); ok {
				e.httpHits.Add(1)
				w.Header().Set("Content-Type", "text/plain")
				io.WriteString(w, body)
				return
			}
		}
		http.NotFound(w, r)
	})}
	e.wg.Go(func() { httpSrv.Serve(e.httpLn) })

	// TLS: the current test's config serves; acme-tls/1 connections close
	// right after the handshake, others get one byte.
	if e.tlsLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	e.tlsAddr = e.tlsLn.Addr().String()
	e.tlsPort = e.tlsLn.Addr().(*net.TCPAddr).Port
	e.wg.Go(func() {
		for {
			c, err := e.tlsLn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := e.serverTLS.Load()
				if sc == nil {
					return
				}
				c.SetDeadline(time.Now().Add(30 * time.Second))
				tc := tls.Server(c, sc)
				if err := tc.Handshake(); err != nil {
					return
				}
				if tc.ConnectionState().NegotiatedProtocol == edgetls.ACMETLS1Protocol {
					e.alpnHits.Add(1)
					return
				}
				tc.Write([]byte{'x'})
			}()
		}
	})

	e.pebble, err = pebbletest.Start(pebbletest.Options{
		HTTPPort:        e.httpPort,
		TLSPort:         e.tlsPort,
		DomainBlocklist: []string{blockedDomain},
	})
	if err != nil {
		return nil, err
	}
	e.directory = e.pebble.Directory
	e.rootFile = e.pebble.RootFile
	e.issuing = e.pebble.Roots
	return e, nil
}

func (e *acmeEnv) close() {
	if e.pebble != nil {
		e.pebble.Close()
	}
	if e.httpLn != nil {
		e.httpLn.Close()
	}
	if e.tlsLn != nil {
		e.tlsLn.Close()
	}
	e.wg.Wait()
}

// serve makes the shared listeners answer with m and sc.
func (e *acmeEnv) serve(m *edgetls.ACME, sc *tls.Config) {
	e.acme.Store(m)
	e.serverTLS.Store(sc)
}

// dial handshakes with the shared TLS listener as a client verifying
// against roots (nil: no verification) for serverName.
func (e *acmeEnv) dial(serverName string, roots *x509.CertPool) (*x509.Certificate, error) {
	cc := &tls.Config{ServerName: serverName, RootCAs: roots, InsecureSkipVerify: roots == nil, NextProtos: []string{"http/1.1"}}
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", e.tlsAddr, cc)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		return nil, err
	}
	return c.ConnectionState().PeerCertificates[0], nil
}

// waitCert handshakes until the listener serves serverName a certificate
// that verifies against pebble's issuing root, or the deadline passes.
func (e *acmeEnv) waitCert(t *testing.T, serverName string, within time.Duration) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		leaf, err := e.dial(serverName, e.issuing)
		if err == nil {
			return leaf
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate from pebble for %s within %v; last handshake: %v", serverName, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testLogger logs into a buffer the test can search, and dumps it when
// the test fails.
func testLogger(t *testing.T) (*slog.Logger, *pebbletest.LogBuffer) {
	buf := &pebbletest.LogBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", tail(buf.String(), 8000))
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// acmeListener builds a manager and a listener config for a.
func acmeListener(t *testing.T, e *acmeEnv, dir string, l *config.ListenerTLS, logger *slog.Logger, http01, alpn bool) (*edgetls.ACME, *tls.Config) {
	t.Helper()
	cfg := testConfig(dir)
	m, err := edgetls.NewACME(cfg, "listeners[0].tls.acme", l.ACME, edgetls.ACMEOptions{Logger: logger, HTTPPort: e.httpPort, TLSPort: e.tlsPort})
	if err != nil {
		t.Fatalf("NewACME: %v", err)
	}
	m.SetChallengeTypes(http01, alpn)
	sc, err := edgetls.ServerConfigWith(cfg, "listeners[0].tls", l, []string{"h2", "http/1.1"}, edgetls.ServerOptions{ACME: m})
	if err != nil {
		t.Fatalf("ServerConfigWith: %v", err)
	}
	if slices.Contains(sc.NextProtos, edgetls.ACMETLS1Protocol) {
		t.Errorf("NextProtos = %q: acme-tls/1 must only be negotiated through the challenge config", sc.NextProtos)
	}
	e.serve(m, sc)
	t.Cleanup(m.Stop)
	return m, sc
}

func TestACMEIssuance(t *testing.T) {
	e := getACMEEnv(t)
	tests := []struct {
		name         string
		domain       string
		http01, alpn bool
		wantHTTPHits bool
		wantALPNHits bool
	}{
		{"HTTP-01 through HTTPChallenge", "http01.edge.test", true, false, true, false},
		{"TLS-ALPN-01 on the TLS listener", "alpn.edge.test", false, true, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.httpHits.Store(0)
			e.alpnHits.Store(0)
			dir := t.TempDir()
			logger, logs := testLogger(t)
			l := &config.ListenerTLS{ACME: &config.ACME{
				Directory:  e.directory,
				CARootFile: e.rootFile,
				Email:      "ops@edge.test",
				Domains:    []string{tt.domain},
				Storage:    "acme", // relative: resolved against the config directory
			}}
			m, _ := acmeListener(t, e, dir, l, logger, tt.http01, tt.alpn)

			// Before Start there is no certificate at all: the handshake fails.
			if _, err := e.dial(tt.domain, nil); err == nil {
				t.Errorf("handshake before Start succeeded, want it refused (no certificate yet)")
			}
			start := time.Now()
			m.Start(context.Background())
			leaf := e.waitCert(t, tt.domain, 30*time.Second)
			t.Logf("issued in %v", time.Since(start).Round(time.Millisecond))
			if !slices.Equal(leaf.DNSNames, []string{tt.domain}) {
				t.Errorf("certificate names %q, want [%s]", leaf.DNSNames, tt.domain)
			}
			if got := e.httpHits.Load() > 0; got != tt.wantHTTPHits {
				t.Errorf("HTTP-01 answered: %v, want %v", got, tt.wantHTTPHits)
			}
			if got := e.alpnHits.Load() > 0; got != tt.wantALPNHits {
				t.Errorf("TLS-ALPN-01 handshakes: %v, want %v", got, tt.wantALPNHits)
			}
			// Without SNI the only managed certificate is the default.
			if leaf, err := e.dial("", nil); err != nil || !slices.Equal(leaf.DNSNames, []string{tt.domain}) {
				t.Errorf("no-SNI handshake: %v, %v; want the managed certificate as default", leaf, err)
			}
			// Stored under the resolved storage directory.
			if _, err := os.Stat(filepath.Join(dir, "acme", "certificates")); err != nil {
				t.Errorf("storage: %v", err)
			}
			if !strings.Contains(logs.String(), "ACME certificate obtained") {
				t.Errorf("log does not say the certificate was obtained")
			}

			// A second manager on the same storage (a hot-restarted
			// child) serves the stored certificate without a new order.
			m.Stop()
			e.httpHits.Store(0)
			e.alpnHits.Store(0)
			m2, _ := acmeListener(t, e, dir, l, logger, tt.http01, tt.alpn)
			m2.Start(context.Background())
			leaf2 := e.waitCert(t, tt.domain, 10*time.Second)
			if !leaf2.Equal(leaf) {
				t.Errorf("restarted manager serves serial %v, want the stored %v", leaf2.SerialNumber, leaf.SerialNumber)
			}
			if n := e.httpHits.Load() + e.alpnHits.Load(); n != 0 {
				t.Errorf("restarted manager solved %d challenges, want 0", n)
			}
		})
	}
}

func TestACMEOnDemand(t *testing.T) {
	e := getACMEEnv(t)
	dir := t.TempDir()
	ca := newPKI(t, dir, "files-ca")
	file := ca.issue("file", leafOpts{dns: []string{"file.edge.test"}})

	var mu sync.Mutex
	var asked []string
	askLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	askSrv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := r.URL.Query().Get("domain")
		mu.Lock()
		asked = append(asked, d)
		mu.Unlock()
		if r.URL.Query().Get("token") != "s3cret" || d != "yes.edge.test" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		w.WriteHeader(http.StatusOK)
	})}
	go askSrv.Serve(askLn)
	t.Cleanup(func() { askSrv.Close() })

	logger, _ := testLogger(t)
	l := &config.ListenerTLS{
		Certificates: []config.CertificateFiles{{CertFile: file.certFile, KeyFile: file.keyFile}},
		ACME: &config.ACME{
			Directory:   e.directory,
			CARootFile:  e.rootFile,
			OnDemandAsk: "http://" + askLn.Addr().String() + "/allow?token=s3cret",
			Storage:     filepath.Join(dir, "acme"),
		},
	}
	m, _ := acmeListener(t, e, dir, l, logger, true, false)
	m.Start(context.Background())

	tests := []struct {
		name      string
		sni       string
		wantPeble bool // a certificate from pebble; else the file default
	}{
		{"allowed name is obtained during the handshake", "yes.edge.test", true},
		{"refused name gets the default file certificate", "no.edge.test", false},
		{"file certificate wins over on-demand", "file.edge.test", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			asked = nil
			mu.Unlock()
			leaf, err := e.dial(tt.sni, nil)
			if err != nil {
				t.Fatalf("handshake for %s: %v", tt.sni, err)
			}
			if tt.wantPeble {
				if _, err := leaf.Verify(x509.VerifyOptions{DNSName: tt.sni, Roots: e.issuing, Intermediates: intermediates(t, e, tt.sni)}); err != nil {
					t.Errorf("%s: certificate %q does not verify against pebble's root: %v", tt.sni, leaf.DNSNames, err)
				}
			} else if !leaf.Equal(file.leaf) {
				t.Errorf("%s: got certificate %q, want the file certificate", tt.sni, leaf.DNSNames)
			}
			mu.Lock()
			got := slices.Clone(asked)
			mu.Unlock()
			want := []string{tt.sni}
			if tt.sni == "file.edge.test" {
				want = nil // a file certificate matched; nobody was asked
			}
			if !slices.Equal(got, want) {
				t.Errorf("on_demand_ask queried for %q, want %q", got, want)
			}
		})
	}
	// Only the allowed name reached the CA.
	var stored []string
	filepath.WalkDir(filepath.Join(dir, "acme", "certificates"), func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".crt") {
			stored = append(stored, strings.TrimSuffix(filepath.Base(p), ".crt"))
		}
		return nil
	})
	if !slices.Equal(stored, []string{"yes.edge.test"}) {
		t.Errorf("certificates in storage: %q, want [yes.edge.test]", stored)
	}
}

// intermediates fetches the chain the listener serves for sni.
func intermediates(t *testing.T, e *acmeEnv, sni string) *x509.CertPool {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.tlsAddr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake for %s: %v", sni, err)
	}
	defer c.Close()
	pool := x509.NewCertPool()
	for _, ic := range c.ConnectionState().PeerCertificates[1:] {
		pool.AddCert(ic)
	}
	return pool
}

func TestACMEFailureKeepsServingFiles(t *testing.T) {
	e := getACMEEnv(t)
	tests := []struct {
		name       string
		directory  string
		domain     string
		wantReason []string // in the log
	}{
		{"CA refuses the domain", e.directory, blockedDomain,
			[]string{"ACME certificate not obtained", "rejectedIdentifier", "forbidden by policy", `reason="Order included an identifier for which issuance is forbidden by policy`}},
		{"directory unreachable", "https://127.0.0.1:1/dir", "down.edge.test",
			[]string{"ACME certificate not obtained", "connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ca := newPKI(t, dir, "files-ca")
			file := ca.issue("file", leafOpts{dns: []string{"file.edge.test"}})
			logger, logs := testLogger(t)
			l := &config.ListenerTLS{
				Certificates: []config.CertificateFiles{{CertFile: file.certFile, KeyFile: file.keyFile}},
				ACME: &config.ACME{
					Directory:  tt.directory,
					CARootFile: e.rootFile,
					Domains:    []string{tt.domain},
					Storage:    filepath.Join(dir, "acme"),
				},
			}
			m, _ := acmeListener(t, e, dir, l, logger, true, true)
			m.Start(context.Background())

			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(logs.String(), "will retry") {
				if time.Now().After(deadline) {
					t.Fatalf("no retry scheduled in the log within 20s")
				}
				time.Sleep(50 * time.Millisecond)
			}
			log := logs.String()
			for _, w := range append(tt.wantReason, "retrying_in=1m0s") {
				if !strings.Contains(log, w) {
					t.Errorf("log does not contain %q", w)
				}
			}
			// The file certificate is served meanwhile: for its own name
			// and, as the default, for the failing one.
			for _, sni := range []string{"file.edge.test", tt.domain, ""} {
				var roots *x509.CertPool // the default does not match the name: skip verification
				if sni == "file.edge.test" {
					roots = ca.pool()
				}
				leaf, err := e.dial(sni, roots)
				if err != nil || !leaf.Equal(file.leaf) {
					t.Errorf("SNI %q: %v, %v; want the file certificate", sni, leaf, err)
				}
			}
			// Stop ends the backoff wait promptly.
			start := time.Now()
			m.Stop()
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Stop took %v", d)
			}
		})
	}
}

func TestHTTPChallengeIgnoresOtherRequests(t *testing.T) {
	cfg := testConfig(t.TempDir())
	m, err := edgetls.NewACME(cfg, "listeners[0].tls.acme", &config.ACME{Domains: []string{"a.edge.test"}, Storage: "acme"}, edgetls.ACMEOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ host, path string }{
		{"a.edge.test", "/"},
		{"a.edge.test", "/.well-known/other"},
		{"a.edge.test", "/.well-known/acme-challenge/token"}, // not started: no challenge
	} {
		if body, ok := m.HTTPChallenge(tt.host, tt.path); ok {
			t.Errorf("HTTPChallenge(%q, %q) = %q, true; want false", tt.host, tt.path, body)
		}
	}
	if n := testing.AllocsPerRun(100, func() { m.HTTPChallenge("a.edge.test", "/index.html") }); n != 0 {
		t.Errorf("HTTPChallenge for an ordinary path: %v allocations, want 0", n)
	}
}

func TestACMEConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newPKI(t, dir, "ca")
	good := ca.issue("good", leafOpts{dns: []string{"a.test"}})
	os.WriteFile(filepath.Join(dir, "garbage.pem"), []byte("not pem\n"), 0o600)
	cfg := testConfig(dir)
	tests := []struct {
		name string
		a    config.ACME
		want []string
	}{
		{"wildcard", config.ACME{Domains: []string{"*.a.test"}}, []string{"listeners[0].tls.acme.domains[0]: \"*.a.test\": wildcard certificates need the DNS-01 challenge"}},
		{"IP", config.ACME{Domains: []string{"a.test", "192.0.2.1"}}, []string{"acme.domains[1]: \"192.0.2.1\" is an IP address"}},
		{"malformed", config.ACME{Domains: []string{"a b.test"}}, []string{"acme.domains[0]: \"a b.test\" is not a valid DNS name"}},
		{"duplicate", config.ACME{Domains: []string{"a.test", "A.test."}}, []string{"acme.domains[1]: \"A.test.\" is listed twice"}},
		{"http directory", config.ACME{Domains: []string{"a.test"}, Directory: "http://ca.test/dir"}, []string{"acme.directory: \"http://ca.test/dir\" is not an https URL"}},
		{"ca_root_file missing", config.ACME{Domains: []string{"a.test"}, CARootFile: "nope.pem"}, []string{"acme.ca_root_file: cannot read CA file " + filepath.Join(dir, "nope.pem")}},
		{"ca_root_file garbage", config.ACME{Domains: []string{"a.test"}, CARootFile: "garbage.pem"}, []string{"acme.ca_root_file: CA file " + filepath.Join(dir, "garbage.pem") + ": not PEM"}},
		{"ask not a URL", config.ACME{OnDemandAsk: "localhost:5555/allow"}, []string{"acme.on_demand_ask: \"localhost:5555/allow\" is not an http(s) URL"}},
		{"email", config.ACME{Domains: []string{"a.test"}, Email: "ops"}, []string{"acme.email: \"ops\" is not an email address"}},
		{"nothing to manage", config.ACME{}, []string{"acme.domains: list the domains"}},
		{"every problem", config.ACME{Domains: []string{"*.a.test", "1.2.3.4"}, Directory: "ftp://x"}, []string{"domains[0]", "domains[1]", "acme.directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.a
			_, err := edgetls.NewACME(cfg, "listeners[0].tls.acme", &a, edgetls.ACMEOptions{})
			if err == nil {
				t.Fatalf("NewACME: no error, want %q", tt.want)
			}
			// ServerConfig reports the same errors, next to the file ones.
			l := &config.ListenerTLS{ACME: &a, Certificates: []config.CertificateFiles{{CertFile: good.certFile, KeyFile: "nope.key"}}}
			_, err2 := edgetls.ServerConfig(cfg, "listeners[0].tls", l, nil)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("NewACME error:\n%v\nwant it to contain %q", err, w)
				}
				if err2 == nil || !strings.Contains(err2.Error(), w) {
					t.Errorf("ServerConfig error:\n%v\nwant it to contain %q", err2, w)
				}
			}
			if err2 == nil || !strings.Contains(err2.Error(), "certificates[0].key_file") {
				t.Errorf("ServerConfig error:\n%v\nwant the key_file error too", err2)
			}
		})
	}

	// A valid section: an ACME-only listener is accepted, and its
	// storage defaults as documented.
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "xdg"))
	m, err := edgetls.NewACME(cfg, "listeners[0].tls.acme", &config.ACME{Domains: []string{"A.test."}}, edgetls.ACMEOptions{})
	if err != nil {
		t.Fatalf("NewACME: %v", err)
	}
	if got, want := m.Storage(), filepath.Join(dir, "xdg", "edge", "acme"); got != want {
		t.Errorf("default storage %q, want %q", got, want)
	}
	if got := m.Domains(); !slices.Equal(got, []string{"a.test"}) {
		t.Errorf("Domains() = %q, want [a.test]", got)
	}
	if _, err := edgetls.ServerConfig(cfg, "listeners[0].tls", &config.ListenerTLS{ACME: &config.ACME{Domains: []string{"a.test"}}}, nil); err != nil {
		t.Errorf("ServerConfig with acme only: %v, want accepted", err)
	}
	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv("HOME", "")
	m, _ = edgetls.NewACME(cfg, "listeners[0].tls.acme", &config.ACME{Domains: []string{"a.test"}}, edgetls.ACMEOptions{})
	if got, want := m.Storage(), filepath.Join(dir, "acme"); got != want {
		t.Errorf("storage without XDG_DATA_HOME and HOME: %q, want %q", got, want)
	}
}
