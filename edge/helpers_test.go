package edge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/edge/stats"
)

// startEdge serves yaml (after replacing each key of vars with its value)
// until the test ends, and returns the running server.
func startEdge(t testing.TB, yaml string, vars ...string) *Server {
	t.Helper()
	s, _ := runEdge(t, yaml, Options{}, vars...)
	return s
}

// runEdge serves yaml (after replacing each key of vars with its value)
// with the options o (o.Config is filled in here), and returns the server
// and the channel Run's result arrives on. If Run is still going when the
// test ends, the test stops it.
func runEdge(t testing.TB, yaml string, o Options, vars ...string) (*Server, <-chan error) {
	t.Helper()
	src := strings.NewReplacer(vars...).Replace(yaml)
	cfg, err := config.Parse([]byte(src), "test.yaml", t.TempDir())
	if err != nil {
		t.Fatalf("config: %v\n%s", err, src)
	}
	o.Config = cfg
	if o.DrainTime == 0 {
		o.DrainTime, o.ShutdownTime = 2*time.Second, 2*time.Second
	}
	s, err := New(o)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	result := make(chan error, 1)
	go func() {
		err := s.Run(ctx)
		done <- err
		result <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("server did not shut down")
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready")
	}
	return s, result
}

// url returns http://addr of a listener plus path.
func (s *Server) url(name, path string) string {
	return "http://" + s.Addr(name).String() + path
}

// echo is what the echo upstream reports about a request.
type echo struct {
	Method     string
	Path       string
	Host       string
	Proto      int
	Header     http.Header
	Body       string
	Chunked    bool
	Length     int64
	RemoteAddr string
}

// echoHandler answers every request with a JSON description of it.
func echoHandler(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	e := echo{
		Method: r.Method, Path: r.RequestURI, Host: r.Host, Proto: r.ProtoMajor,
		Header: r.Header, Body: string(body), Length: r.ContentLength,
		Chunked:    len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked",
		RemoteAddr: r.RemoteAddr,
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Upstream", "echo")
	json.NewEncoder(w).Encode(e)
}

// countingServer is an upstream that counts the TCP connections it accepted.
type countingServer struct {
	*httptest.Server
	conns atomic.Int64
}

func newUpstream(t *testing.T, h http.Handler) *countingServer {
	t.Helper()
	cs := &countingServer{}
	cs.Server = httptest.NewUnstartedServer(h)
	cs.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			cs.conns.Add(1)
		}
	}
	cs.Start()
	t.Cleanup(cs.Close)
	return cs
}

// hostPort returns the upstream's 127.0.0.1:port.
func (c *countingServer) hostPort() string { return c.Listener.Addr().String() }

func getEcho(t *testing.T, resp *http.Response) echo {
	t.Helper()
	defer resp.Body.Close()
	var e echo
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &e); err != nil {
		t.Fatalf("status %d, body %q: not an echo: %v", resp.StatusCode, data, err)
	}
	return e
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// testCA is a throwaway certificate authority for TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	dir  string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "edge test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	ca := &testCA{cert: cert, key: key, pool: pool, dir: t.TempDir()}
	writePEM(t, filepath.Join(ca.dir, "ca.crt"), "CERTIFICATE", der)
	return ca
}

// issue writes a leaf certificate for names and returns cert and key paths.
func (ca *testCA) issue(t *testing.T, file string, names ...string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile = filepath.Join(ca.dir, file+".crt")
	keyFile = filepath.Join(ca.dir, file+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func (ca *testCA) file() string { return filepath.Join(ca.dir, "ca.crt") }

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsClient returns an HTTP client trusting ca, speaking HTTP/2 if h2.
func (ca *testCA) client(h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func statsLabel(name, value string) stats.Label { return stats.Label{Name: name, Value: value} }

var client = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}
