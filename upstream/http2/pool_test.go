package http2

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/edgeproxy/edge/edge/message"
)

// echo reports what the server received in response headers and echoes
// the request body.
func echo(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Method", r.Method)
	h.Set("X-Uri", r.RequestURI)
	h.Set("X-Host", r.Host)
	h.Set("X-Proto", r.Proto)
	h.Set("X-Tls", strconv.FormatBool(r.TLS != nil))
	h.Set("X-Ua", fmt.Sprintf("%q", r.Header.Values("User-Agent")))
	h.Set("X-Multi", strings.Join(r.Header.Values("X-Multi"), ","))
	h.Set("X-Keepalive", r.Header.Get("Keep-Alive"))
	h.Set("X-Te", r.Header.Get("Te"))
	h.Set("X-Accept-Encoding", r.Header.Get("Accept-Encoding"))
	h.Set("X-Content-Length", strconv.FormatInt(r.ContentLength, 10))
	h.Add("Set-Cookie", "a=1")
	h.Add("Set-Cookie", "b=2")
	b, _ := io.ReadAll(r.Body)
	w.Write(b)
}

func TestRoundTripConversion(t *testing.T) {
	h2c := newH2C(t, "127.0.0.1:0", http.HandlerFunc(echo))
	tlsSrv := newTLS(t, http.HandlerFunc(echo), true)
	pools := []struct {
		name    string
		p       *Pool
		wantTLS string
	}{
		{"h2c", NewPool(Options{Addr: h2c.addr}), "false"},
		{"tls", NewPool(Options{Addr: tlsSrv.addr, TLS: tlsSrv.tls}), "true"},
	}
	withHeaders := func(r *message.Request, kv ...string) *message.Request {
		for i := 0; i < len(kv); i += 2 {
			r.Header.Add(kv[i], kv[i+1])
		}
		return r
	}
	post := func(path, body string, cl int64) *message.Request {
		r := get("example.com", path)
		r.Method = "POST"
		r.Body = strings.NewReader(body)
		r.ContentLength = cl
		return r
	}
	tests := []struct {
		name     string
		req      func() *message.Request
		want     map[string]string // response header -> value
		wantBody string
	}{
		{"get with query", func() *message.Request { return get("example.com", "/a/b?x=1&y=%20") },
			map[string]string{"x-method": "GET", "x-uri": "/a/b?x=1&y=%20", "x-host": "example.com", "x-proto": "HTTP/2.0", "x-content-length": "0"}, ""},
		{"double slash path", func() *message.Request { return get("example.com:8443", "//x//y?q") },
			map[string]string{"x-uri": "//x//y?q", "x-host": "example.com:8443"}, ""},
		{"empty query kept", func() *message.Request { return get("h", "/p?") },
			map[string]string{"x-uri": "/p?"}, ""},
		{"empty path is /", func() *message.Request { return get("h", "") },
			map[string]string{"x-uri": "/"}, ""},
		{"no user-agent added, no accept-encoding added", func() *message.Request { return get("h", "/") },
			map[string]string{"x-ua": "[]", "x-accept-encoding": ""}, ""},
		{"user-agent and accept-encoding passed", func() *message.Request {
			return withHeaders(get("h", "/"), "user-agent", "curl/8", "accept-encoding", "gzip")
		}, map[string]string{"x-ua": `["curl/8"]`, "x-accept-encoding": "gzip"}, ""},
		{"repeated fields and hop-by-hop dropped", func() *message.Request {
			return withHeaders(get("h", "/"), "x-multi", "a", "keep-alive", "300", "x-multi", "b", "connection", "close", "te", "trailers")
		}, map[string]string{"x-multi": "a,b", "x-keepalive": "", "x-te": "trailers"}, ""},
		{"te other than trailers dropped", func() *message.Request {
			return withHeaders(get("h", "/"), "te", "gzip")
		}, map[string]string{"x-te": ""}, ""},
		{"body with length", func() *message.Request { return post("/up", "hello", 5) },
			map[string]string{"x-method": "POST", "x-content-length": "5"}, "hello"},
		{"body of unknown length", func() *message.Request { return post("/up", strings.Repeat("z", 100000), -1) },
			map[string]string{"x-content-length": "-1"}, strings.Repeat("z", 100000)},
	}
	for _, pc := range pools {
		defer pc.p.Close()
		for _, tt := range tests {
			t.Run(pc.name+"/"+tt.name, func(t *testing.T) {
				resp, body := do(t, pc.p, tt.req())
				if resp.Status != 200 {
					t.Fatalf("status = %d, want 200", resp.Status)
				}
				if got := resp.Header.Get("x-tls"); got != pc.wantTLS {
					t.Errorf("x-tls = %q, want %q", got, pc.wantTLS)
				}
				for k, v := range tt.want {
					if got := headerOf(&resp.Header, k); got != v {
						t.Errorf("response %s = %q, want %q", k, got, v)
					}
				}
				if got := headerOf(&resp.Header, "set-cookie"); got != "a=1,b=2" {
					t.Errorf("set-cookie = %q, want %q", got, "a=1,b=2")
				}
				for _, f := range resp.Header.Fields() {
					if f.Name != strings.ToLower(f.Name) {
						t.Errorf("response header name %q is not lower case", f.Name)
					}
				}
				if body != tt.wantBody {
					t.Errorf("body = %.40q (%d bytes), want %.40q (%d bytes)", body, len(body), tt.wantBody, len(tt.wantBody))
				}
			})
		}
	}
}

