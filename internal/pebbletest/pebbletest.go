// Package pebbletest is test support, not part of edge: it runs a real
// pebble (letsencrypt's test ACME server, built from the module's `tool`
// line with `go tool -n pebble`) for the ACME tests of several packages.
//
// Model: Start builds pebble (cached in the Go build cache), starts a
// loopback DNS server answering 127.0.0.1 for every A query (pebble's
// -dnsserver), gives pebble its own HTTPS certificate from a throwaway CA
// (RootFile, for an ACME client's ca_root_file), and waits until the ACME
// directory answers. Pebble validates HTTP-01 on 127.0.0.1:HTTPPort and
// TLS-ALPN-01 on 127.0.0.1:TLSPort; the caller serves those ports (or
// leaves one closed to force the other challenge type: a client such as
// certmagic falls back to the type that works). Pebble's issuing root and
// intermediate, generated anew at each start, are fetched from its
// management endpoints.
//
// Invariants: pebble really validates every challenge (no sleeps, no
// always-valid, no random badNonce, no authorization reuse), so every
// order reaches the caller's listeners. Close kills pebble and removes its
// files; on Linux pebble also dies with the test binary.
//
// Non-goals: anything outside tests; DNS-01; more than one issuing chain.
package pebbletest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Options configures Start.
type Options struct {
	// HTTPPort and TLSPort are the loopback ports pebble validates HTTP-01
	// and TLS-ALPN-01 challenges on. Zero picks a free port (see FreePort)
	// that nothing serves until the caller binds it.
	HTTPPort, TLSPort int
	// DomainBlocklist lists names pebble's policy refuses.
	DomainBlocklist []string
}

// Env is a running pebble with its DNS server.
type Env struct {
	// Directory is pebble's ACME directory URL (https).
	Directory string
	// RootFile is the PEM file of the CA that signed pebble's own HTTPS
	// certificate: an ACME client's ca_root_file.
	RootFile string
	// Roots holds pebble's issuing root; Intermediates its intermediate.
	// Issued chains verify against them.
	Roots, Intermediates *x509.CertPool
	// HTTPPort and TLSPort are the ports pebble validates HTTP-01 and
	// TLS-ALPN-01 on.
	HTTPPort, TLSPort int

	dir    string
	cmd    *exec.Cmd
	out    *LogBuffer
	dnsSrv *dns.Server
	wg     sync.WaitGroup
}

// LogBuffer is an io.Writer safe for concurrent use, for capturing logs
// that a test reads while the writer is still running.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Output returns what pebble has written so far (stdout and stderr).
func (e *Env) Output() string { return e.out.String() }

