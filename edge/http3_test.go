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
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/edgeproxy/edge/edge/config"
)

const h3Config = `
admin: {address: ""}
listeners:
  - name: public
    address: 127.0.0.1:0
    protocols: [http1, http2, http3]
    route_config: main
    tls:
      certificates: [{cert_file: CRT, key_file: KEY}]
    limits: {max_concurrent_streams: STREAMS, max_request_header_bytes: 4KiB}
    timeouts: {request_headers: HEADTO, idle: IDLE}
    access_log: {path: LOGPATH, format: json}
  - name: plain
    address: 127.0.0.1:0
    protocols: [http1, http2]
    route_config: main
    tls:
      certificates: [{cert_file: CRT, key_file: KEY}]
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {path: /ping}
            direct_response: {status: 200, body: "pong\n"}
          - match: {path: /old}
            redirect: {path_redirect: /new, response_code: 308}
          - match: {prefix: /up/}
            route: {cluster: web}
clusters:
  - name: web
    endpoints: ["UPSTREAM"]
`

// h3Env is an edge serving HTTP/3 in front of a loopback HTTP/1.1 upstream.
type h3Env struct {
	s       *Server
	ca      *testCA
	logPath string
	// stream and slow gate the upstream's /up/stream and /up/slow.
	streamGo, slowGo   chan struct{}
	slowArrived        chan struct{}
	inFlight, maxTotal atomic.Int64
	stop               func()
	done               <-chan error
	udp                net.PacketConn // the socket Options.ListenPacket opened
}

// h3Upstream answers /up/echo (echo), /up/trailers, /up/stream (first
// part, then the rest once streamGo is closed), /up/slow (once slowGo is
// closed), /up/hints (103 then 200) and /up/cut (a truncated body).
func (e *h3Env) handler(w http.ResponseWriter, r *http.Request) {
	n := e.inFlight.Add(1)
	defer e.inFlight.Add(-1)
	for {
		m := e.maxTotal.Load()
		if n <= m || e.maxTotal.CompareAndSwap(m, n) {
			break
		}
	}
	switch r.URL.Path {
	case "/up/trailers":
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "body")
		w.Header().Set("X-Checksum", "abc123")
	case "/up/stream":
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-e.streamGo:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "second\n")
	case "/up/slow":
		e.slowArrived <- struct{}{}
		select {
		case <-e.slowGo:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "slow done")
	case "/up/hints":
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "final")
	case "/up/cut":
		c, bw, _ := http.NewResponseController(w).Hijack()
		bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
		bw.Flush()
		c.Close()
	default:
		echoHandler(w, r)
	}
}

// startH3 starts edge with h3Config; vars override STREAMS, IDLE and
// HEADTO (timeouts.request_headers).
func startH3(t *testing.T, drain time.Duration, vars ...string) *h3Env {
	t.Helper()
	e := &h3Env{
		ca:          newTestCA(t),
		streamGo:    make(chan struct{}),
		slowGo:      make(chan struct{}),
		slowArrived: make(chan struct{}, 10),
	}
	up := newUpstream(t, http.HandlerFunc(e.handler))
	crt, key := e.ca.issue(t, "edge", "127.0.0.1", "localhost")
	e.logPath = filepath.Join(t.TempDir(), "access.log")
	vars = append(vars, "CRT", crt, "KEY", key, "UPSTREAM", up.hostPort(), "LOGPATH", e.logPath, "STREAMS", "100", "IDLE", "30s", "HEADTO", "2s")
	var pairs []string
	seen := map[string]bool{}
	for i := 0; i+1 < len(vars); i += 2 { // the first value given for a key wins
		if !seen[vars[i]] {
			seen[vars[i]] = true
			pairs = append(pairs, vars[i], vars[i+1])
		}
	}
	var mu sync.Mutex
	s, done := runEdge(t, h3Config, Options{ListenPacket: func(network, addr string) (net.PacketConn, error) {
		pc, err := net.ListenPacket(network, addr)
		mu.Lock()
		e.udp = pc
		mu.Unlock()
		return pc, err
	}, DrainTime: drain, ShutdownTime: drain}, pairs...)
	e.s, e.stop, e.done = s, s.Quit, done
	return e
}