func TestResponseContentLength(t *testing.T) {
	s := newH2C(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fixed":
			w.Header().Set("Content-Length", "3")
			w.Write([]byte("abc"))
		case "/empty":
			w.WriteHeader(204)
		case "/stream":
			w.Write([]byte("a"))
			w.(http.Flusher).Flush()
			w.Write([]byte("b"))
		}
	}))
	p := NewPool(Options{Addr: s.addr})
	defer p.Close()
	tests := []struct {
		path       string
		wantStatus int
		wantCL     int64
		wantBody   string
	}{
		{"/fixed", 200, 3, "abc"},
		{"/empty", 204, 0, ""},
		{"/stream", 200, -1, "ab"},
	}
	for _, tt := range tests {
		resp, body := do(t, p, get("h", tt.path))
		if resp.Status != tt.wantStatus || resp.ContentLength != tt.wantCL || body != tt.wantBody {
			t.Errorf("GET %s = %d, cl %d, %q; want %d, cl %d, %q", tt.path, resp.Status, resp.ContentLength, body, tt.wantStatus, tt.wantCL, tt.wantBody)
		}
	}
	if _, active := p.Stats(); active != 0 {
		t.Errorf("active streams after all bodies closed = %d, want 0", active)
	}
}

// noALPNServer is a TLS server that ignores ALPN entirely: the handshake
// succeeds with no protocol chosen.
func noALPNServer(t *testing.T) (addr string, client *tls.Config) {
	s := newTLS(t, http.HandlerFunc(echo), true) // for its certificate
	cfg := s.stls.Clone()
	cfg.NextProtos = nil
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(testTimeout))
				c.(*tls.Conn).Handshake()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String(), s.tls
}

func TestTLSWithoutH2IsConnectFailure(t *testing.T) {
	h1 := newTLS(t, http.HandlerFunc(echo), false)
	noALPN, noALPNClient := noALPNServer(t)
	tests := []struct {
		name   string
		addr   string
		client *tls.Config
		want   string
	}{
		{"server offers only http/1.1", h1.addr, h1.tls, "does not offer h2"},
		{"server ignores ALPN", noALPN, noALPNClient, "did not negotiate h2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fails counter
			p := NewPool(Options{Addr: tt.addr, TLS: tt.client, OnConnectFail: fails.inc})
			defer p.Close()
			_, err := p.RoundTrip(context.Background(), get("h", "/"))
			e := asError(t, err)
			if e.Kind != ConnectFailure || e.Sent {
				t.Fatalf("error = %v (kind %v, sent %v), want kind %v, sent false", err, e.Kind, e.Sent, ConnectFailure)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if got := fails.get(); got != 1 {
				t.Errorf("OnConnectFail calls = %d, want 1", got)
			}
		})
	}
}

