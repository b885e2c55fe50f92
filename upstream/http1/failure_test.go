package http1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const okResp = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

// wrappedConn hides syscall.Conn but exposes the connection it wraps, as
// tls.Conn does: the pool unwraps it to peek at the socket.
type wrappedConn struct{ net.Conn }

func (c wrappedConn) NetConn() net.Conn { return c.Conn }

// opaqueConn hides the socket entirely: the pool cannot check liveness.
type opaqueConn struct{ net.Conn }

// deadConnServer answers the first request on each connection, then (with
// bye, if not empty, first) half-closes it, as a server timing out an idle
// keep-alive connection does, and counts any byte it still receives: a
// client that writes to such a connection has failed to see it was dead.
func deadConnServer(bye string, wroteToDead *atomic.Int32, closed chan<- struct{}) func(net.Conn, *bufio.Reader) {
	return func(c net.Conn, br *bufio.Reader) {
		if _, _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, okResp+bye)
		type closeWriter interface{ CloseWrite() error }
		c.(closeWriter).CloseWrite()
		closed <- struct{}{}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, _ := br.Read(make([]byte, 1)); n > 0 {
			wroteToDead.Add(1)
		}
	}
}

func TestDeadIdleConnDetected(t *testing.T) {
	const bye = "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n"
	tests := []struct {
		name   string
		tls    bool
		wrap   func(net.Conn) net.Conn
		unsent string
		// wantWrites is 0 where the pool can see the socket; through an
		// opaque connection it cannot, and the retry-once rule saves the
		// request.
		wantWrites int32
	}{
		{name: "server closed"},
		{name: "server closed, wrapped conn", wrap: func(c net.Conn) net.Conn { return wrappedConn{c} }},
		{name: "server closed, TLS", tls: true},
		{name: "server closed, TLS over wrapped conn", tls: true, wrap: func(c net.Conn) net.Conn { return wrappedConn{c} }},
		{name: "unsolicited 408", unsent: bye},
		{name: "unsolicited 408, TLS", tls: true, unsent: bye},
		{name: "server closed, opaque conn", wrap: func(c net.Conn) net.Conn { return opaqueConn{c} }, wantWrites: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var wroteToDead atomic.Int32
			closed := make(chan struct{}, 2)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			o := Options{Addr: ln.Addr().String()}
			handle := deadConnServer(tt.unsent, &wroteToDead, closed)
			if tt.tls {
				srv := httptest.NewUnstartedServer(nil)
				srv.StartTLS() // only for its certificate and client config
				cert := srv.TLS.Certificates[0]
				o.TLS = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
				srv.Close()
				inner := handle
				handle = func(c net.Conn, _ *bufio.Reader) {
					tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
					inner(tlsCloseWriter{tc}, bufio.NewReader(tc))
				}
			}
			if tt.wrap != nil {
				o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
					c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
					if err != nil {
						return nil, err
					}
					return tt.wrap(c), nil
				}
			}
			s := serveRaw(t, ln, handle)
			p := newTestPool(t, o)
			ctx := testCtx(t)
			mustDo(t, p, ctx, newReq("GET", "/1"))
			<-closed
			time.Sleep(20 * time.Millisecond) // let the FIN (and bytes) arrive
			resp, body := mustDo(t, p, ctx, newReq("GET", "/2"))
			if resp.Status != 200 || body != "ok" {
				t.Errorf("second request: got %d %q, want 200 ok", resp.Status, body)
			}
			<-closed
			if got := s.accepted.Load(); got != 2 {
				t.Errorf("connections: got %d, want 2", got)
			}
			p.CloseIdle()
			s.ln.Close()
			waitFor(t, "server handlers", func() bool { s.wg.Wait(); return true })
			if got := wroteToDead.Load(); got != tt.wantWrites {
				t.Errorf("requests written to a connection the server had closed: got %d, want %d", got, tt.wantWrites)
			}
		})
	}
}

// tlsCloseWriter gives a server-side tls.Conn the CloseWrite the dead-conn
// server uses: close_notify plus a TCP FIN.
type tlsCloseWriter struct{ *tls.Conn }

func (c tlsCloseWriter) CloseWrite() error {
	c.Conn.CloseWrite()
	return c.Conn.NetConn().(*net.TCPConn).CloseWrite()
}

// keepAliveRace serves one request per connection, then reads the next
// request and closes without answering: the race the liveness check cannot
// see, because the server closes only once the request has arrived.
func keepAliveRace(c net.Conn, br *bufio.Reader) {
	if _, _, err := readRequest(br); err != nil {
		return
	}
	io.WriteString(c, okResp)
	readRequest(br)
}

