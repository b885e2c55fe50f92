package edge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h1Config is a listener with small limits in front of an echo upstream,
// with a direct-response route that never reads the request body.
const h1Config = `
admin: {address: ""}
listeners:
  - name: public
    address: 127.0.0.1:0
    route_config: main
    limits: {max_request_headers: 20, max_request_header_bytes: 2KiB}
    timeouts: {request_headers: HEADTIMEOUT, idle: IDLETIMEOUT}
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /direct}
            direct_response: {status: 200, body: "direct\n"}
          - match: {prefix: /}
            route: {cluster: web}
clusters:
  - name: web
    endpoints: ["UPSTREAM"]
`

// h1Echo is what h1EchoHandler reports about a request.
type h1Echo struct {
	Method, Path, Host, Body string
	Length                   int64
	Chunked                  bool
	Header, Trailer          http.Header
}

func h1EchoHandler(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	e := h1Echo{Method: r.Method, Path: r.RequestURI, Host: r.Host, Body: string(body), Length: r.ContentLength,
		Chunked: len(r.TransferEncoding) > 0, Header: r.Header, Trailer: r.Trailer}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(e)
}

// startH1 runs edge with h1Config in front of an echo upstream.
func startH1(t *testing.T, headTimeout, idle string) *Server {
	t.Helper()
	up := newUpstream(t, http.HandlerFunc(h1EchoHandler))
	return startEdge(t, h1Config, "UPSTREAM", up.hostPort(), "HEADTIMEOUT", headTimeout, "IDLETIMEOUT", idle)
}

// rawConn is a test client speaking bytes over TCP.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// response reads one response (to a request with method) and its body.
func (r *rawConn) response(method string) (*http.Response, string) {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		r.t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("reading response body: %v", err)
	}
	return resp, string(body)
}