func TestConnectFailure(t *testing.T) {
	// A port that was just free: connecting is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var fails, opens counter
	p := NewPool(Options{Addr: addr, OnConnectFail: fails.inc, OnConnOpen: opens.inc, ConnectionsPerHost: 2})
	defer p.Close()
	for i := range 3 {
		_, err := p.RoundTrip(context.Background(), get("h", "/"))
		e := asError(t, err)
		if e.Kind != ConnectFailure || e.Sent {
			t.Fatalf("try %d: error = %v (kind %v, sent %v), want connect failure not sent", i, err, e.Kind, e.Sent)
		}
	}
	if fails.get() != 3 || opens.get() != 0 {
		t.Errorf("connect fails = %d, opens = %d; want 3, 0", fails.get(), opens.get())
	}
}

func TestWaitForConnectionHonoursContext(t *testing.T) {
	// A listener that never completes the HTTP/2 handshake is not enough
	// (the TCP connect succeeds at once); a Dial that blocks is.
	release := make(chan struct{})
	defer close(release)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, errors.New("no dial")
	}
	p := NewPool(Options{Addr: "192.0.2.1:80", Dial: dial, ConnectTimeout: time.Minute})
	defer p.Close()
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want Kind
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, Timeout},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			return ctx, cancel
		}, Canceled},
	}
	for _, tt := range tests {
		ctx, cancel := tt.ctx()
		_, err := p.RoundTrip(ctx, get("h", "/"))
		cancel()
		if e := asError(t, err); e.Kind != tt.want || e.Sent {
			t.Errorf("%s: error = %v (kind %v, sent %v), want kind %v, not sent", tt.name, err, e.Kind, e.Sent, tt.want)
		}
	}
}