func TestRetryOnceOnStaleConn(t *testing.T) {
	s := newRawServer(t, keepAliveRace)
	p := newTestPool(t, Options{Addr: s.addr()})
	ctx := testCtx(t)
	mustDo(t, p, ctx, newReq("GET", "/1"))
	// Reused connection, nothing of a body consumed: retried on a new one.
	resp, body := mustDo(t, p, ctx, newReq("DELETE", "/2"))
	if resp.Status != 200 || body != "ok" {
		t.Errorf("retried request: got %d %q", resp.Status, body)
	}
	if got := s.accepted.Load(); got != 2 {
		t.Errorf("connections: got %d, want 2", got)
	}

	// A body was consumed: no retry, a Reset with Sent.
	req := newReq("POST", "/3")
	req.Body, req.ContentLength = strings.NewReader("data"), 4
	_, _, err := do(t, p, ctx, req)
	if k, sent := kindOf(t, err); k != Reset || !sent {
		t.Errorf("request with body: got %v sent=%v (%v), want reset, sent", k, sent, err)
	}
	if got := s.accepted.Load(); got != 2 {
		t.Errorf("connections after the body request: got %d, want 2 (no retry)", got)
	}
}

// On a new connection, closing after the request is a Reset with Sent:
// never retried by the pool.
func TestResetAfterRequest(t *testing.T) {
	for _, rst := range []bool{false, true} {
		name := map[bool]string{false: "FIN", true: "RST"}[rst]
		t.Run(name, func(t *testing.T) {
			s := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
				readRequest(br)
				if rst {
					c.(*net.TCPConn).SetLinger(0)
				}
			})
			p := newTestPool(t, Options{Addr: s.addr()})
			_, err := p.RoundTrip(testCtx(t), newReq("GET", "/"))
			if k, sent := kindOf(t, err); k != Reset || !sent {
				t.Errorf("got %v sent=%v (%v), want reset, sent", k, sent, err)
			}
			if got := s.accepted.Load(); got != 1 {
				t.Errorf("connections: got %d, want 1 (no retry on a new connection)", got)
			}
		})
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestConnectFailure(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		var hooks hookCounts
		o := Options{Addr: closedAddr(t)}
		hooks.set(&o)
		p := newTestPool(t, o)
		_, err := p.RoundTrip(testCtx(t), newReq("GET", "/"))
		if k, sent := kindOf(t, err); k != ConnectFailure || sent {
			t.Errorf("got %v sent=%v (%v), want connect failure, not sent", k, sent, err)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("got %v, want it to wrap ECONNREFUSED", err)
		}
		if got := hooks.connectFail.Load(); got != 1 {
			t.Errorf("OnConnectFail calls: got %d, want 1", got)
		}
		if got := hooks.open.Load(); got != 0 {
			t.Errorf("OnConnOpen calls: got %d, want 0", got)
		}
	})
	// A dial that never completes: the connect timeout is a ConnectFailure,
	// the round trip's own deadline a Timeout, its cancellation Canceled.
	hang := func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	t.Run("connect timeout", func(t *testing.T) {
		var hooks hookCounts
		o := Options{Addr: "192.0.2.1:80", Dial: hang, ConnectTimeout: 20 * time.Millisecond}
		hooks.set(&o)
		p := newTestPool(t, o)
		_, err := p.RoundTrip(testCtx(t), newReq("GET", "/"))
		if k, sent := kindOf(t, err); k != ConnectFailure || sent {
			t.Errorf("got %v sent=%v (%v), want connect failure", k, sent, err)
		}
		if got := hooks.connectFail.Load(); got != 1 {
			t.Errorf("OnConnectFail calls: got %d, want 1", got)
		}
	})
	t.Run("request deadline during dial", func(t *testing.T) {
		var hooks hookCounts
		o := Options{Addr: "192.0.2.1:80", Dial: hang}
		hooks.set(&o)
		p := newTestPool(t, o)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		_, err := p.RoundTrip(ctx, newReq("GET", "/"))
		if k, _ := kindOf(t, err); k != Timeout || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v (%v), want timeout wrapping DeadlineExceeded", k, err)
		}
		if got := hooks.connectFail.Load(); got != 0 {
			t.Errorf("OnConnectFail calls: got %d, want 0 (not the upstream's fault)", got)
		}
	})
	t.Run("canceled during dial", func(t *testing.T) {
		p := newTestPool(t, Options{Addr: "192.0.2.1:80", Dial: hang})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(20*time.Millisecond, cancel)
		_, err := p.RoundTrip(ctx, newReq("GET", "/"))
		if k, _ := kindOf(t, err); k != Canceled || !errors.Is(err, context.Canceled) {
			t.Errorf("got %v (%v), want canceled", k, err)
		}
	})
	t.Run("context already done", func(t *testing.T) {
		p := newTestPool(t, Options{Addr: closedAddr(t)})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := p.RoundTrip(ctx, newReq("GET", "/"))
		if k, sent := kindOf(t, err); k != Canceled || sent {
			t.Errorf("got %v sent=%v, want canceled, not sent", k, sent)
		}
	})
}

