package edge

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

const basicConfig = `
admin: {address: ""}
listeners:
  - name: public
    address: 127.0.0.1:0
    route_config: main
route_configs:
  - name: main
    request_headers_to_add: [{name: x-edge-pop, value: test1}]
    response_headers_to_add: [{name: x-frame-options, value: DENY}]
    response_headers_to_remove: [x-upstream]
    virtual_hosts:
      - name: main
        domains: ["*"]
        routes:
          - match: {path: /ping}
            direct_response: {status: 200, body: "pong\n"}
          - match: {path: /old}
            redirect: {path_redirect: /new, response_code: 308}
          - match: {prefix: /api/}
            route: {cluster: web, prefix_rewrite: /v2/, host_rewrite: api.internal}
          - match: {prefix: /}
            route: {cluster: web}
clusters:
  - name: web
    endpoints: ["UPSTREAM"]
`

func TestProxyHTTP1(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(echoHandler))
	s := startEdge(t, basicConfig, "UPSTREAM", up.hostPort())

	req, _ := http.NewRequest("GET", s.url("public", "/hello?q=1"), nil)
	req.Host = "example.com"
	req.Header.Set("Connection", "keep-alive, X-Hop")
	req.Header.Set("X-Hop", "must not pass")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("X-Edge-Trace", "on")          // internal client: kept
	req.Header.Set("X-Request-Id", "req-abc-123") // internal client: kept
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("X-Frame-Options"); got != "DENY" {
		t.Errorf("response header added: got %q, want DENY", got)
	}
	if got := resp.Header.Get("X-Upstream"); got != "" {
		t.Errorf("response header x-upstream not removed: %q", got)
	}
	e := getEcho(t, resp)
	for _, c := range []struct{ what, got, want string }{
		{"path", e.Path, "/hello?q=1"},
		{"host", e.Host, "example.com"},
		{"x-forwarded-for", e.Header.Get("X-Forwarded-For"), "127.0.0.1"},
		{"x-forwarded-proto", e.Header.Get("X-Forwarded-Proto"), "http"},
		{"x-hop (named in connection)", e.Header.Get("X-Hop"), ""},
		{"keep-alive", e.Header.Get("Keep-Alive"), ""},
		{"x-edge-trace from internal client", e.Header.Get("X-Edge-Trace"), "on"},
		{"x-request-id from internal client", e.Header.Get("X-Request-Id"), "req-abc-123"},
		{"x-edge-internal", e.Header.Get("X-Edge-Internal"), "true"},
		{"route config header", e.Header.Get("X-Edge-Pop"), "test1"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.what, c.got, c.want)
		}
	}
}

func TestExternalClientHeaders(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(echoHandler))
	s := startEdge(t, basicConfig, "UPSTREAM", up.hostPort())

	// A client that sends its own X-Forwarded-For is external (Envoy's
	// rule): its x-edge-* headers go, its request id is replaced.
	req, _ := http.NewRequest("GET", s.url("public", "/x"), nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Edge-Retry-On", "5xx")
	req.Header.Set("X-Edge-Internal", "true")
	req.Header.Set("X-Request-Id", "spoofed")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	e := getEcho(t, resp)
	if got := e.Header.Get("X-Forwarded-For"); got != "203.0.113.9, 127.0.0.1" {
		t.Errorf("x-forwarded-for = %q, want appended", got)
	}
	if got := e.Header.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("x-forwarded-proto = %q, want http (untrusted value overwritten)", got)
	}
	for _, h := range []string{"X-Edge-Retry-On", "X-Edge-Internal"} {
		if got := e.Header.Get(h); got != "" {
			t.Errorf("%s from external client reached upstream: %q", h, got)
		}
	}
	if got := e.Header.Get("X-Edge-Pop"); got != "test1" {
		t.Errorf("x-edge-pop added by config = %q, want test1 (config headers are added after stripping)", got)
	}
	if id := e.Header.Get("X-Request-Id"); id == "spoofed" || len(id) != 36 {
		t.Errorf("x-request-id = %q, want a fresh UUID", id)
	}
}

func TestTrustedHopsKeepsProto(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(echoHandler))
	cfg := strings.Replace(basicConfig, "    route_config: main\n", "    route_config: main\n    xff_trusted_hops: 1\n", 1)
	s := startEdge(t, cfg, "UPSTREAM", up.hostPort())
	req, _ := http.NewRequest("GET", s.url("public", "/x"), nil)
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	req.Header.Set("X-Forwarded-Proto", "https")
	e := getEcho(t, mustDo(t, req))
	if got := e.Header.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("x-forwarded-proto from a trusted hop = %q, want https", got)
	}
	if got := e.Header.Get("X-Forwarded-For"); got != "198.51.100.7, 127.0.0.1" {
		t.Errorf("x-forwarded-for = %q", got)
	}
}

