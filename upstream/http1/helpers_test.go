package http1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/edge/message"
)

// rawServer is a loopback TCP server whose handler speaks raw bytes.
type rawServer struct {
	ln       net.Listener
	accepted atomic.Int32
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

// newRawServer starts a server running handle for each connection; every
// connection has a 10 s deadline and is closed when handle returns or the
// test ends.
func newRawServer(t testing.TB, handle func(c net.Conn, br *bufio.Reader)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveRaw(t, ln, handle)
}

func serveRaw(t testing.TB, ln net.Listener, handle func(c net.Conn, br *bufio.Reader)) *rawServer {
	s := &rawServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				handle(c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) addr() string { return s.ln.Addr().String() }

// readRequest reads one request with net/http's parser, body included.
func readRequest(br *bufio.Reader) (*http.Request, []byte, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(req.Body)
	return req, body, err
}

// serveFixed answers every request on the connection with resp.
func serveFixed(resp string) func(net.Conn, *bufio.Reader) {
	return func(c net.Conn, br *bufio.Reader) {
		for {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
		}
	}
}

func newTestPool(t testing.TB, o Options) *Pool {
	t.Helper()
	if o.MaxIdle == 0 {
		o.MaxIdle = 16
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	p := NewPool(o)
	t.Cleanup(p.Close)
	return p
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newReq(method, path string, fields ...string) *message.Request {
	req := &message.Request{Method: method, Path: path, Authority: "upstream.test"}
	for i := 0; i+1 < len(fields); i += 2 {
		req.Header.Add(fields[i], fields[i+1])
	}
	return req
}

// do runs a round trip and reads the whole body.
func do(t testing.TB, p *Pool, ctx context.Context, req *message.Request) (*message.Response, string, error) {
	t.Helper()
	resp, err := p.RoundTrip(ctx, req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

func mustDo(t testing.TB, p *Pool, ctx context.Context, req *message.Request) (*message.Response, string) {
	t.Helper()
	resp, body, err := do(t, p, ctx, req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.Path, err)
	}
	return resp, body
}

// kindOf returns err's Kind and Sent, or fails the test if err is not an
// *Error.
func kindOf(t testing.TB, err error) (Kind, bool) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	return e.Kind, e.Sent
}

// fieldsString renders a header as "name: value" lines, for comparisons.
func fieldsString(h *message.Header) string {
	var b strings.Builder
	for _, f := range h.Fields() {
		b.WriteString(f.Name + ": " + f.Value + "\n")
	}
	return b.String()
}

// waitFor polls cond for up to 5 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// hookCounts counts the pool's connection hooks.
type hookCounts struct{ open, close, connectFail atomic.Int32 }

func (h *hookCounts) set(o *Options) {
	o.OnConnOpen = func() { h.open.Add(1) }
	o.OnConnClose = func() { h.close.Add(1) }
	o.OnConnectFail = func() { h.connectFail.Add(1) }
}