func TestConnectionsPerHostSpread(t *testing.T) {
	const streams, perHost = 200, 4
	var (
		mu     sync.Mutex
		byConn = map[string]int{}
		all    = make(chan struct{})
		seen   int
	)
	s := newH2C(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		byConn[r.RemoteAddr]++
		seen++
		if seen == streams {
			close(all)
		}
		mu.Unlock()
		// Hold every stream open until all are in flight, so that the
		// pool really carries 200 concurrent streams.
		select {
		case <-all:
		case <-time.After(testTimeout):
		}
		w.Write([]byte("ok"))
	}))
	var opens counter
	p := NewPool(Options{Addr: s.addr, ConnectionsPerHost: perHost, OnConnOpen: opens.inc})
	defer p.Close()

	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for range streams {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			resp, err := p.RoundTrip(ctx, get("h", "/"))
			if err != nil {
				errs <- err
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("request failed: %v", err)
	}
	if got := s.conns.Load(); got != perHost {
		t.Errorf("server saw %d connections, want %d", got, perHost)
	}
	if got := opens.get(); got != perHost {
		t.Errorf("OnConnOpen calls = %d, want %d", got, perHost)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(byConn) != perHost {
		t.Fatalf("streams arrived on %d connections, want %d: %v", len(byConn), perHost, byConn)
	}
	t.Logf("streams per connection: %v", byConn)
	// Every stream is held open, so least-loaded picking (counting the
	// waiters of dials in progress) spreads them evenly: 50 each.
	for addr, n := range byConn {
		if n < streams/perHost-10 || n > streams/perHost+10 {
			t.Errorf("connection %s carried %d streams, want %d±10: %v", addr, n, streams/perHost, byConn)
		}
	}
	conns, active := p.Stats()
	if conns != perHost || active != 0 {
		t.Errorf("Stats() = %d conns, %d streams; want %d, 0", conns, active, perHost)
	}
}

func TestSequentialRequestsReuseOneConnection(t *testing.T) {
	s := newH2C(t, "127.0.0.1:0", http.HandlerFunc(echo))
	p := NewPool(Options{Addr: s.addr, ConnectionsPerHost: 4})
	defer p.Close()
	for range 20 {
		do(t, p, get("h", "/"))
	}
	if got := s.conns.Load(); got != 1 {
		t.Errorf("server saw %d connections for sequential requests, want 1 (a second opens only when all are busy)", got)
	}
}

func TestTrailers(t *testing.T) {
	s := newH2C(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("X-Got-Te", r.Header.Get("Te"))
		w.WriteHeader(200)
		w.Write(body)
		w.(http.Flusher).Flush()
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set("Grpc-Message", "all good")
		// Undeclared trailer (the way gRPC-Go sends some).
		w.Header().Set(http.TrailerPrefix+"X-Req-Trailer", r.Trailer.Get("X-Checksum"))
	}))
	tlsSrv := newTLS(t, s.srv.Handler, true)
	for i, p := range []*Pool{NewPool(Options{Addr: s.addr}), NewPool(Options{Addr: tlsSrv.addr, TLS: tlsSrv.tls})} {
		defer p.Close()
		req := get("h", "/pkg.Service/Method")
		req.Method = "POST"
		req.Header.Add("content-type", "application/grpc")
		req.Header.Add("te", "trailers")
		req.ContentLength = -1
		if i == 0 {
			// Trailer known before the request starts.
			req.Body = strings.NewReader("\x00\x00\x00\x00\x02hi")
			req.Trailer.Add("x-checksum", "c0ffee")
		} else {
			// Announced by a trailer field, value known only at EOF.
			req.Header.Add("trailer", "X-Checksum")
			req.Body = &trailerAtEOF{r: strings.NewReader("\x00\x00\x00\x00\x02hi"), req: req, name: "x-checksum", value: "c0ffee"}
		}
		resp, body := do(t, p, req)
		if body != "\x00\x00\x00\x00\x02hi" {
			t.Errorf("body = %q, want the gRPC frame echoed", body)
		}
		if got := resp.Header.Get("x-got-te"); got != "trailers" {
			t.Errorf("upstream saw te %q, want trailers", got)
		}
		want := map[string]string{"grpc-status": "0", "grpc-message": "all good", "x-req-trailer": "c0ffee"}
		for k, v := range want {
			if got := headerOf(&resp.Trailer, k); got != v {
				t.Errorf("trailer %s = %q, want %q (trailers: %v)", k, got, v, resp.Trailer.Fields())
			}
		}
		ann := resp.Header.Get("trailer")
		for _, k := range []string{"grpc-status", "grpc-message"} {
			if !strings.Contains(ann, k) {
				t.Errorf("trailer announcement %q lacks %s", ann, k)
			}
		}
	}
}

// trailerAtEOF is a request body that sets a request trailer when it
// reaches EOF, as a downstream codec does.
type trailerAtEOF struct {
	r           io.Reader
	req         *message.Request
	name, value string
}

func (b *trailerAtEOF) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.req.Trailer.Set(b.name, b.value)
	}
	return n, err
}

func TestTrailersOnlyResponse(t *testing.T) {
	// A gRPC error without a body: the status arrives in the only HEADERS
	// frame, with END_STREAM.
	s := newH2C(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", "5")
		w.Header().Set("Grpc-Message", "not found")
		w.WriteHeader(200)
	}))
	p := NewPool(Options{Addr: s.addr})
	defer p.Close()
	resp, body := do(t, p, get("h", "/pkg.Service/Missing"))
	if got := resp.Header.Get("grpc-status"); got != "5" || body != "" {
		t.Errorf("grpc-status = %q, body %q; want 5 and empty", got, body)
	}
}