func mustDo(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestRouteActions(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(echoHandler))
	s := startEdge(t, basicConfig, "UPSTREAM", up.hostPort())

	resp := mustDo(t, mustReq(t, "GET", s.url("public", "/ping")))
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "pong\n" || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("direct response: %d %q %v", resp.StatusCode, body, resp.Header)
	}

	resp = mustDo(t, mustReq(t, "GET", s.url("public", "/old?x=1")))
	resp.Body.Close()
	want := "http://" + s.Addr("public").String() + "/new?x=1"
	if resp.StatusCode != 308 || resp.Header.Get("Location") != want {
		t.Errorf("redirect: %d Location %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}

	e := getEcho(t, mustDo(t, mustReq(t, "GET", s.url("public", "/api/users?id=7"))))
	if e.Path != "/v2/users?id=7" || e.Host != "api.internal" {
		t.Errorf("rewrite: upstream saw path %q host %q, want /v2/users?id=7 api.internal", e.Path, e.Host)
	}
	if got := e.Header.Get("X-Edge-Original-Path"); got != "/api/users?id=7" {
		t.Errorf("x-edge-original-path = %q", got)
	}
}

func mustReq(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestNoRouteAndUnknownHost(t *testing.T) {
	s := startEdge(t, `
admin: {address: ""}
listeners: [{name: public, address: "127.0.0.1:0", route_config: main}]
route_configs:
  - name: main
    virtual_hosts:
      - name: ex
        domains: [example.com]
        routes: [{match: {prefix: /app/}, direct_response: {status: 200, body: ok}}]
clusters: []
`)
	for _, c := range []struct {
		host, path string
		want       int
	}{
		{"example.com", "/app/x", 200},
		{"example.com", "/other", 404},
		{"unknown.test", "/app/x", 404},
	} {
		req := mustReq(t, "GET", s.url("public", c.path))
		req.Host = c.host
		resp := mustDo(t, req)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s%s: status %d, want %d", c.host, c.path, resp.StatusCode, c.want)
		}
	}
}

func TestRequestAndResponseBodies(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(echoHandler))
	s := startEdge(t, basicConfig, "UPSTREAM", up.hostPort())

	// Content-Length body.
	resp := mustDo(t, mustBodyReq(t, s.url("public", "/post"), strings.NewReader("hello body"), 10))
	if e := getEcho(t, resp); e.Body != "hello body" || e.Length != 10 || e.Chunked {
		t.Errorf("length body: upstream saw %q len %d chunked %v", e.Body, e.Length, e.Chunked)
	}
	// Chunked body of unknown length, streamed.
	pr, pw := io.Pipe()
	go func() {
		for i := range 3 {
			fmt.Fprintf(pw, "part%d;", i)
			time.Sleep(10 * time.Millisecond)
		}
		pw.Close()
	}()
	resp = mustDo(t, mustBodyReq(t, s.url("public", "/post"), pr, -1))
	if e := getEcho(t, resp); e.Body != "part0;part1;part2;" || !e.Chunked {
		t.Errorf("chunked body: upstream saw %q chunked %v", e.Body, e.Chunked)
	}
	// A large response body streams through intact.
	big := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
	up2 := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) }))
	s2 := startEdge(t, basicConfig, "UPSTREAM", up2.hostPort())
	resp = mustDo(t, mustReq(t, "GET", s2.url("public", "/big")))
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != big {
		t.Errorf("1 MiB body: got %d bytes, want %d", len(got), len(big))
	}
}

func mustBodyReq(t *testing.T, url string, body io.Reader, n int64) *http.Request {
	t.Helper()
	req, err := http.NewRequest("POST", url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = n
	return req
}

func TestHeadAnd204And304(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "11")
			io.WriteString(w, "hello world")
		}
	}))
	s := startEdge(t, basicConfig, "UPSTREAM", up.hostPort())
	resp := mustDo(t, mustReq(t, "HEAD", s.url("public", "/x")))
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != 11 {
		t.Errorf("HEAD: %d, body %q, length %d; want 200, empty, 11", resp.StatusCode, body, resp.ContentLength)
	}
	for _, p := range []string{"/204", "/304"} {
		resp := mustDo(t, mustReq(t, "GET", s.url("public", p)))
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := p[1:]; fmt.Sprint(resp.StatusCode) != want || len(body) != 0 {
			t.Errorf("%s: %d with %d body bytes", p, resp.StatusCode, len(body))
		}
	}
	// The connection survives all of that: the next request works.
	resp = mustDo(t, mustReq(t, "GET", s.url("public", "/x")))
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("after HEAD/204/304: %d", resp.StatusCode)
	}
}

func TestTrailersHTTP1(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "data")
		w.Header().Set("X-Checksum", "abc123")
	}))
	s := startEdge(t, basicConfig, "UPSTREAM", up.hostPort())
	resp := mustDo(t, mustReq(t, "GET", s.url("public", "/t")))
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := resp.Trailer.Get("X-Checksum"); got != "abc123" {
		t.Errorf("trailer X-Checksum = %q, want abc123 (trailers %v)", got, resp.Trailer)
	}
}