// h3Client returns an HTTP/3 client trusting the edge's CA; it does not
// follow redirects.
func (e *h3Env) h3Client(t *testing.T) (*http.Client, *http3.Transport) {
	tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: e.ca.pool, ClientSessionCache: tls.NewLRUClientSessionCache(4)}}
	t.Cleanup(func() { tr.Close() })
	return &http.Client{
		Transport:     tr,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, tr
}

func (e *h3Env) url(name, path string) string {
	return "https://" + e.s.Addr(name).String() + path
}

func (e *h3Env) stat(name string) float64 {
	v, _ := e.s.Stats().Lookup(name, statsLabel("listener", "public"))
	return v
}

// waitStat polls a listener stat until it equals want or 5 s pass.
func (e *h3Env) waitStat(t *testing.T, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.stat(name) != want {
		if time.Now().After(deadline) {
			t.Errorf("%s = %v, want %v", name, e.stat(name), want)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return string(b)
}

// onlyReader hides a reader's type so the client cannot learn the length.
type onlyReader struct{ io.Reader }

func TestHTTP3Proxy(t *testing.T) {
	// A short drain: the client drops the connection of the failed round
	// trip (/up/cut) without closing it, so shutdown waits it out.
	e := startH3(t, 500*time.Millisecond)
	c, _ := e.h3Client(t)

	do := func(method, path string, body io.Reader) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, e.url("public", path), body)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		if resp.ProtoMajor != 3 {
			t.Errorf("%s %s: HTTP/%d, want 3", method, path, resp.ProtoMajor)
		}
		if v := resp.Header.Values("Alt-Svc"); len(v) > 0 {
			t.Errorf("%s %s: HTTP/3 response carries alt-svc %q", method, path, v)
		}
		return resp
	}

	t.Run("echo", func(t *testing.T) {
		for _, tc := range []struct {
			name, method string
			body         io.Reader
			wantBody     string
			wantLength   int64
			wantChunked  bool
		}{
			{"GET", "GET", nil, "", 0, false},
			{"DELETE", "DELETE", nil, "", 0, false},
			{"POST with length", "POST", strings.NewReader("hello h3"), "hello h3", 8, false},
			{"POST streamed", "POST", onlyReader{strings.NewReader("streamed body")}, "streamed body", -1, true},
			{"GET with a body", "GET", onlyReader{strings.NewReader("odd")}, "odd", -1, true},
			{"GET with a one-byte body", "GET", onlyReader{strings.NewReader("x")}, "x", -1, true},
		} {
			resp := do(tc.method, "/up/echo", tc.body)
			ec := getEcho(t, resp)
			if ec.Method != tc.method || ec.Body != tc.wantBody || ec.Proto != 1 {
				t.Errorf("%s: upstream got %s %q over HTTP/%d, want %s %q over HTTP/1", tc.name, ec.Method, ec.Body, ec.Proto, tc.method, tc.wantBody)
			}
			// The one-byte case may end with the byte (length 1) or not.
			if tc.body != nil && tc.wantBody == "x" {
				continue
			}
			if ec.Length != tc.wantLength || ec.Chunked != tc.wantChunked {
				t.Errorf("%s: upstream saw length %d chunked %v, want %d %v", tc.name, ec.Length, ec.Chunked, tc.wantLength, tc.wantChunked)
			}
			if got := ec.Header.Get("X-Forwarded-Proto"); got != "https" {
				t.Errorf("%s: x-forwarded-proto %q, want https", tc.name, got)
			}
		}
	})

	t.Run("trailers", func(t *testing.T) {
		resp := do("GET", "/up/trailers", nil)
		if body := readAll(t, resp); body != "body" {
			t.Errorf("body %q, want %q", body, "body")
		}
		if got := resp.Trailer.Get("X-Checksum"); got != "abc123" {
			t.Errorf("trailer x-checksum %q, want abc123 (trailers %v)", got, resp.Trailer)
		}
	})

	t.Run("streamed response read before it ends", func(t *testing.T) {
		resp := do("GET", "/up/stream", nil)
		defer resp.Body.Close()
		first := make([]byte, len("first\n"))
		if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first\n" {
			t.Fatalf("first part: %q %v", first, err)
		}
		close(e.streamGo) // the upstream has not finished until now
		rest, err := io.ReadAll(resp.Body)
		if err != nil || string(rest) != "second\n" {
			t.Errorf("rest: %q %v, want %q", rest, err, "second\n")
		}
	})

	t.Run("early hints", func(t *testing.T) {
		var got []string
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			got = append(got, fmt.Sprintf("%d %s", code, h.Get("Link")))
			return nil
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", e.url("public", "/up/hints"), nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); body != "final" || len(got) != 1 || got[0] != "103 </a.css>; rel=preload" {
			t.Errorf("got 1xx %q and body %q, want one 103 with the link and %q", got, body, "final")
		}
	})

	t.Run("expect 100-continue", func(t *testing.T) {
		var got100 atomic.Bool
		trace := &httptrace.ClientTrace{Got100Continue: func() { got100.Store(true) }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "PUT", e.url("public", "/up/echo"), strings.NewReader("payload"))
		req.Header.Set("Expect", "100-continue")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		ec := getEcho(t, resp)
		if !got100.Load() || ec.Body != "payload" || ec.Header.Get("Expect") != "" {
			t.Errorf("100 sent %v, upstream body %q expect %q; want a 100, the body and no expect", got100.Load(), ec.Body, ec.Header.Get("Expect"))
		}
	})

	t.Run("cut upstream body resets the stream", func(t *testing.T) {
		// The reset may come before the buffered head went out (then the
		// round trip fails) or after it (then reading the body fails).
		resp, err := c.Get(e.url("public", "/up/cut"))
		if err != nil {
			return
		}
		defer resp.Body.Close()
		if b, err := io.ReadAll(resp.Body); err == nil {
			t.Errorf("read %q to a clean end, want a stream error", b)
		}
	})

	t.Run("routes", func(t *testing.T) {
		for _, tc := range []struct {
			path, wantBody, wantLocation string
			wantStatus                   int
		}{
			{"/ping", "pong\n", "", 200},
			{"/old", "", e.url("public", "/new"), 308},
			{"/nowhere", "", "", 404},
		} {
			resp := do("GET", tc.path, nil)
			body := readAll(t, resp)
			if resp.StatusCode != tc.wantStatus || body != tc.wantBody || resp.Header.Get("Location") != tc.wantLocation {
				t.Errorf("GET %s: %d %q location %q, want %d %q location %q", tc.path, resp.StatusCode, body,
					resp.Header.Get("Location"), tc.wantStatus, tc.wantBody, tc.wantLocation)
			}
		}
	})

	t.Run("CONNECT", func(t *testing.T) {
		req, _ := http.NewRequest("CONNECT", e.url("public", ""), nil)
		req.URL.Path, req.Host = "", "example.test:443"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotImplemented {
			t.Errorf("CONNECT: %d, want 501", resp.StatusCode)
		}
	})

	t.Run("header limit", func(t *testing.T) {
		req, _ := http.NewRequest("GET", e.url("public", "/up/echo"), nil)
		req.Header.Set("X-Big", strings.Repeat("a", 8<<10))
		resp, err := c.Do(req)
		if err != nil {
			// The client may refuse to send what the server's SETTINGS forbid.
			t.Logf("oversized request refused by the client: %v", err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("8 KiB header with a 4 KiB limit: %d, want 431", resp.StatusCode)
		}
	})
}