// stallServer answers "GET /" at once; for "/slow-head" it sends nothing,
// for "/slow-body" a head and half the body, then waits until the client
// closes; then it serves the next request.
func stallServer(c net.Conn, br *bufio.Reader) {
	for {
		req, _, err := readRequest(br)
		if err != nil {
			return
		}
		switch req.URL.Path {
		case "/slow-head":
		case "/slow-body":
			io.WriteString(c, "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")
		default:
			io.WriteString(c, okResp)
			continue
		}
		br.Read(make([]byte, 1)) // until the client closes
		return
	}
}

func TestTimeoutAndCancel(t *testing.T) {
	tests := []struct {
		name     string
		path     string
		deadline bool // else canceled without a deadline
		want     Kind
	}{
		{"deadline waiting for head", "/slow-head", true, Timeout},
		{"deadline reading body", "/slow-body", true, Timeout},
		{"cancel waiting for head", "/slow-head", false, Canceled},
		{"cancel reading body", "/slow-body", false, Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, stallServer)
			p := newTestPool(t, Options{Addr: s.addr()})
			mustDo(t, p, testCtx(t), newReq("GET", "/")) // one pooled connection
			var ctx context.Context
			var cancel context.CancelFunc
			if tt.deadline {
				ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
			} else {
				ctx, cancel = context.WithCancel(context.Background())
				time.AfterFunc(50*time.Millisecond, cancel)
			}
			defer cancel()
			start := time.Now()
			_, _, err := do(t, p, ctx, newReq("GET", tt.path))
			if k, sent := kindOf(t, err); k != tt.want || !sent {
				t.Errorf("got %v sent=%v (%v), want %v, sent", k, sent, err, tt.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v, want about 50ms", d)
			}
			if a, i := p.Stats(); a != 0 || i != 0 {
				t.Errorf("Stats: got %d %d, want 0 0 (timed-out connection not reused)", a, i)
			}
			mustDo(t, p, testCtx(t), newReq("GET", "/"))
			if got := s.accepted.Load(); got != 2 {
				t.Errorf("connections: got %d, want 2", got)
			}
		})
	}
}

