package http1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/edgeproxy/edge/edge/message"
)

// echoHandler reports what net/http's server saw of the request in
// x-req-* fields and echoes the body, with content-length, or chunked with
// a trailer when the query has "chunked".
func echoHandler(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	h := w.Header()
	h.Set("X-Req-Method", r.Method)
	h.Set("X-Req-Host", r.Host)
	h.Set("X-Req-Cl", strconv.FormatInt(r.ContentLength, 10))
	h.Set("X-Req-Te", strings.Join(r.TransferEncoding, ","))
	h.Set("X-Req-Trailer", r.Trailer.Get("X-Checksum"))
	h.Set("X-Req-Custom", r.Header.Get("X-Custom"))
	if r.URL.Query().Has("chunked") {
		h.Set("Trailer", "X-Resp-Trailer")
		w.WriteHeader(200)
		w.Write(body)
		w.(http.Flusher).Flush()
		w.Write([]byte("!"))
		h.Set("X-Resp-Trailer", "done")
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(200)
	w.Write(body)
}

// countingServer starts an httptest server that counts new connections.
func countingServer(t *testing.T, h http.HandlerFunc, useTLS bool) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // TestTLS's handshake failure
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, &n
}

// trailerBody is a request body that sets the request trailer at EOF, as a
// downstream codec does.
type trailerBody struct {
	r   io.Reader
	req *message.Request
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.req.Trailer.Add("x-checksum", "abc123")
	}
	return n, err
}

func TestRoundTripBodies(t *testing.T) {
	srv, conns := countingServer(t, echoHandler, false)
	p := newTestPool(t, Options{Addr: srv.Listener.Addr().String()})
	ctx := testCtx(t)
	big := strings.Repeat("0123456789abcdef", 1500) // 24 000 bytes: several buffers

	tests := []struct {
		name        string
		method      string
		path        string
		body        string
		chunked     bool // request ContentLength -1
		oneByte     bool // body delivers one byte per read
		trailer     bool
		wantBody    string
		wantCL      int64
		wantReqCL   string
		wantReqTE   string
		wantTrailer string // response trailer
	}{
		{name: "GET", method: "GET", path: "/", wantReqCL: "0", wantCL: 0},
		{name: "POST content-length", method: "POST", path: "/", body: "hello", wantBody: "hello", wantCL: 5, wantReqCL: "5"},
		{name: "POST empty gets content-length 0", method: "POST", path: "/", wantReqCL: "0"},
		{name: "POST big content-length", method: "POST", path: "/", body: big, wantBody: big, wantCL: int64(len(big)), wantReqCL: strconv.Itoa(len(big))},
		{name: "POST slow content-length", method: "POST", path: "/", body: "slow body", oneByte: true, wantBody: "slow body", wantCL: 9, wantReqCL: "9"},
		{name: "POST chunked", method: "POST", path: "/", body: "hello", chunked: true, wantBody: "hello", wantCL: 5, wantReqCL: "-1", wantReqTE: "chunked"},
		{name: "POST chunked big", method: "POST", path: "/", body: big, chunked: true, wantBody: big, wantCL: int64(len(big)), wantReqCL: "-1", wantReqTE: "chunked"},
		{name: "POST chunked one byte per read", method: "POST", path: "/", body: "abc", chunked: true, oneByte: true, wantBody: "abc", wantCL: 3, wantReqCL: "-1", wantReqTE: "chunked"},
		{name: "POST chunked with trailer", method: "POST", path: "/", body: "hello", chunked: true, trailer: true, wantBody: "hello", wantCL: 5, wantReqCL: "-1", wantReqTE: "chunked"},
		{name: "response chunked with trailer", method: "POST", path: "/?chunked", body: "hello", wantBody: "hello!", wantCL: -1, wantReqCL: "5", wantTrailer: "x-resp-trailer: done\n"},
		{name: "both chunked", method: "PUT", path: "/?chunked", body: big, chunked: true, trailer: true, wantBody: big + "!", wantCL: -1, wantReqCL: "-1", wantReqTE: "chunked", wantTrailer: "x-resp-trailer: done\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newReq(tt.method, tt.path, "x-custom", "v1")
			if tt.body != "" {
				var r io.Reader = strings.NewReader(tt.body)
				if tt.oneByte {
					r = iotest.OneByteReader(r)
				}
				if tt.trailer {
					r = &trailerBody{r: r, req: req}
				}
				req.Body = r
				req.ContentLength = int64(len(tt.body))
				if tt.chunked {
					req.ContentLength = -1
				}
			}
			resp, body := mustDo(t, p, ctx, req)
			if resp.Status != 200 {
				t.Fatalf("status: got %d, want 200", resp.Status)
			}
			if body != tt.wantBody {
				t.Errorf("body: got %d bytes %.40q, want %d bytes %.40q", len(body), body, len(tt.wantBody), tt.wantBody)
			}
			if resp.ContentLength != tt.wantCL {
				t.Errorf("ContentLength: got %d, want %d", resp.ContentLength, tt.wantCL)
			}
			wantTrailer := ""
			if tt.trailer {
				wantTrailer = "abc123"
			}
			for _, c := range []struct{ name, want string }{
				{"x-req-method", tt.method},
				{"x-req-host", "upstream.test"},
				{"x-req-cl", tt.wantReqCL},
				{"x-req-te", tt.wantReqTE},
				{"x-req-trailer", wantTrailer},
				{"x-req-custom", "v1"},
			} {
				if got := resp.Header.Get(c.name); got != c.want {
					t.Errorf("%s: got %q, want %q", c.name, got, c.want)
				}
			}
			if got := fieldsString(&resp.Trailer); got != tt.wantTrailer {
				t.Errorf("trailer: got %q, want %q", got, tt.wantTrailer)
			}
		})
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("connections: got %d, want 1 (all requests on one reused connection)", got)
	}
}