func TestInformational(t *testing.T) {
	s := newH2C(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(103)
		w.Header().Del("Link")
		w.Write([]byte("done"))
	}))
	p := NewPool(Options{Addr: s.addr})
	defer p.Close()
	var got []string
	req := get("h", "/")
	req.OnInformational = func(status int, h *message.Header) {
		got = append(got, fmt.Sprintf("%d %s", status, h.Get("link")))
	}
	resp, body := do(t, p, req)
	if want := []string{"103 </style.css>; rel=preload"}; fmt.Sprint(got) != fmt.Sprint(want) || resp.Status != 200 || body != "done" {
		t.Errorf("informational = %q, final %d %q; want %q, 200 \"done\"", got, resp.Status, body, want)
	}
}

func TestGoAwayRecovery(t *testing.T) {
	hold := make(chan struct{})
	handler := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Server", name)
			if r.URL.Path == "/slow" {
				w.WriteHeader(200)
				w.(http.Flusher).Flush()
				select {
				case <-hold:
				case <-time.After(testTimeout):
				}
			}
			w.Write([]byte(name))
		})
	}
	s1 := newH2C(t, "127.0.0.1:0", handler("one"))
	var opens, closes counter
	p := NewPool(Options{Addr: s1.addr, OnConnOpen: opens.inc, OnConnClose: closes.inc})
	defer p.Close()
	if _, body := do(t, p, get("h", "/")); body != "one" {
		t.Fatalf("first request served by %q, want one", body)
	}

	// A slow stream in flight on the first connection...
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	slow, err := p.RoundTrip(ctx, get("h", "/slow"))
	if err != nil {
		t.Fatal(err)
	}
	// ...when the server shuts down gracefully: GOAWAY, then it waits for
	// the stream. A new server takes over the address.
	shutdownDone := make(chan error, 1)
	go func() { shutdownDone <- s1.srv.Shutdown(ctx) }()
	waitFor(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", s1.addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	s2 := newH2C(t, s1.addr, handler("two"))

	// New requests recover on a new connection to the new server.
	waitFor(t, "a request served by the new server", func() bool {
		resp, err := p.RoundTrip(ctx, get("h", "/"))
		if err != nil {
			t.Logf("request during GOAWAY: %v", err)
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b) == "two"
	})
	// The stream in flight on the old connection completes.
	close(hold)
	b, err := io.ReadAll(slow.Body)
	slow.Body.Close()
	if err != nil || string(b) != "one" {
		t.Fatalf("in-flight stream: body %q, err %v; want \"one\", nil", b, err)
	}
	if err := <-shutdownDone; err != nil {
		t.Fatalf("server shutdown: %v", err)
	}
	waitFor(t, "the old connection to close", func() bool { return closes.get() == 1 })
	if conns, _ := p.Stats(); conns != 1 || opens.get() != 2 || s2.conns.Load() != 1 {
		t.Errorf("after GOAWAY: %d conns in pool, %d opened, new server saw %d; want 1, 2, 1", conns, opens.get(), s2.conns.Load())
	}
}

func TestServerCloseRecovery(t *testing.T) {
	// The server vanishes abruptly (no GOAWAY); the pool notices the
	// closed socket and dials again.
	s1 := newH2C(t, "127.0.0.1:0", http.HandlerFunc(echo))
	var closes counter
	p := NewPool(Options{Addr: s1.addr, OnConnClose: closes.inc})
	defer p.Close()
	do(t, p, get("h", "/"))
	s1.srv.Close()
	waitFor(t, "the pool to see the close", func() bool { return closes.get() == 1 })
	if conns, _ := p.Stats(); conns != 0 {
		t.Errorf("Stats conns after server close = %d, want 0", conns)
	}
	newH2C(t, s1.addr, http.HandlerFunc(echo))
	do(t, p, get("h", "/"))
}

