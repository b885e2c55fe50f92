package http2

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/edge/message"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

// server is a real loopback HTTP/2 server with a count of the TCP
// connections it accepted.
type server struct {
	addr  string
	srv   *http.Server
	conns atomic.Int32
	tls   *tls.Config // client config trusting the server, for TLS servers
	stls  *tls.Config // the server's own config, for TLS servers
}

func (s *server) connState(_ net.Conn, st http.ConnState) {
	if st == http.StateNew {
		s.conns.Add(1)
	}
}

// newH2C starts a cleartext HTTP/2 (prior knowledge) server on addr
// ("127.0.0.1:0" for any port).
func newH2C(t testing.TB, addr string, h http.Handler) *server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &server{addr: ln.Addr().String()}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	s.srv = &http.Server{
		Handler:           h,
		Protocols:         &protos,
		ConnState:         s.connState,
		ReadHeaderTimeout: testTimeout,
	}
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// newTLS starts an HTTP/2 over TLS server; with h2 false it offers only
// HTTP/1.1 by ALPN.
func newTLS(t testing.TB, h http.Handler, h2 bool) *server {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	s := &server{}
	ts.EnableHTTP2 = h2
	ts.Config.ConnState = s.connState
	ts.StartTLS()
	t.Cleanup(ts.Close)
	s.addr = ts.Listener.Addr().String()
	s.srv = ts.Config
	s.stls = ts.TLS
	s.tls = ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	return s
}

// get builds a bodyless GET request.
func get(authority, path string) *message.Request {
	return &message.Request{Method: "GET", Scheme: "http", Authority: authority, Path: path, ProtoMajor: 2}
}

// do runs one request and reads the whole body.
func do(t testing.TB, p *Pool, req *message.Request) (*message.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	resp, err := p.RoundTrip(ctx, req)
	if err != nil {
		t.Fatalf("RoundTrip(%s %s): %v", req.Method, req.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body of %s: %v", req.Path, err)
	}
	return resp, string(b)
}

// kindOfErr returns err's *Error, failing the test if it is not one.
func asError(t testing.TB, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	return e
}

// counter counts callback calls.
type counter struct{ n atomic.Int32 }

func (c *counter) inc()       { c.n.Add(1) }
func (c *counter) get() int32 { return c.n.Load() }

// waitFor polls cond until it holds or the test timeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// freezeProxy forwards TCP to a target until frozen; then it stops reading
// and writing on every connection it carries, keeping them open, like a
// peer that silently vanished.
type freezeProxy struct {
	ln     net.Listener
	target string
	frozen chan struct{}
	once   sync.Once
	mu     sync.Mutex
	conns  []net.Conn
}

func newFreezeProxy(t testing.TB, target string) *freezeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	fp := &freezeProxy{ln: ln, target: target, frozen: make(chan struct{})}
	go fp.serve()
	t.Cleanup(fp.close)
	return fp
}

func (fp *freezeProxy) addr() string { return fp.ln.Addr().String() }

func (fp *freezeProxy) freeze() { fp.once.Do(func() { close(fp.frozen) }) }

func (fp *freezeProxy) serve() {
	for {
		c, err := fp.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.DialTimeout("tcp", fp.target, testTimeout)
		if err != nil {
			c.Close()
			continue
		}
		fp.mu.Lock()
		fp.conns = append(fp.conns, c, u)
		fp.mu.Unlock()
		go fp.pipe(c, u)
		go fp.pipe(u, c)
	}
}

func (fp *freezeProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-fp.frozen:
			return // drop the data, keep the sockets open
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (fp *freezeProxy) close() {
	fp.ln.Close()
	fp.mu.Lock()
	defer fp.mu.Unlock()
	for _, c := range fp.conns {
		c.Close()
	}
}

// headerOf returns the comma-joined values of name in h.
func headerOf(h *message.Header, name string) string {
	var vs []string
	for _, f := range h.Fields() {
		if f.Name == name {
			vs = append(vs, f.Value)
		}
	}
	return strings.Join(vs, ",")
}