func TestReuseSequential(t *testing.T) {
	srv, conns := countingServer(t, echoHandler, false)
	p := newTestPool(t, Options{Addr: srv.Listener.Addr().String()})
	ctx := testCtx(t)
	for i := range 100 {
		want := "body-" + strconv.Itoa(i)
		req := newReq("POST", "/")
		req.Body, req.ContentLength = strings.NewReader(want), int64(len(want))
		if _, body := mustDo(t, p, ctx, req); body != want {
			t.Fatalf("request %d: got body %q, want %q", i, body, want)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("connections for 100 sequential requests: got %d, want 1", got)
	}
	if a, i := p.Stats(); a != 0 || i != 1 {
		t.Errorf("Stats: got active %d idle %d, want 0 1", a, i)
	}
}

func TestReuseConcurrent(t *testing.T) {
	srv, conns := countingServer(t, echoHandler, false)
	var hooks hookCounts
	o := Options{Addr: srv.Listener.Addr().String(), MaxIdle: 64}
	hooks.set(&o)
	p := newTestPool(t, o)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for g := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				want := strconv.Itoa(g) + "/" + strconv.Itoa(i)
				req := newReq("POST", "/")
				req.Body, req.ContentLength = strings.NewReader(want), int64(len(want))
				resp, body, err := do(t, p, ctx, req)
				if err != nil {
					errs <- err
					return
				}
				p.Release(resp)
				if body != want {
					errs <- errors.New("got body " + body + ", want " + want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := conns.Load(); got > 50 {
		t.Errorf("connections for 50 goroutines x 20 requests: got %d, want <= 50", got)
	}
	a, i := p.Stats()
	if a != 0 || int32(i) != hooks.open.Load() {
		t.Errorf("Stats: got active %d idle %d, want 0 and %d", a, i, hooks.open.Load())
	}
	p.CloseIdle()
	if o, c := hooks.open.Load(), hooks.close.Load(); o != c || o != conns.Load() {
		t.Errorf("hooks after CloseIdle: opened %d, closed %d, server saw %d", o, c, conns.Load())
	}
}

// Bodyless responses (HEAD with content-length, 204, 304) must leave the
// connection reusable and in sync.
func TestReuseAcrossBodylessResponses(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.Header().Set("Etag", `"x"`)
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "11")
			w.Write([]byte("hello world"))
		}
	}, false)
	p := newTestPool(t, Options{Addr: srv.Listener.Addr().String()})
	ctx := testCtx(t)
	tests := []struct {
		method, path string
		status       int
		body         string
	}{
		{"HEAD", "/", 200, ""},
		{"GET", "/", 200, "hello world"},
		{"GET", "/204", 204, ""},
		{"GET", "/", 200, "hello world"},
		{"GET", "/304", 304, ""},
		{"HEAD", "/", 200, ""},
		{"GET", "/", 200, "hello world"},
	}
	for _, tt := range tests {
		resp, body := mustDo(t, p, ctx, newReq(tt.method, tt.path))
		if resp.Status != tt.status || body != tt.body || resp.ContentLength != int64(len(tt.body)) {
			t.Errorf("%s %s: got %d %q (ContentLength %d), want %d %q", tt.method, tt.path, resp.Status, body, resp.ContentLength, tt.status, tt.body)
		}
		if tt.method == "HEAD" && resp.Header.Get("content-length") != "11" {
			t.Errorf("HEAD: content-length field: got %q, want 11", resp.Header.Get("content-length"))
		}
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("connections: got %d, want 1", got)
	}
}