func TestKeepaliveClosesDeadConnection(t *testing.T) {
	s := newH2C(t, "127.0.0.1:0", http.HandlerFunc(echo))
	fp := newFreezeProxy(t, s.addr)
	const interval, timeout = 150 * time.Millisecond, 150 * time.Millisecond
	closed := make(chan time.Time, 1)
	p := NewPool(Options{Addr: fp.addr(), KeepaliveInterval: interval, KeepaliveTimeout: timeout,
		OnConnClose: func() { closed <- time.Now() }})
	defer p.Close()
	do(t, p, get("h", "/"))
	// Idle for a while: PINGs are answered and the connection stays.
	time.Sleep(3 * interval)
	if conns, _ := p.Stats(); conns != 1 {
		t.Fatalf("healthy idle connection closed: Stats conns = %d, want 1", conns)
	}
	frozen := time.Now()
	fp.freeze()
	select {
	case at := <-closed:
		// Allow scheduling slack on a loaded machine.
		if d := at.Sub(frozen); d > interval+timeout+500*time.Millisecond {
			t.Errorf("dead connection closed after %v, want within %v", d, interval+timeout)
		}
	case <-time.After(testTimeout):
		t.Fatal("dead connection was never closed")
	}
	if conns, _ := p.Stats(); conns != 0 {
		t.Errorf("Stats conns after keepalive failure = %d, want 0", conns)
	}
}

// refusingServer is a raw HTTP/2 server that answers every stream with
// RST_STREAM code.
func refusingServer(t *testing.T, code http2.ErrCode) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(testTimeout))
				preface := make([]byte, len(http2.ClientPreface))
				if _, err := io.ReadFull(c, preface); err != nil || string(preface) != http2.ClientPreface {
					return
				}
				fr := http2.NewFramer(c, c)
				if err := fr.WriteSettings(); err != nil {
					return
				}
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						return
					}
					switch f := f.(type) {
					case *http2.SettingsFrame:
						if !f.IsAck() {
							fr.WriteSettingsAck()
						}
					case *http2.HeadersFrame:
						fr.WriteRSTStream(f.StreamID, code)
					case *http2.PingFrame:
						if !f.IsAck() {
							fr.WritePing(true, f.Data)
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestStreamResets(t *testing.T) {
	tests := []struct {
		code     http2.ErrCode
		wantKind Kind
		wantSent bool
	}{
		{http2.ErrCodeRefusedStream, RefusedStream, false},
		{http2.ErrCodeInternal, Reset, true},
		{http2.ErrCodeCancel, Reset, true},
		{http2.ErrCodeProtocol, Protocol, true},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			p := NewPool(Options{Addr: refusingServer(t, tt.code)})
			defer p.Close()
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			_, err := p.RoundTrip(ctx, get("h", "/"))
			e := asError(t, err)
			if e.Kind != tt.wantKind || e.Sent != tt.wantSent {
				t.Errorf("RST_STREAM %v: error %v classified %v sent=%v, want %v sent=%v", tt.code, err, e.Kind, e.Sent, tt.wantKind, tt.wantSent)
			}
			var se http2.StreamError
			if !errors.As(err, &se) || se.Code != tt.code {
				t.Errorf("error %v does not wrap StreamError %v", err, tt.code)
			}
		})
	}
}