// closed reports whether the server ended the connection (EOF or reset)
// within wait.
func (r *rawConn) closed(wait time.Duration) bool {
	r.c.SetReadDeadline(time.Now().Add(wait))
	defer r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := r.br.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestH1RequestSmugglingRejected(t *testing.T) {
	s := startH1(t, "2s", "5s")
	addr := s.Addr("public").String()
	long := strings.Repeat("a", 3000)
	many := strings.Repeat("X-A: b\r\n", 21)
	for _, c := range []struct {
		name, req string
		want      int
	}{
		{"te and cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"cl and te", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400},
		{"differing cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400},
		{"cl list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400},
		{"cl negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
		{"cl plus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400},
		{"cl hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello", 400},
		{"cl empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400},
		{"cl huge", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
		{"te gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"te gzip chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"te chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 501},
		{"te two fields", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
		{"te identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501},
		{"te in http/1.0", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400},
		{"obs-fold tab", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400},
		{"space before colon host", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
		{"name with control", "GET / HTTP/1.1\r\nHost: a\r\nX\x01A: b\r\n\r\n", 400},
		{"name with paren", "GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n", 400},
		{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400},
		{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A b\r\n\r\n", 400},
		{"value with nul", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400},
		{"value with del", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7fc\r\n\r\n", 400},
		{"bare cr in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400},
		{"bare cr ends value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\r\n\r\n", 400},
		{"bare cr in request line", "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"missing host", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"invalid host", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
		{"host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400},
		{"http/0.9", "GET /\r\n\r\n", 400},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"trailing junk", "GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", 400},
		{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
		{"version 1.10", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400},
		{"invalid method", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"relative target", "GET abc HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"asterisk with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"absolute with userinfo", "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"absolute without host", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"non-ascii target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"http/2.0 line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"http/3.0 line", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505},
		{"connect", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501},
		{"request line too long", "GET /" + long + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
		{"header too large", "GET / HTTP/1.1\r\nHost: a\r\nX-A: " + long + "\r\n\r\n", 431},
		{"too many headers", "GET / HTTP/1.1\r\nHost: a\r\n" + many + "\r\n", 431},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := dialRaw(t, addr)
			r.send(c.req)
			resp, body := r.response("GET")
			if resp.StatusCode != c.want {
				t.Errorf("status %d (%q), want %d", resp.StatusCode, body, c.want)
			}
			if !resp.Close || !r.closed(2*time.Second) {
				t.Errorf("connection kept open after a refused request (connection: close sent: %v)", resp.Close)
			}
		})
	}
}

func TestH1AcceptedForms(t *testing.T) {
	s := startH1(t, "2s", "5s")
	addr := s.Addr("public").String()
	for _, c := range []struct {
		name, req          string
		wantPath, wantHost string
		wantBody           string
		wantStatus         int
	}{
		{"same cl twice", "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "/p", "a", "hello", 200},
		{"bare lf lines", "GET /lf HTTP/1.1\nHost: a\nX-A: b\n\n", "/lf", "a", "", 200},
		{"absolute form", "GET http://Example.com:8080/x?y=1 HTTP/1.1\r\nHost: other\r\n\r\n", "/x?y=1", "Example.com:8080", "", 200},
		{"absolute form no path", "GET https://example.com HTTP/1.1\r\nHost: other\r\n\r\n", "/", "example.com", "", 200},
		{"absolute form query only", "GET http://example.com?q HTTP/1.1\r\nHost: other\r\n\r\n", "/?q", "example.com", "", 200},
		{"leading empty line", "\r\nGET /e HTTP/1.1\r\nHost: a\r\n\r\n", "/e", "a", "", 200},
		{"http/1.0 without host", "GET /old HTTP/1.0\r\n\r\n", "/old", "", "", 200},
		{"http/1.1 empty host", "GET /eh HTTP/1.1\r\nHost:\r\n\r\n", "/eh", "", "", 200},
		{"te case-insensitive", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\n\r\n", "/c", "a", "abc", 200},
		{"http/1.2 served as 1.1", "GET /v HTTP/1.2\r\nHost: a\r\n\r\n", "/v", "a", "", 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := dialRaw(t, addr)
			r.send(c.req)
			resp, body := r.response("GET")
			if resp.StatusCode != c.wantStatus {
				t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, c.wantStatus)
			}
			var e h1Echo
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("not an echo: %q", body)
			}
			if e.Path != c.wantPath || e.Host != c.wantHost || e.Body != c.wantBody {
				t.Errorf("upstream saw path %q host %q body %q, want %q %q %q", e.Path, e.Host, e.Body, c.wantPath, c.wantHost, c.wantBody)
			}
		})
	}

	// OPTIONS * is parsed (and then matches no route).
	r := dialRaw(t, addr)
	r.send("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, _ := r.response("OPTIONS"); resp.StatusCode != 404 {
		t.Errorf("OPTIONS *: status %d, want 404 (parsed, no route)", resp.StatusCode)
	}
}

func TestH1ChunkedBodyErrors(t *testing.T) {
	s := startH1(t, "2s", "5s")
	addr := s.Addr("public").String()
	for _, c := range []struct{ name, body string }{
		{"bad size", "zz\r\nhello\r\n0\r\n\r\n"},
		{"size with junk", "5 x\r\nhello\r\n0\r\n\r\n"},
		{"size bare lf", "5\nhello\r\n0\r\n\r\n"},
		{"no crlf after data", "5\r\nhelloX\r\n0\r\n\r\n"},
		{"size overflow", "10000000000000000\r\nhello\r\n0\r\n\r\n"},
		{"trailer obs-fold", "5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := dialRaw(t, addr)
			r.send("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + c.body)
			resp, body := r.response("POST")
			if resp.StatusCode != 400 {
				t.Errorf("status %d (%q), want 400", resp.StatusCode, body)
			}
			if !r.closed(2 * time.Second) {
				t.Error("connection kept open after a malformed chunked body")
			}
		})
	}
}

func TestH1KeepAliveAndPipelining(t *testing.T) {
	s := startH1(t, "2s", "5s")
	addr := s.Addr("public").String()
	l := s.listeners[0]
	before := l.stats.cxTotal.Value()

	r := dialRaw(t, addr)
	// Three requests in one write: answered in order on one connection.
	r.send("GET /one HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc" +
		"POST /three HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n" +
		"GET /direct HTTP/1.1\r\nHost: a\r\n\r\n")
	for _, want := range []struct{ path, body string }{{"/one", ""}, {"/two", "abc"}, {"/three", "xy"}} {
		resp, body := r.response("GET")
		var e h1Echo
		if err := json.Unmarshal([]byte(body), &e); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: status %d body %q", want.path, resp.StatusCode, body)
		}
		if e.Path != want.path || e.Body != want.body {
			t.Errorf("got path %q body %q, want %q %q", e.Path, e.Body, want.path, want.body)
		}
		if resp.Close {
			t.Errorf("%s: connection: close on a keep-alive request", want.path)
		}
	}
	if resp, body := r.response("GET"); body != "direct\n" {
		t.Errorf("fourth pipelined response: %d %q", resp.StatusCode, body)
	}
	// Keep-alive: more requests on the same connection later.
	for i := range 3 {
		r.send(fmt.Sprintf("GET /again/%d HTTP/1.1\r\nHost: a\r\n\r\n", i))
		if resp, _ := r.response("GET"); resp.StatusCode != 200 {
			t.Errorf("request %d on a kept-alive connection: %d", i, resp.StatusCode)
		}
	}
	if n := l.stats.cxTotal.Value() - before; n != 1 {
		t.Errorf("downstream connections accepted: %d, want 1", n)
	}
	// connection: close is honoured.
	r.send("GET /bye HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if resp, _ := r.response("GET"); !resp.Close {
		t.Error("response to connection: close lacks connection: close")
	}
	if !r.closed(2 * time.Second) {
		t.Error("connection open after connection: close")
	}
	waitFor(t, "cx_active back to 0", func() bool { return l.stats.cxActive.Value() == 0 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestH1HTTP10(t *testing.T) {
	streamUp := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part1,")
		w.(http.Flusher).Flush() // no content-length: chunked from the upstream
		io.WriteString(w, "part2")
	}))
	s := startEdge(t, h1Config, "UPSTREAM", streamUp.hostPort(), "HEADTIMEOUT", "2s", "IDLETIMEOUT", "5s")
	addr := s.Addr("public").String()

	// Without keep-alive: one request, then the connection ends.
	r := dialRaw(t, addr)
	r.send("GET /direct HTTP/1.0\r\n\r\n")
	resp, body := r.response("GET")
	if resp.StatusCode != 200 || body != "direct\n" || !resp.Close {
		t.Errorf("HTTP/1.0: %d %q close=%v; want 200, direct, close", resp.StatusCode, body, resp.Close)
	}
	if !r.closed(2 * time.Second) {
		t.Error("HTTP/1.0 connection without keep-alive left open")
	}

	// With keep-alive: the connection carries a second request.
	r = dialRaw(t, addr)
	r.send("GET /direct HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	resp, _ = r.response("GET")
	if resp.Close || resp.Header.Get("Connection") != "keep-alive" {
		t.Errorf("HTTP/1.0 keep-alive: close=%v connection=%q", resp.Close, resp.Header.Get("Connection"))
	}
	// A body of unknown length cannot be chunked for HTTP/1.0: it ends
	// with the connection.
	r.send("GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	raw, err := io.ReadAll(r.br)
	if err != nil {
		t.Fatal(err)
	}
	got := string(raw)
	if !strings.HasSuffix(got, "\r\n\r\npart1,part2") || strings.Contains(strings.ToLower(got), "transfer-encoding") {
		t.Errorf("HTTP/1.0 streamed response:\n%s\nwant a close-delimited body part1,part2", got)
	}
}

func TestH1ExpectContinue(t *testing.T) {
	s := startH1(t, "2s", "5s")
	addr := s.Addr("public").String()

	// The 100 goes out when the core reads the body, not before.
	r := dialRaw(t, addr)
	r.send("POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	line, err := r.br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("first line %q (%v), want 100 Continue", line, err)
	}
	if blank, _ := r.br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("100 Continue not followed by an empty line: %q", blank)
	}
	r.send("hello")
	resp, body := r.response("POST")
	var e h1Echo
	json.Unmarshal([]byte(body), &e)
	if resp.StatusCode != 200 || e.Body != "hello" || e.Header.Get("Expect") != "" {
		t.Errorf("after 100 Continue: %d, upstream saw body %q expect %q", resp.StatusCode, e.Body, e.Header.Get("Expect"))
	}
	if resp.Close {
		t.Error("connection: close after a 100-continue exchange")
	}

	// A route that never reads the body: no 100, and the connection ends
	// (the client may or may not send the body).
	r = dialRaw(t, addr)
	r.send("POST /direct HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	resp, body = r.response("POST")
	if resp.StatusCode != 200 || body != "direct\n" || !resp.Close {
		t.Errorf("unread body with expect: %d %q close=%v; want 200, direct, close", resp.StatusCode, body, resp.Close)
	}

	// Go's client waits for the 100 before sending.
	tr := &http.Transport{ExpectContinueTimeout: 5 * time.Second}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("POST", s.url("public", "/go"), strings.NewReader("from go"))
	req.Header.Set("Expect", "100-continue")
	start := time.Now()
	gresp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	e = h1Echo{}
	json.NewDecoder(gresp.Body).Decode(&e)
	gresp.Body.Close()
	if e.Body != "from go" || time.Since(start) > 3*time.Second {
		t.Errorf("Go client with expect: body %q after %v", e.Body, time.Since(start))
	}
}

func TestH1ChunkedTrailersReachUpstream(t *testing.T) {
	s := startH1(t, "2s", "5s")
	r := dialRaw(t, s.Addr("public").String())
	r.send("POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
		"4\r\nwiki\r\n5;name=value\r\npedia\r\n0\r\nX-Sum: 42\r\nContent-Length: 7\r\n\r\n")
	resp, body := r.response("POST")
	var e h1Echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if e.Body != "wikipedia" || !e.Chunked || e.Length != -1 {
		t.Errorf("upstream saw body %q chunked %v length %d, want wikipedia, chunked", e.Body, e.Chunked, e.Length)
	}
	if got := e.Trailer.Get("X-Sum"); got != "42" {
		t.Errorf("upstream trailer X-Sum = %q, want 42 (trailers %v)", got, e.Trailer)
	}
	if got := e.Trailer.Get("Content-Length"); got != "" {
		t.Errorf("framing field in trailers forwarded: content-length %q", got)
	}
}

func TestH1UnreadBodyDiscarded(t *testing.T) {
	s := startH1(t, "2s", "5s")
	r := dialRaw(t, s.Addr("public").String())
	// The direct response does not read the body; a small one is dropped
	// and the connection carries on.
	r.send("POST /direct HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789")
	r.send("POST /direct HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	r.send("GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
	for i, want := range []string{"direct\n", "direct\n"} {
		if resp, body := r.response("POST"); body != want || resp.Close {
			t.Errorf("response %d: %q close=%v", i, body, resp.Close)
		}
	}
	if resp, body := r.response("GET"); resp.StatusCode != 200 || !strings.Contains(body, `"/after"`) {
		t.Errorf("request after discarded bodies: %d %q", resp.StatusCode, body)
	}
	// A large unread body is not worth reading: the connection ends.
	r = dialRaw(t, s.Addr("public").String())
	r.send(fmt.Sprintf("POST /direct HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", 1<<20))
	if _, body := r.response("POST"); body != "direct\n" {
		t.Errorf("large body: %q", body)
	}
	if !r.closed(2 * time.Second) {
		t.Error("connection kept with 1 MiB of unread body")
	}
}

func TestH1Timeouts(t *testing.T) {
	s := startH1(t, "300ms", "400ms")
	addr := s.Addr("public").String()

	// Slowloris on a kept-alive connection: the second head never ends.
	r := dialRaw(t, addr)
	r.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
	r.response("GET")
	r.send("GET /b HTTP/1.1\r\nHost: a\r\n")
	start := time.Now()
	if !r.closed(3*time.Second) || time.Since(start) > 2*time.Second {
		t.Errorf("incomplete head: connection closed after %v, want ~300ms", time.Since(start))
	}
	// A head trickled in byte by byte is bounded too.
	r = dialRaw(t, addr)
	start = time.Now()
	for _, b := range []byte("GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ") {
		if _, err := r.c.Write([]byte{b}); err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !r.closed(3*time.Second) || time.Since(start) > 3*time.Second {
		t.Errorf("trickled head: connection closed after %v", time.Since(start))
	}

	// Idle: closed between requests after timeouts.idle.
	r = dialRaw(t, addr)
	r.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
	r.response("GET")
	start = time.Now()
	if !r.closed(3 * time.Second) {
		t.Fatal("idle connection not closed")
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Errorf("idle connection closed after %v, want ~400ms", d)
	}
}

func TestH1IdleBuffersReleased(t *testing.T) {
	// timeouts.idle beyond h1IdleRelease: the connection gives its buffers
	// back while idle and still serves the next request whole.
	s := startH1(t, "2s", "1800ms")
	r := dialRaw(t, s.Addr("public").String())
	r.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
	r.response("GET")
	time.Sleep(h1IdleRelease + 200*time.Millisecond)
	r.send("POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody")
	resp, body := r.response("POST")
	if resp.StatusCode != 200 || !strings.Contains(body, `"Body":"body"`) {
		t.Errorf("request after buffers were released: %d %q", resp.StatusCode, body)
	}
	start := time.Now()
	if !r.closed(4*time.Second) || time.Since(start) < time.Second {
		t.Errorf("idle close after %v, want ~1.8s", time.Since(start))
	}
}

func TestH1AbortedResponseIsTruncated(t *testing.T) {
	cut := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, _ := http.NewResponseController(w).Hijack()
		defer c.Close()
		if r.URL.Path == "/length" {
			brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
		} else {
			brw.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		}
		brw.Flush()
	}))
	s := startEdge(t, h1Config, "UPSTREAM", cut.hostPort(), "HEADTIMEOUT", "2s", "IDLETIMEOUT", "5s")

	for _, p := range []string{"/length", "/chunked"} {
		resp, err := client.Get(s.url("public", p))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: client read %q with error %v, want a truncated body (unexpected EOF)", p, body, err)
		}
	}
	// On the wire: the chunked body has no terminating chunk.
	r := dialRaw(t, s.Addr("public").String())
	r.send("GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n")
	raw, _ := io.ReadAll(r.br)
	if !bytes.HasSuffix(raw, []byte("5\r\nhello\r\n")) {
		t.Errorf("aborted chunked response on the wire:\n%q\nwant it to end after the last data chunk", raw)
	}
}

func TestH1UpgradeKeepsBufferedBytes(t *testing.T) {
	// An upstream that switches protocols and then echoes raw bytes.
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
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
				io.Copy(c, br)
			}()
		}
	}()
	s := startEdge(t, h1Config, "UPSTREAM", ln.Addr().String(), "HEADTIMEOUT", "2s", "IDLETIMEOUT", "5s")
	r := dialRaw(t, s.Addr("public").String())
	// The client does not wait for the 101 before sending its first bytes.
	r.send("GET /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly bytes;")
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade response %v %v", resp, err)
	}
	r.send("later bytes")
	got := make([]byte, len("early bytes;later bytes"))
	if _, err := io.ReadFull(r.br, got); err != nil || string(got) != "early bytes;later bytes" {
		t.Errorf("echo through the tunnel: %q %v", got, err)
	}
}

func TestH1CurlAndTLS(t *testing.T) {
	ca := newTestCA(t)
	crt, key := ca.issue(t, "edge", "127.0.0.1")
	up := newUpstream(t, http.HandlerFunc(h1EchoHandler))
	s := startEdge(t, strings.Replace(tlsConfig, "        - {cert_file: API_CRT, key_file: API_KEY}\n", "", 1),
		"DEFAULT_CRT", crt, "DEFAULT_KEY", key, "UPSTREAM", up.hostPort())

	// HTTP/1.1 over TLS (ALPN http/1.1) goes through edge's own loop.
	resp, err := ca.client(false).Get("https://" + s.Addr("public").String() + "/tls1")
	if err != nil {
		t.Fatal(err)
	}
	var e h1Echo
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.ProtoMajor != 1 || resp.TLS == nil || e.Header.Get("X-Forwarded-Proto") != "https" || e.Path != "/tls1" {
		t.Errorf("HTTP/1.1 over TLS: proto %d, x-forwarded-proto %q, path %q", resp.ProtoMajor, e.Header.Get("X-Forwarded-Proto"), e.Path)
	}

	// Cleartext HTTP on the TLS port gets a readable refusal.
	r := dialRaw(t, s.Addr("public").String())
	r.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body := r.response("GET"); resp.StatusCode != 400 || !strings.Contains(body, "HTTPS") {
		t.Errorf("HTTP on the TLS port: %d %q, want 400 naming HTTPS", resp.StatusCode, body)
	}

	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	plain := startH1(t, "2s", "5s")
	tlsURL := "https://" + s.Addr("public").String() + "/curl"
	for _, c := range []struct {
		args []string
		want string
	}{
		// edge answers HTTP/1.0 requests with HTTP/1.1 responses (RFC 9110 §6.2).
		{[]string{"--http1.0", plain.url("public", "/curl")}, "1.1 200"},
		{[]string{"--http1.1", plain.url("public", "/curl")}, "1.1 200"},
		{[]string{"--http2-prior-knowledge", plain.url("public", "/curl")}, "2 200"},
		{[]string{"--http1.1", "-H", "Expect: 100-continue", "--data-binary", "payload", plain.url("public", "/curl")}, "1.1 200"},
		{[]string{"--http1.1", "--cacert", ca.file(), tlsURL}, "1.1 200"},
		{[]string{"--http2", "--cacert", ca.file(), tlsURL}, "2 200"},
	} {
		args := append([]string{"-sS", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "--max-time", "10"}, c.args...)
		out, err := exec.Command("curl", args...).CombinedOutput()
		if err != nil || string(out) != c.want {
			t.Errorf("curl %v: %q %v, want %q", c.args, out, err, c.want)
		}
	}
}

func TestH1ConnectionStats(t *testing.T) {
	s := startH1(t, "2s", "5s")
	l := s.listeners[0]
	before := l.stats.cxTotal.Value()
	h2c := &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(_ context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return net.Dial(network, addr)
		}}}
	for _, c := range []*http.Client{client, h2c} {
		resp, err := c.Get(s.url("public", "/direct"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if got := l.stats.cxTotal.Value() - before; got != 2 {
		t.Errorf("cx_total grew by %d, want 2 (one HTTP/1.1, one h2c)", got)
	}
	if got := l.stats.cxActive.Value(); got != 2 {
		t.Errorf("cx_active = %d with two open connections, want 2", got)
	}
	client.CloseIdleConnections()
	h2c.CloseIdleConnections()
	waitFor(t, "cx_active back to 0", func() bool { return l.stats.cxActive.Value() == 0 })
}

// startEdgeCtl serves yaml like startEdge, but the caller decides when to
// shut down: stop begins the graceful shutdown (drain times both drain),
// and the returned channel yields Run's result.
func startEdgeCtl(t *testing.T, yaml string, drain time.Duration, vars ...string) (s *Server, stop func(), done <-chan error) {
	t.Helper()
	s, done = runEdge(t, yaml, Options{DrainTime: drain, ShutdownTime: drain}, vars...)
	return s, s.Quit, done
}

// gate is an upstream whose /slow requests wait until released.
type gate struct {
	*countingServer
	arrived chan struct{}
	release chan struct{}
}

func newGate(t *testing.T) *gate {
	g := &gate{arrived: make(chan struct{}, 10), release: make(chan struct{})}
	g.countingServer = newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/slow") {
			g.arrived <- struct{}{}
			select {
			case <-g.release:
			case <-r.Context().Done():
				return
			}
		}
		io.WriteString(w, "done "+r.URL.Path)
	}))
	return g
}

func TestH1GracefulShutdown(t *testing.T) {
	g := newGate(t)
	s, stop, done := startEdgeCtl(t, h1Config, 5*time.Second, "UPSTREAM", g.hostPort(), "HEADTIMEOUT", "2s", "IDLETIMEOUT", "30s")
	addr := s.Addr("public").String()

	busy := dialRaw(t, addr)
	busy.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-g.arrived
	idle := dialRaw(t, addr)
	idle.send("GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, body := idle.response("GET"); body != "done /fast" {
		t.Fatalf("idle connection's request: %q", body)
	}

	stop()
	start := time.Now()
	if !idle.closed(2 * time.Second) {
		t.Error("idle connection not closed at once on shutdown")
	} else if d := time.Since(start); d > time.Second {
		t.Errorf("idle connection closed %v after shutdown began", d)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(c, "GET /new HTTP/1.1\r\nHost: a\r\n\r\n")
		if n, _ := c.Read(make([]byte, 1)); n > 0 {
			t.Error("a connection made after shutdown began was served")
		}
		c.Close()
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}

	close(g.release)
	resp, body := busy.response("GET")
	if body != "done /slow" || !resp.Close {
		t.Errorf("in-flight request: %q close=%v; want it completed with connection: close", body, resp.Close)
	}
	if !busy.closed(2 * time.Second) {
		t.Error("busy connection not closed after its response")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Error("Run did not return after the last request finished")
	}
}

func TestH1ShutdownDrainExpires(t *testing.T) {
	g := newGate(t)
	defer close(g.release)
	s, stop, done := startEdgeCtl(t, h1Config, 300*time.Millisecond, "UPSTREAM", g.hostPort(), "HEADTIMEOUT", "2s", "IDLETIMEOUT", "30s")
	busy := dialRaw(t, s.Addr("public").String())
	busy.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-g.arrived
	stop()
	start := time.Now()
	if !busy.closed(3 * time.Second) {
		t.Error("in-flight connection not closed when the drain time ran out")
	}
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Error("Run did not return after the drain time")
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("forced close after %v, before the 300ms drain time", d)
	}
}

func TestH2GoAwayOnShutdown(t *testing.T) {
	g := newGate(t)
	s, stop, done := startEdgeCtl(t, h1Config, 5*time.Second, "UPSTREAM", g.hostPort(), "HEADTIMEOUT", "2s", "IDLETIMEOUT", "30s")
	c, err := net.Dial("tcp", s.Addr("public").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/slow"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	<-g.arrived

	stop()
	var goAway, gotData, ended bool
	for !ended {
		f, err := fr.ReadFrame()
		if err != nil {
			if !goAway {
				t.Fatalf("connection ended (%v) without GOAWAY", err)
			}
			break
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			if !goAway {
				goAway = true
				if f.ErrCode != http2.ErrCodeNo || f.LastStreamID != 1 {
					t.Errorf("GOAWAY code %v last stream %d, want NO_ERROR and 1", f.ErrCode, f.LastStreamID)
				}
				close(g.release) // now let the in-flight stream finish
			}
		case *http2.DataFrame:
			if f.StreamID == 1 {
				gotData = gotData || bytes.Contains(f.Data(), []byte("done /slow"))
				ended = f.StreamEnded()
			}
		}
	}
	if !goAway || !gotData {
		t.Errorf("GOAWAY seen %v, in-flight stream completed %v", goAway, gotData)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Run did not return after the HTTP/2 connection drained")
	}
}

func TestH1BodyStillReadWhenResponseEnds(t *testing.T) {
	// An HTTP/2 upstream answers before reading the body: x/net's writer
	// goroutine is still blocked reading the client's body when the core
	// is done. The connection must end under it rather than be reused.
	h2c := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "early")
	}), Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go h2c.Serve(ln)
	t.Cleanup(func() { h2c.Close() })
	cfg := strings.Replace(h1Config, `endpoints: ["UPSTREAM"]`, `endpoints: ["UPSTREAM"]`+"\n    protocol: http2", 1)
	s := startEdge(t, cfg, "UPSTREAM", ln.Addr().String(), "HEADTIMEOUT", "2s", "IDLETIMEOUT", "5s")

	r := dialRaw(t, s.Addr("public").String())
	r.send("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly ten b")
	resp, body := r.response("POST")
	if resp.StatusCode != 200 || body != "early" {
		t.Errorf("got %d %q, want 200 early", resp.StatusCode, body)
	}
	if !r.closed(3 * time.Second) {
		t.Error("connection kept while the body was still being read")
	}
}

func TestH1ClientCertificateReachesHeaderPolicy(t *testing.T) {
	// HTTP/1.1 over mutual TLS: the verified client certificate becomes
	// x-forwarded-client-cert, as on HTTP/2.
	ca := newTestCA(t)
	crt, key := ca.issue(t, "edge", "127.0.0.1")
	clientCrt, clientKey := ca.issue(t, "client", "pop.edge.internal")
	up := newUpstream(t, http.HandlerFunc(h1EchoHandler))
	cfg := strings.Replace(tlsConfig, "        - {cert_file: API_CRT, key_file: API_KEY}\n",
		"      client_auth: {mode: require, ca_file: CAFILE}\n", 1)
	s := startEdge(t, cfg, "DEFAULT_CRT", crt, "DEFAULT_KEY", key, "CAFILE", ca.file(), "UPSTREAM", up.hostPort())
	cert, err := tls.LoadX509KeyPair(clientCrt, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{cert}},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + s.Addr("public").String() + "/mtls")
	if err != nil {
		t.Fatal(err)
	}
	var e h1Echo
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.ProtoMajor != 1 || !strings.Contains(e.Header.Get("X-Forwarded-Client-Cert"), "DNS=pop.edge.internal") {
		t.Errorf("HTTP/%d: upstream saw x-forwarded-client-cert %q, want the client's DNS SAN", resp.ProtoMajor, e.Header.Get("X-Forwarded-Client-Cert"))
	}
}

// TestH1ClientGoneCancelsUpstream: a client that goes away while its
// request waits for a slow upstream has the upstream request canceled
// within about h1WatchAfter, not when the upstream finally answers.
func TestH1ClientGoneCancelsUpstream(t *testing.T) {
	canceled := make(chan time.Duration, 1)
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		select {
		case <-r.Context().Done():
			canceled <- time.Since(start)
		case <-time.After(10 * time.Second):
			io.WriteString(w, "late")
		}
	}))
	s := startEdge(t, h1Config, "UPSTREAM", up.hostPort(), "HEADTIMEOUT", "2s", "IDLETIMEOUT", "30s")
	c := dialRaw(t, s.Addr("public").String())
	c.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	c.c.Close()
	select {
	case d := <-canceled:
		t.Logf("upstream request canceled %s after it arrived", d)
		if d > 3*time.Second {
			t.Errorf("canceled only after %s", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request went on after the client left")
	}
}

// TestH1PipelinedRequestDuringWatch: a request pipelined behind a slow one
// arrives while edge watches the connection; its first byte, read by the
// watch, is not lost.
func TestH1PipelinedRequestDuringWatch(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(3 * h1WatchAfter)
		}
		io.WriteString(w, "answer "+r.URL.Path)
	}))
	s := startEdge(t, h1Config, "UPSTREAM", up.hostPort(), "HEADTIMEOUT", "2s", "IDLETIMEOUT", "30s")
	c := dialRaw(t, s.Addr("public").String())
	c.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(2 * h1WatchAfter) // the watch is reading now
	c.send("GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
	for _, want := range []string{"answer /slow", "answer /next"} {
		resp, body := c.response("GET")
		if resp.StatusCode != 200 || body != want {
			t.Errorf("got %d %q, want 200 %q", resp.StatusCode, body, want)
		}
	}
}