func TestTLS(t *testing.T) {
	var sawTLS atomic.Bool
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		sawTLS.Store(r.TLS != nil && r.TLS.NegotiatedProtocol == "http/1.1" && r.ProtoMajor == 1)
		echoHandler(w, r)
	}, true)
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig
	p := newTestPool(t, Options{Addr: srv.Listener.Addr().String(), TLS: &tls.Config{RootCAs: cfg.RootCAs}})
	ctx := testCtx(t)
	for i := range 3 {
		req := newReq("POST", "/?chunked")
		req.Body, req.ContentLength = strings.NewReader("secret"), -1
		resp, body := mustDo(t, p, ctx, req)
		if body != "secret!" || fieldsString(&resp.Trailer) != "x-resp-trailer: done\n" {
			t.Errorf("request %d: got body %q trailer %q", i, body, fieldsString(&resp.Trailer))
		}
	}
	if !sawTLS.Load() {
		t.Error("server did not see a TLS HTTP/1.1 request with ALPN http/1.1")
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("connections: got %d, want 1", got)
	}

	// A pool without the CA fails the handshake: ConnectFailure.
	bad := newTestPool(t, Options{Addr: srv.Listener.Addr().String(), TLS: &tls.Config{}})
	_, err := bad.RoundTrip(ctx, newReq("GET", "/"))
	if k, sent := kindOf(t, err); k != ConnectFailure || sent {
		t.Errorf("untrusted certificate: got %v sent=%v, want connect failure, not sent", k, sent)
	}
}

func TestReleaseRecycles(t *testing.T) {
	srv, _ := countingServer(t, echoHandler, false)
	p := newTestPool(t, Options{Addr: srv.Listener.Addr().String()})
	ctx := testCtx(t)
	resp, err := p.RoundTrip(ctx, newReq("GET", "/"))
	if err != nil {
		t.Fatal(err)
	}
	method := resp.Header.Get("x-req-method")
	// Release without reading: closes the body.
	p.Release(resp)
	if resp.Body != nil {
		t.Errorf("Body after Release: got %v, want nil", resp.Body)
	}
	p.Release(resp) // a second Release is a no-op
	if method != "GET" {
		t.Errorf("string kept from a released response: got %q, want GET", method)
	}
	// A response from another pool is ignored.
	other := newTestPool(t, Options{Addr: srv.Listener.Addr().String()})
	resp2, err := p.RoundTrip(ctx, newReq("GET", "/"))
	if err != nil {
		t.Fatal(err)
	}
	other.Release(resp2)
	if resp2.Body == nil {
		t.Error("Release by another pool recycled the response")
	}
	resp2.Body.Close()
}