func TestAltSvc(t *testing.T) {
	e := startH3(t, 2*time.Second)
	port := strconv.Itoa(e.s.Addr("public").(*net.TCPAddr).Port)
	want := `h3=":` + port + `"; ma=86400`
	for _, h2 := range []bool{false, true} {
		c := e.ca.client(h2)
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		for _, path := range []string{"/up/echo", "/ping", "/old", "/nowhere"} {
			for _, l := range []string{"public", "plain"} {
				resp, err := c.Get(e.url(l, path))
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				got := resp.Header.Values("Alt-Svc")
				switch {
				case l == "plain" && len(got) != 0:
					t.Errorf("%s %s over HTTP/%d: alt-svc %q on a listener without http3", l, path, resp.ProtoMajor, got)
				case l == "public" && (len(got) != 1 || got[0] != want):
					t.Errorf("%s %s over HTTP/%d (status %d): alt-svc %q, want %q", l, path, resp.ProtoMajor, resp.StatusCode, got, want)
				}
			}
		}
	}
	// The advertised port answers HTTP/3.
	c, _ := e.h3Client(t)
	resp, err := c.Get("https://127.0.0.1:" + port + "/ping")
	if err != nil {
		t.Fatalf("HTTP/3 on the advertised port: %v", err)
	}
	resp.Body.Close()
}