// TestH1HandoffAfterPipelinedRequest: during a hot restart drain, a
// connection busy with a slow request, with the next request pipelined
// behind it (its first byte read by the client watch), answers both
// without connection: close and is then handed to the next process, which
// serves its third request.
func TestH1HandoffAfterPipelinedRequest(t *testing.T) {
	g := newGate(t)
	vars := []string{"UPSTREAM", g.hostPort(), "HEADTIMEOUT", "2s", "IDLETIMEOUT", "30s"}
	old, _ := runEdge(t, h1Config, Options{DrainTime: 5 * time.Second, ShutdownTime: 5 * time.Second}, vars...)
	next := startEdge(t, h1Config, vars...)
	handedOff := make(chan struct{}, 1)
	handoff := func(listener string, c net.Conn) bool {
		f, err := c.(*net.TCPConn).File()
		if err != nil {
			t.Errorf("dup: %v", err)
			return false
		}
		defer f.Close()
		nc, err := net.FileConn(f)
		if err != nil {
			t.Errorf("FileConn: %v", err)
			return false
		}
		if err := next.Adopt(listener, nc); err != nil {
			t.Errorf("Adopt: %v", err)
			nc.Close()
			return false
		}
		handedOff <- struct{}{}
		return true
	}

	c := dialRaw(t, old.Addr("public").String())
	c.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-g.arrived
	time.Sleep(2 * h1WatchAfter) // the watch reads the connection now
	c.send("GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	old.Drain(handoff)
	close(g.release)
	for _, want := range []string{"done /slow", "done /next"} {
		resp, body := c.response("GET")
		if body != want || resp.Close {
			t.Errorf("got %q (close %v), want %q on a connection kept for the hand-over", body, resp.Close, want)
		}
	}
	select {
	case <-handedOff:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection was not handed over")
	}
	c.send("GET /third HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, body := c.response("GET"); body != "done /third" {
		t.Errorf("third request: %q", body)
	}
	if n, _ := next.Stats().Lookup("edge_http_downstream_rq_total", statsLabel("listener", "public")); n != 1 {
		t.Errorf("the next server served %v requests, want the third one", n)
	}
}