// A finished round trip leaves no deadline and no cancellation hook on its
// pooled connection.
func TestContextReleasedFromPooledConn(t *testing.T) {
	s := newRawServer(t, serveFixed(okResp))
	p := newTestPool(t, Options{Addr: s.addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	mustDo(t, p, ctx, newReq("GET", "/1"))
	cancel()                          // would fire the cancellation hook
	time.Sleep(50 * time.Millisecond) // and is past the old deadline
	// Without a deadline or cancellation of its own, a request would fail
	// on either leftover.
	mustDo(t, p, context.Background(), newReq("GET", "/2"))
	mustDo(t, p, testCtx(t), newReq("GET", "/3"))
	if got := s.accepted.Load(); got != 1 {
		t.Errorf("connections: got %d, want 1", got)
	}
}

func TestBodyClosedEarly(t *testing.T) {
	big := strings.Repeat("b", 1<<20)
	tests := []struct {
		name      string
		resp      string
		read      int
		wantConns int32
	}{
		{"large body unread: connection closed", "HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n" + big, 10, 2},
		{"chunked body unread: connection closed", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n100000\r\n" + big + "\r\n0\r\n\r\n", 10, 2},
		{"rest already buffered: connection reused", "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + big[:100], 10, 1},
		{"nothing read, rest buffered: connection reused", "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + big[:100], 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hooks hookCounts
			s := newRawServer(t, serveFixed(tt.resp))
			o := Options{Addr: s.addr()}
			hooks.set(&o)
			p := newTestPool(t, o)
			ctx := testCtx(t)
			resp, err := p.RoundTrip(ctx, newReq("GET", "/"))
			if err != nil {
				t.Fatal(err)
			}
			if tt.read > 0 {
				if _, err := io.ReadFull(resp.Body, make([]byte, tt.read)); err != nil {
					t.Fatal(err)
				}
			}
			resp.Body.Close()
			resp, err = p.RoundTrip(ctx, newReq("GET", "/"))
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || len(b) != int(resp.ContentLength) && resp.ContentLength >= 0 {
				t.Fatalf("second response: %d bytes, %v", len(b), err)
			}
			if got := s.accepted.Load(); got != tt.wantConns {
				t.Errorf("connections: got %d, want %d", got, tt.wantConns)
			}
			if got := hooks.close.Load(); got != tt.wantConns-1 {
				t.Errorf("closed connections: got %d, want %d", got, tt.wantConns-1)
			}
		})
	}
}

// Connection: close and HTTP/1.0 without keep-alive end the connection;
// HTTP/1.0 with keep-alive keeps it.
func TestConnectionClose(t *testing.T) {
	tests := []struct {
		name      string
		resp      string
		wantConns int32
	}{
		{"HTTP/1.1 keep-alive by default", "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", 1},
		{"connection: close", "HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 2\r\n\r\nok", 3},
		{"connection list with close", "HTTP/1.1 200 OK\r\nconnection: foo, close\r\ncontent-length: 2\r\n\r\nok", 3},
		{"HTTP/1.0 without keep-alive", "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", 3},
		{"HTTP/1.0 with keep-alive", "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, serveFixed(tt.resp))
			p := newTestPool(t, Options{Addr: s.addr()})
			for range 3 {
				if _, body := mustDo(t, p, testCtx(t), newReq("GET", "/")); body != "ok" {
					t.Fatalf("body: got %q", body)
				}
			}
			if got := s.accepted.Load(); got != tt.wantConns {
				t.Errorf("connections for 3 requests: got %d, want %d", got, tt.wantConns)
			}
		})
	}
}

func TestIdleLimits(t *testing.T) {
	t.Run("MaxIdle", func(t *testing.T) {
		release := make(chan struct{})
		s := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
			for {
				if _, _, err := readRequest(br); err != nil {
					return
				}
				<-release
				io.WriteString(c, okResp)
			}
		})
		p := newTestPool(t, Options{Addr: s.addr(), MaxIdle: 2})
		done := make(chan error)
		for range 5 {
			go func() {
				_, _, err := do(t, p, testCtx(t), newReq("GET", "/"))
				done <- err
			}()
		}
		waitFor(t, "5 connections", func() bool { return s.accepted.Load() == 5 })
		close(release)
		for range 5 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		if a, i := p.Stats(); a != 0 || i != 2 {
			t.Errorf("Stats: got %d %d, want 0 2", a, i)
		}
	})
	t.Run("MaxIdle zero keeps none", func(t *testing.T) {
		s := newRawServer(t, serveFixed(okResp))
		p := NewPool(Options{Addr: s.addr()})
		defer p.Close()
		mustDo(t, p, testCtx(t), newReq("GET", "/"))
		mustDo(t, p, testCtx(t), newReq("GET", "/"))
		if got := s.accepted.Load(); got != 2 {
			t.Errorf("connections: got %d, want 2", got)
		}
	})
	t.Run("IdleTimeout at reuse", func(t *testing.T) {
		s := newRawServer(t, serveFixed(okResp))
		p := newTestPool(t, Options{Addr: s.addr(), IdleTimeout: time.Hour})
		mustDo(t, p, testCtx(t), newReq("GET", "/"))
		p.idleTimeout = time.Millisecond // expire what is idle, without waiting for the sweep
		time.Sleep(5 * time.Millisecond)
		mustDo(t, p, testCtx(t), newReq("GET", "/"))
		if got := s.accepted.Load(); got != 2 {
			t.Errorf("connections: got %d, want 2 (expired one not reused)", got)
		}
	})
	t.Run("IdleTimeout sweep", func(t *testing.T) {
		var hooks hookCounts
		s := newRawServer(t, serveFixed(okResp))
		o := Options{Addr: s.addr(), IdleTimeout: 30 * time.Millisecond}
		hooks.set(&o)
		p := newTestPool(t, o)
		mustDo(t, p, testCtx(t), newReq("GET", "/"))
		if _, i := p.Stats(); i != 1 {
			t.Fatalf("idle: got %d, want 1", i)
		}
		waitFor(t, "the sweep to close the idle connection", func() bool {
			_, i := p.Stats()
			return i == 0 && hooks.close.Load() == 1
		})
	})
}