// Start builds and starts pebble as o says and waits until it answers
// (at most 20 s). The caller must Close the Env.
func Start(o Options) (_ *Env, err error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	// `go tool -n pebble` builds pebble (cached in the build cache) and
	// prints the binary's path.
	out, err := exec.Command(goBin, "tool", "-n", "pebble").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("building pebble with `go tool -n pebble`: %w", err)
	}
	pebbleBin := strings.TrimSpace(string(out))

	dir, err := os.MkdirTemp("", "edge-pebble-")
	if err != nil {
		return nil, fmt.Errorf("pebble directory: %w", err)
	}
	e := &Env{dir: dir, out: &LogBuffer{}, HTTPPort: o.HTTPPort, TLSPort: o.TLSPort}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	for _, p := range []*int{&e.HTTPPort, &e.TLSPort} {
		if *p == 0 {
			if *p, err = FreePort(); err != nil {
				return nil, err
			}
		}
	}

	// DNS: every A query answers 127.0.0.1.
	dnsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("DNS listener: %w", err)
	}
	e.dnsSrv = &dns.Server{Listener: dnsLn, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		r := new(dns.Msg)
		r.SetReply(q)
		for _, qq := range q.Question {
			if qq.Qtype == dns.TypeA {
				r.Answer = append(r.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		w.WriteMsg(r)
	})}
	e.wg.Go(func() { e.dnsSrv.ActivateAndServe() })

	// pebble's own HTTPS certificate, from a CA the clients trust through
	// RootFile.
	caPool, err := e.writeAPICert()
	if err != nil {
		return nil, err
	}

	acmePort, err := FreePort()
	if err != nil {
		return nil, err
	}
	mgmtPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	pcfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", acmePort),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"certificate":             filepath.Join(dir, "api.crt"),
		"privateKey":              filepath.Join(dir, "api.key"),
		"httpPort":                e.HTTPPort,
		"tlsPort":                 e.TLSPort,
		"keyAlgorithm":            "ecdsa",
		"domainBlocklist":         o.DomainBlocklist,
	}}
	data, err := json.Marshal(pcfg)
	if err != nil {
		return nil, fmt.Errorf("pebble config: %w", err)
	}
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, data, 0o600); err != nil {
		return nil, fmt.Errorf("pebble config: %w", err)
	}
	e.cmd = exec.Command(pebbleBin, "-config", cfgFile, "-dnsserver", dnsLn.Addr().String())
	e.cmd.Env = append(os.Environ(),
		"PEBBLE_VA_NOSLEEP=1",      // validate at once
		"PEBBLE_VA_ALWAYS_VALID=0", // really validate the challenges
		"PEBBLE_WFE_NONCEREJECT=0", // no random badNonce
		"PEBBLE_AUTHZREUSE=0",      // every order validates
	)
	e.cmd.Stdout, e.cmd.Stderr = e.out, e.out
	dieWithParent(e.cmd) // no stray pebble if the test binary is killed
	if err := e.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting pebble: %w", err)
	}
	e.Directory = fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort)

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool}}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := client.Get(e.Directory)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("pebble did not answer at %s: %v\n%s", e.Directory, err, e.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The issuing root and intermediate are generated at each start.
	e.Roots, e.Intermediates = x509.NewCertPool(), x509.NewCertPool()
	for _, f := range []struct {
		path string
		pool *x509.CertPool
	}{{"/roots/0", e.Roots}, {"/intermediates/0", e.Intermediates}} {
		c, err := fetchCert(client, fmt.Sprintf("https://127.0.0.1:%d%s", mgmtPort, f.path))
		if err != nil {
			return nil, err
		}
		f.pool.AddCert(c)
	}
	return e, nil
}

// fetchCert GETs one PEM certificate from pebble's management interface.
func fetchCert(client *http.Client, url string) (*x509.Certificate, error) {
	res, err := client.Get(url)
	if err != nil {
		return nil, fmt.Errorf("fetching pebble %s: %w", url, err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("fetching pebble %s: %w", url, err)
	}
	b, _ := pem.Decode(body)
	if b == nil {
		return nil, fmt.Errorf("pebble %s: not PEM: %q", url, body)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pebble %s: %w", url, err)
	}
	return c, nil
}

// writeAPICert writes RootFile (ca.crt) and pebble's HTTPS certificate
// (api.crt, api.key, for localhost and 127.0.0.1) into e.dir, and returns
// a pool holding the CA.
func (e *Env) writeAPICert() (*x509.CertPool, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pebble API CA key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pebble-api-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("pebble API CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("pebble API CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pebble API key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "pebble"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("pebble API certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pebble API key: %w", err)
	}
	e.RootFile = filepath.Join(e.dir, "ca.crt")
	for _, f := range []struct {
		name, typ string
		der       []byte
	}{{"ca.crt", "CERTIFICATE", caDER}, {"api.crt", "CERTIFICATE", der}, {"api.key", "EC PRIVATE KEY", kder}} {
		if err := os.WriteFile(filepath.Join(e.dir, f.name), pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			return nil, fmt.Errorf("pebble API certificate: %w", err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, nil
}

// FreePort returns a loopback TCP port nothing listened on a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Close kills pebble, stops the DNS server and removes pebble's files.
// It is safe on a partly started Env.
func (e *Env) Close() {
	if e.cmd != nil && e.cmd.Process != nil {
		e.cmd.Process.Kill()
		e.cmd.Wait()
	}
	if e.dnsSrv != nil {
		e.dnsSrv.Shutdown()
	}
	e.wg.Wait()
	os.RemoveAll(e.dir)
}