func TestBodyErrorMidStream(t *testing.T) {
	s := newH2C(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("x"), 100))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // RST_STREAM mid-body
	}))
	p := NewPool(Options{Addr: s.addr})
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	resp, err := p.RoundTrip(ctx, get("h", "/"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if e := asError(t, err); e.Kind != Reset || !e.Sent {
		t.Errorf("mid-body reset: %v classified %v sent=%v, want reset sent=true", err, e.Kind, e.Sent)
	}
	if _, active := p.Stats(); active != 0 {
		t.Errorf("active streams after failed body = %d, want 0", active)
	}
}

func TestCloseFailsLaterRequests(t *testing.T) {
	s := newH2C(t, "127.0.0.1:0", http.HandlerFunc(echo))
	var opens, closes counter
	p := NewPool(Options{Addr: s.addr, OnConnOpen: opens.inc, OnConnClose: closes.inc})
	do(t, p, get("h", "/"))
	p.Close()
	p.Close() // idempotent
	_, err := p.RoundTrip(context.Background(), get("h", "/"))
	if e := asError(t, err); e.Kind != ConnectFailure || !errors.Is(err, ErrClosed) {
		t.Errorf("RoundTrip after Close: %v, want connect failure wrapping ErrClosed", err)
	}
	waitFor(t, "the connection to close", func() bool { return closes.get() == opens.get() })
}

func BenchmarkRoundTripH2C(b *testing.B) {
	s := newH2C(b, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	p := NewPool(Options{Addr: s.addr})
	defer p.Close()
	req := get("bench.local", "/bench?x=1")
	req.Header.Add("user-agent", "bench")
	req.Header.Add("accept", "*/*")
	ctx := context.Background()
	buf := make([]byte, 512)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := p.RoundTrip(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				break
			}
		}
		resp.Body.Close()
	}
}

// goAwayFirstServer is a raw HTTP/2 server whose first connection answers
// the first stream with a graceful GOAWAY that does not cover it (last
// stream ID 0, so the stream was not processed); later connections answer
// 200.
func goAwayFirstServer(t *testing.T) (addr string, conns *counter) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns = &counter{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			first := conns.n.Add(1) == 1
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(testTimeout))
				preface := make([]byte, len(http2.ClientPreface))
				if _, err := io.ReadFull(c, preface); err != nil {
					return
				}
				fr := http2.NewFramer(c, c)
				fr.WriteSettings()
				var hbuf bytes.Buffer
				enc := hpack.NewEncoder(&hbuf)
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						return
					}
					switch f := f.(type) {
					case *http2.SettingsFrame:
						if !f.IsAck() {
							fr.WriteSettingsAck()
						}
					case *http2.HeadersFrame:
						if first {
							fr.WriteGoAway(0, http2.ErrCodeNo, nil)
							return
						}
						hbuf.Reset()
						enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
						fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hbuf.Bytes(), EndHeaders: true, EndStream: true})
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), conns
}

func TestUnprocessedStreamIsResent(t *testing.T) {
	addr, conns := goAwayFirstServer(t)
	p := NewPool(Options{Addr: addr})
	defer p.Close()
	resp, _ := do(t, p, get("h", "/"))
	if resp.Status != 200 || conns.get() != 2 {
		t.Errorf("status %d after %d connections, want 200 after 2 (resent on a new connection)", resp.Status, conns.get())
	}
}

// failingReader returns some data, then an error.
type failingReader struct{ sent bool }

func (r *failingReader) Read(p []byte) (int, error) {
	if !r.sent {
		r.sent = true
		return copy(p, "partial"), nil
	}
	return 0, errors.New("downstream went away")
}

func TestRequestBodyError(t *testing.T) {
	s := newH2C(t, "127.0.0.1:0", http.HandlerFunc(echo))
	p := NewPool(Options{Addr: s.addr})
	defer p.Close()
	req := get("h", "/")
	req.Method = "POST"
	req.Body = &failingReader{}
	req.ContentLength = -1
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	resp, err := p.RoundTrip(ctx, req)
	if err == nil {
		// The server may answer before the body fails; then the body
		// read reports it.
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if e := asError(t, err); e.Kind != RequestBody || !e.Sent {
		t.Errorf("request body failure: %v classified %v sent=%v, want request body sent=true", err, e.Kind, e.Sent)
	}
}