func TestServerSentEventsFlush(t *testing.T) {
	release := make(chan struct{})
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "data: second\n\n")
	}))
	s := startEdge(t, basicConfig, "UPSTREAM", up.hostPort())
	defer close(release)
	resp := mustDo(t, mustReq(t, "GET", s.url("public", "/events")))
	defer resp.Body.Close()
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(resp.Body).ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if l != "data: first\n" {
			t.Errorf("first event line %q", l)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("first event not flushed while the upstream holds the stream open")
	}
}

func TestUpstreamFailures(t *testing.T) {
	slow := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	reset := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, _ := http.NewResponseController(w).Hijack()
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}))
	s := startEdge(t, `
admin: {address: ""}
listeners: [{name: public, address: "127.0.0.1:0", route_config: main}]
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - {match: {prefix: /slow}, route: {cluster: slow, timeout: 300ms}}
          - {match: {prefix: /refused}, route: {cluster: refused}}
          - {match: {prefix: /reset}, route: {cluster: reset}}
          - {match: {prefix: /nohost}, route: {cluster: nohost}}
clusters:
  - {name: slow, endpoints: ["SLOW"]}
  - {name: refused, endpoints: ["REFUSED"], connect_timeout: 1s}
  - {name: reset, endpoints: ["RESET"]}
  - {name: nohost, type: strict_dns, endpoints: ["no-such-host.invalid:80"]}
`, "SLOW", slow.hostPort(), "REFUSED", closedPort(t), "RESET", reset.hostPort())

	for _, c := range []struct {
		path   string
		status int
		body   string
		maxDur time.Duration
	}{
		{"/slow", 504, "upstream request timeout\n", 2 * time.Second},
		{"/refused", 503, "upstream connect error: connection failure\n", 2 * time.Second},
		{"/reset", 503, "upstream reset before response headers\n", 2 * time.Second},
		{"/nohost", 503, "no healthy upstream\n", 2 * time.Second},
	} {
		start := time.Now()
		resp := mustDo(t, mustReq(t, "GET", s.url("public", c.path)))
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if resp.StatusCode != c.status || string(body) != c.body {
			t.Errorf("%s: %d %q, want %d %q", c.path, resp.StatusCode, body, c.status, c.body)
		}
		if d > c.maxDur {
			t.Errorf("%s took %v, want under %v", c.path, d, c.maxDur)
		}
		if c.path == "/slow" && d < 300*time.Millisecond {
			t.Errorf("/slow answered after %v, before the 300ms route timeout", d)
		}
	}
}

func TestUpstreamConnectionsReused(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(echoHandler))
	s := startEdge(t, basicConfig, "UPSTREAM", up.hostPort())
	const workers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				resp, err := client.Get(s.url("public", "/r"))
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := up.conns.Load(); n > workers {
		t.Errorf("upstream saw %d connections for %d requests from %d workers; want at most %d (pooled)", n, workers*each, workers, workers)
	}
}

func TestHeaderLimits(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(echoHandler))
	cfg := strings.Replace(basicConfig, "    route_config: main\n",
		"    route_config: main\n    limits: {max_request_headers: 20, max_request_header_bytes: 4KiB}\n    timeouts: {request_headers: 300ms}\n", 1)
	s := startEdge(t, cfg, "UPSTREAM", up.hostPort())

	req := mustReq(t, "GET", s.url("public", "/x"))
	for i := range 25 {
		req.Header.Set(fmt.Sprintf("X-H%d", i), "v")
	}
	resp := mustDo(t, req)
	resp.Body.Close()
	if resp.StatusCode != 431 {
		t.Errorf("25 headers over a limit of 20: status %d, want 431", resp.StatusCode)
	}
	req = mustReq(t, "GET", s.url("public", "/x"))
	req.Header.Set("X-Big", strings.Repeat("a", 8<<10))
	resp = mustDo(t, req)
	resp.Body.Close()
	if resp.StatusCode != 431 {
		t.Errorf("8 KiB header over a 4 KiB limit: status %d, want 431", resp.StatusCode)
	}

	// Slowloris: a client that never finishes its headers is cut off.
	c, err := net.Dial("tcp", s.Addr("public").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(c)
	if d := time.Since(start); err != nil || d > 3*time.Second {
		t.Errorf("slow client: connection closed after %v (err %v); want closed after ~300ms", d, err)
	}
}

func TestCurlHTTP2PriorKnowledge(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	up := newUpstream(t, http.HandlerFunc(echoHandler))
	s := startEdge(t, basicConfig, "UPSTREAM", up.hostPort())
	out, err := exec.Command("curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
		"-w", "%{http_version} %{http_code}", s.url("public", "/x")).CombinedOutput()
	if err != nil || string(out) != "2 200" {
		t.Errorf("curl --http2-prior-knowledge: %q %v, want \"2 200\"", out, err)
	}
	out, err = exec.Command("curl", "-sS", "--http1.1", "-o", "/dev/null",
		"-w", "%{http_version} %{http_code}", s.url("public", "/x")).CombinedOutput()
	if err != nil || string(out) != "1.1 200" {
		t.Errorf("curl --http1.1 on the same port: %q %v, want \"1.1 200\"", out, err)
	}
}