func TestCloseRefusesAndClosesInFlight(t *testing.T) {
	srv, _ := countingServer(t, echoHandler, false)
	var hooks hookCounts
	o := Options{Addr: srv.Listener.Addr().String()}
	hooks.set(&o)
	p := newTestPool(t, o)
	ctx := testCtx(t)
	mustDo(t, p, ctx, newReq("GET", "/"))
	req := newReq("POST", "/")
	req.Body, req.ContentLength = strings.NewReader("in flight"), 9
	resp, err := p.RoundTrip(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if a, i := p.Stats(); a != 1 || i != 0 {
		t.Errorf("Stats after Close with one in flight: got %d %d, want 1 0", a, i)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "in flight" {
		t.Errorf("in-flight body after Close: got %q, %v", b, err)
	}
	resp.Body.Close()
	if a, i := p.Stats(); a != 0 || i != 0 {
		t.Errorf("Stats after in-flight finished: got %d %d, want 0 0", a, i)
	}
	if o, c := hooks.open.Load(), hooks.close.Load(); o != 1 || c != 1 {
		t.Errorf("hooks: opened %d closed %d, want 1 1", o, c)
	}
	_, err = p.RoundTrip(ctx, newReq("GET", "/"))
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("RoundTrip after Close: got %v, want ErrClosed", err)
	}
	if k, sent := kindOf(t, err); k != ConnectFailure || sent {
		t.Errorf("RoundTrip after Close: got %v sent=%v, want connect failure", k, sent)
	}
}

func TestRequestRejected(t *testing.T) {
	s := newRawServer(t, serveFixed("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"))
	p := newTestPool(t, Options{Addr: s.addr()})
	ctx := testCtx(t)
	tests := []struct {
		name string
		req  *message.Request
	}{
		{"value with CR LF", newReq("GET", "/", "x-a", "ok\r\nx-injected: 1")},
		{"value with LF", newReq("GET", "/", "x-a", "a\nb")},
		{"value with NUL", newReq("GET", "/", "x-a", "a\x00b")},
		{"name with colon", newReq("GET", "/", "x-a:b", "v")},
		{"name with space", newReq("GET", "/", "x a", "v")},
		{"empty name", newReq("GET", "/", "", "v")},
		{"empty method", newReq("", "/")},
		{"method with space", newReq("GE T", "/")},
		{"CONNECT", newReq("CONNECT", "host:443")},
		{"path with space", newReq("GET", "/a b")},
		{"path with CRLF", newReq("GET", "/a\r\nx: y")},
		{"authority with CRLF", func() *message.Request { r := newReq("GET", "/"); r.Authority = "a\r\nx: y"; return r }()},
		{"content length without body", func() *message.Request { r := newReq("POST", "/"); r.ContentLength = 3; return r }()},
		{"content length below -1", func() *message.Request {
			r := newReq("POST", "/")
			r.Body, r.ContentLength = strings.NewReader("x"), -2
			return r
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.RoundTrip(ctx, tt.req)
			if err == nil {
				t.Fatal("got no error, want a protocol error")
			}
			if k, sent := kindOf(t, err); k != Protocol || sent {
				t.Errorf("got %v sent=%v, want protocol error, not sent", k, sent)
			}
		})
	}
	if got := s.accepted.Load(); got != 0 {
		t.Errorf("connections: got %d, want 0 (nothing sent)", got)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestRequestBodyErrors(t *testing.T) {
	s := newRawServer(t, serveFixed("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"))
	p := newTestPool(t, Options{Addr: s.addr()})
	ctx := testCtx(t)
	boom := errors.New("client went away")
	tests := []struct {
		name string
		body io.Reader
		cl   int64
	}{
		{"shorter than content-length", strings.NewReader("12345"), 10},
		{"longer than content-length", strings.NewReader("1234567890"), 5},
		{"longer, one byte per read", iotest.OneByteReader(strings.NewReader("1234567890")), 5},
		{"read error, content-length", io.MultiReader(strings.NewReader("ab"), errReader{boom}), 10},
		{"read error, chunked", io.MultiReader(strings.NewReader("ab"), errReader{boom}), -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newReq("POST", "/")
			req.Body, req.ContentLength = tt.body, tt.cl
			_, err := p.RoundTrip(ctx, req)
			if k, _ := kindOf(t, err); k != RequestBody {
				t.Errorf("got %v (%v), want request body", k, err)
			}
			if a, i := p.Stats(); a != 0 || i != 0 {
				t.Errorf("Stats: got %d %d, want 0 0 (half-sent connection closed)", a, i)
			}
		})
	}
}

// An upstream that answers before reading the whole body and closes (413)
// is heard, not reported as a write error.
func TestEarlyResponseDuringUpload(t *testing.T) {
	s := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big!")
		// Closing with unread data sends RST: the client's next write fails.
	})
	p := newTestPool(t, Options{Addr: s.addr()})
	req := newReq("PUT", "/upload")
	const size = 256 << 20 // far more than socket buffers hold
	req.Body, req.ContentLength = io.LimitReader(zeros{}, size), size
	resp, body, err := do(t, p, testCtx(t), req)
	if err != nil {
		t.Fatalf("got error %v, want the 413 response", err)
	}
	if resp.Status != 413 || body != "too big!" {
		t.Errorf("got %d %q, want 413 %q", resp.Status, body, "too big!")
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

var _ = context.Background