func TestHTTP3AccessLogAndStats(t *testing.T) {
	e := startH3(t, 2*time.Second, "IDLE", "400ms")
	c, tr := e.h3Client(t)
	for _, p := range []string{"/ping", "/up/echo"} {
		resp, err := c.Get(e.url("public", p))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
	}
	if got := e.stat("edge_listener_downstream_cx_active"); got != 1 {
		t.Errorf("cx_active with one QUIC connection open = %v, want 1", got)
	}
	for name, want := range map[string]float64{
		"edge_listener_downstream_cx_total":            1,
		"edge_listener_downstream_tls_handshake_total": 1,
		"edge_listener_downstream_tls_handshake_error": 0,
		"edge_http_downstream_rq_total":                2,
	} {
		if got := e.stat(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	// timeouts.idle (400ms) closes the idle connection from edge's side.
	e.waitStat(t, "edge_listener_downstream_cx_active", 0)

	// A second connection resumes the TLS session of the first.
	resp, err := c.Get(e.url("public", "/ping"))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if got := e.stat("edge_listener_downstream_cx_total"); got != 2 {
		t.Errorf("cx_total after the idle close and a new request = %v, want 2", got)
	}
	if got := e.stat("edge_listener_downstream_tls_session_reused"); got != 1 {
		t.Errorf("tls_session_reused after reconnecting = %v, want 1", got)
	}
	tr.Close()
	e.waitStat(t, "edge_listener_downstream_cx_active", 0)

	// A handshake that fails (untrusted by the client) counts as an error.
	bad := &http3.Transport{TLSClientConfig: &tls.Config{ServerName: "other.test", RootCAs: e.ca.pool}}
	defer bad.Close()
	if _, err := (&http.Client{Transport: bad, Timeout: 5 * time.Second}).Get("https://" + e.s.Addr("public").String() + "/ping"); err == nil {
		t.Error("a client verifying another name got a response")
	}
	e.waitStat(t, "edge_listener_downstream_tls_handshake_error", 1)
	e.waitStat(t, "edge_listener_downstream_cx_active", 0)

	data, err := os.ReadFile(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 {
		t.Fatalf("access log has %d lines, want 3:\n%s", len(lines), data)
	}
	for i, want := range []string{"/ping", "/up/echo", "/ping"} {
		var entry map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &entry); err != nil {
			t.Fatalf("line %d not JSON: %v", i, err)
		}
		if entry["protocol"] != "HTTP/3" || entry["path"] != want || entry["response_code"] != float64(200) {
			t.Errorf("line %d: protocol %v path %v status %v, want HTTP/3 %s 200", i, entry["protocol"], entry["path"], entry["response_code"], want)
		}
	}
}

func TestHTTP3BodyProbeTimeout(t *testing.T) {
	e := startH3(t, 500*time.Millisecond, "HEADTO", "300ms")
	c, _ := e.h3Client(t)
	// A GET whose stream stays open without a byte of body: edge waits
	// timeouts.request_headers for the body to start or end, then answers
	// 408 without asking the upstream.
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("GET", e.url("public", "/up/slow"), pr)
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusRequestTimeout || time.Since(start) < 250*time.Millisecond {
		t.Errorf("stalled GET body: %d %q after %v, want 408 after the 300ms timeout", resp.StatusCode, body, time.Since(start))
	}
	select {
	case <-e.slowArrived:
		t.Error("the stalled request reached the upstream")
	default:
	}
}

func TestHTTP3MaxConcurrentStreams(t *testing.T) {
	e := startH3(t, 2*time.Second, "STREAMS", "2")
	c, _ := e.h3Client(t)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Go(func() {
			resp, err := c.Get(e.url("public", "/up/slow"))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			if b, _ := io.ReadAll(resp.Body); string(b) != "slow done" {
				errs <- fmt.Errorf("body %q", b)
			}
		})
	}
	for range 2 {
		select {
		case <-e.slowArrived:
		case <-time.After(5 * time.Second):
			t.Fatal("requests did not reach the upstream")
		}
	}
	select {
	case <-e.slowArrived:
		t.Error("a third concurrent request reached the upstream with max_concurrent_streams 2")
	case <-time.After(300 * time.Millisecond):
	}
	close(e.slowGo)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if m := e.maxTotal.Load(); m != 2 {
		t.Errorf("upstream saw %d concurrent requests, want 2", m)
	}
}

func TestHTTP3GracefulShutdown(t *testing.T) {
	e := startH3(t, 8*time.Second)
	c, _ := e.h3Client(t)
	if got, want := e.udp.LocalAddr().String(), e.s.Addr("public").String(); got != want {
		t.Errorf("UDP socket bound to %s, want the TCP listener's %s", got, want)
	}
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := c.Get(e.url("public", "/up/slow"))
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{string(b), err}
	}()
	select {
	case <-e.slowArrived:
	case <-time.After(5 * time.Second):
		t.Fatal("request did not reach the upstream")
	}

	e.stop()
	select {
	case err := <-e.done:
		t.Fatalf("Run returned (%v) with an HTTP/3 request in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(e.slowGo)
	select {
	case r := <-res:
		if r.err != nil || r.body != "slow done" {
			t.Errorf("in-flight request: %q %v, want it completed", r.body, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight request did not complete")
	}
	// The client closes its connection after GOAWAY once it has no
	// requests left, so Run returns well before the 8 s drain time.
	start := time.Now()
	select {
	case err := <-e.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the in-flight request completed")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Run returned %v after the last request, want the connection closed by GOAWAY", d)
	}
	if _, _, err := e.udp.ReadFrom(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("UDP socket after Run: read error %v, want it closed", err)
	}
}

func TestHTTP3ListenPacketError(t *testing.T) {
	ca := newTestCA(t)
	crt, key := ca.issue(t, "edge", "127.0.0.1")
	src := strings.NewReplacer("CRT", crt, "KEY", key, "UPSTREAM", "127.0.0.1:1", "LOGPATH", "stderr", "STREAMS", "100", "IDLE", "30s", "HEADTO", "2s").Replace(h3Config)
	cfg, err := config.Parse([]byte(src), "test.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Config: cfg, ListenPacket: func(network, addr string) (net.PacketConn, error) {
		return nil, errors.New("no udp here")
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Run(ctx); err == nil || !strings.Contains(err.Error(), "no udp here") || !strings.Contains(err.Error(), `"public"`) {
		t.Errorf("Run = %v, want the listener's UDP error", err)
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and returns
// its files and a pool trusting it (newTestCA needs a *testing.T).
func selfSigned(tb testing.TB) (crtFile, keyFile string, pool *x509.CertPool) {
	tb.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		IsCA:         true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	kder, _ := x509.MarshalECPrivateKey(key)
	dir := tb.TempDir()
	crtFile, keyFile = filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	os.WriteFile(crtFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return crtFile, keyFile, pool
}

// BenchmarkHTTP3Proxy measures a small GET through edge end to end: an
// HTTP/3 client on one connection, edge, a keep-alive HTTP/1.1 origin.
// Client and origin costs are included (compare BenchmarkForwardingCore).
func BenchmarkHTTP3Proxy(b *testing.B) {
	up := rawUpstream(b)
	crt, key, pool := selfSigned(b)
	s := startEdge(b, h3Config, "CRT", crt, "KEY", key, "UPSTREAM", up, "LOGPATH", "stderr", "STREAMS", "100", "IDLE", "30s", "HEADTO", "2s",
		"    access_log: {path: LOGPATH, format: json}\n", "")
	tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.Close()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	url := "https://" + s.Addr("public").String() + "/up/bench"
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
