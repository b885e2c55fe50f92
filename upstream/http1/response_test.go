package http1

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/edgeproxy/edge/edge/message"
	"strings"
	"testing"
)

// serveOnce reads one request and writes resp, then closes.
func serveOnce(resp string) func(net.Conn, *bufio.Reader) {
	return func(c net.Conn, br *bufio.Reader) {
		if _, _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, resp)
	}
}

func TestResponseParsing(t *testing.T) {
	big := strings.Repeat("x", 70<<10)
	many := strings.Repeat("x-f: v\r\n", 300)
	tests := []struct {
		name       string
		method     string
		resp       string
		wantStatus int
		wantHeader string // fieldsString of resp.Header, if not empty
		wantBody   string
		wantCL     int64
		wantTrail  string
		wantErr    Kind // RoundTrip error
		wantRdErr  Kind // body read error
	}{
		{name: "content-length", resp: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", wantStatus: 200, wantBody: "hello", wantCL: 5},
		{name: "names lower-cased, order kept, values trimmed",
			resp:       "HTTP/1.1 201 Created\r\nX-B: 2 \r\nX-A:\t1\r\nSet-Cookie: a=1\r\nSET-COOKIE: b=2\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n",
			wantStatus: 201, wantHeader: "x-b: 2\nx-a: 1\nset-cookie: a=1\nset-cookie: b=2\nx-empty: \ncontent-length: 0\n"},
		{name: "no reason phrase", resp: "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", wantStatus: 200, wantBody: "ok", wantCL: 2},
		{name: "bare LF line ends", resp: "HTTP/1.1 200 OK\nContent-Length: 2\nX-A: b\n\nok", wantStatus: 200, wantBody: "ok", wantCL: 2},
		{name: "obs-text in value", resp: "HTTP/1.1 200 OK\r\nX-A: caf\xe9\r\nContent-Length: 0\r\n\r\n", wantStatus: 200, wantHeader: "x-a: caf\xe9\ncontent-length: 0\n"},
		{name: "chunked with extensions and trailers",
			resp:       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6 ; a\r\n world\r\n0\r\nX-Trailer: t1\r\nGrpc-Status: 0\r\n\r\n",
			wantStatus: 200, wantBody: "hello world", wantCL: -1, wantTrail: "x-trailer: t1\ngrpc-status: 0\n"},
		{name: "chunked upper-case hex and token case", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n", wantStatus: 200, wantBody: "0123456789", wantCL: -1},
		{name: "HEAD has no body", method: "HEAD", resp: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", wantStatus: 200},
		{name: "204 has no body", resp: "HTTP/1.1 204 No Content\r\n\r\n", wantStatus: 204},
		{name: "304 has no body", resp: "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", wantStatus: 304},
		{name: "close-delimited", resp: "HTTP/1.1 200 OK\r\n\r\nuntil the end", wantStatus: 200, wantBody: "until the end", wantCL: -1},
		{name: "HTTP/1.0 close-delimited", resp: "HTTP/1.0 200 OK\r\n\r\nold", wantStatus: 200, wantBody: "old", wantCL: -1},
		{name: "identical repeated content-length", resp: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", wantStatus: 200, wantBody: "ok", wantCL: 2},
		{name: "identical content-length list", resp: "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", wantStatus: 200, wantBody: "ok", wantCL: 2},
		{name: "interim 100 skipped without callback", resp: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", wantStatus: 200, wantBody: "ok", wantCL: 2},

		{name: "conflicting content-length", resp: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!", wantErr: Protocol},
		{name: "conflicting content-length list", resp: "HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok!", wantErr: Protocol},
		{name: "content-length not a number", resp: "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", wantErr: Protocol},
		{name: "content-length empty", resp: "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\nok", wantErr: Protocol},
		{name: "content-length overflow", resp: "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\nok", wantErr: Protocol},
		{name: "transfer-encoding and content-length", resp: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", wantErr: Protocol},
		{name: "unsupported transfer-encoding", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", wantErr: Protocol},
		{name: "chunked twice", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", wantErr: Protocol},
		{name: "transfer-encoding in HTTP/1.0", resp: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", wantErr: Protocol},
		{name: "obs-fold", resp: "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n", wantErr: Protocol},
		{name: "space before colon", resp: "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", wantErr: Protocol},
		{name: "no colon", resp: "HTTP/1.1 200 OK\r\nX-A\r\n\r\n", wantErr: Protocol},
		{name: "empty name", resp: "HTTP/1.1 200 OK\r\n: v\r\n\r\n", wantErr: Protocol},
		{name: "NUL in value", resp: "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n", wantErr: Protocol},
		{name: "bare CR in value", resp: "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n", wantErr: Protocol},
		{name: "oversized head", resp: "HTTP/1.1 200 OK\r\nX-Big: " + big + "\r\n\r\n", wantErr: Protocol},
		{name: "too many fields", resp: "HTTP/1.1 200 OK\r\n" + many + "\r\n", wantErr: Protocol},
		{name: "status code too long", resp: "HTTP/1.1 2000 OK\r\n\r\n", wantErr: Protocol},
		{name: "status code not digits", resp: "HTTP/1.1 2x0 OK\r\n\r\n", wantErr: Protocol},
		{name: "status below 100", resp: "HTTP/1.1 099 Odd\r\n\r\n", wantErr: Protocol},
		{name: "HTTP/2.0 status line", resp: "HTTP/2.0 200 OK\r\n\r\n", wantErr: Protocol},
		{name: "not HTTP", resp: "ICY 200 OK\r\n\r\n", wantErr: Protocol},
		{name: "101 without upgrade request", resp: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", wantErr: Protocol},
		{name: "closed before any response", resp: "", wantErr: Reset},
		{name: "truncated head", resp: "HTTP/1.1 200 OK\r\nContent-Le", wantErr: Reset},

		{name: "truncated content-length body", resp: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", wantStatus: 200, wantBody: "hello", wantCL: 10, wantRdErr: Reset},
		{name: "truncated chunked body", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", wantStatus: 200, wantBody: "hel", wantCL: -1, wantRdErr: Reset},
		{name: "chunked without last chunk", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", wantStatus: 200, wantBody: "hello", wantCL: -1, wantRdErr: Reset},
		{name: "bad chunk size", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", wantStatus: 200, wantCL: -1, wantRdErr: Protocol},
		{name: "chunk size overflow", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\nhello\r\n0\r\n\r\n", wantStatus: 200, wantCL: -1, wantRdErr: Protocol},
		{name: "chunk data too long", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n", wantStatus: 200, wantBody: "he", wantCL: -1, wantRdErr: Protocol},
		{name: "bad trailer", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX A: b\r\n\r\n", wantStatus: 200, wantCL: -1, wantRdErr: Protocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, serveOnce(tt.resp))
			p := newTestPool(t, Options{Addr: s.addr()})
			method := tt.method
			if method == "" {
				method = "GET"
			}
			resp, err := p.RoundTrip(testCtx(t), newReq(method, "/"))
			if tt.wantErr != 0 {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("got status %d, want a %v error", resp.Status, tt.wantErr)
				}
				if k, sent := kindOf(t, err); k != tt.wantErr || !sent {
					t.Fatalf("got %v sent=%v (%v), want %v sent=true", k, sent, err, tt.wantErr)
				}
				if a, i := p.Stats(); a != 0 || i != 0 {
					t.Errorf("Stats after error: got %d %d, want 0 0", a, i)
				}
				return
			}
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			defer resp.Body.Close()
			if resp.Status != tt.wantStatus {
				t.Errorf("status: got %d, want %d", resp.Status, tt.wantStatus)
			}
			if resp.ContentLength != tt.wantCL {
				t.Errorf("ContentLength: got %d, want %d", resp.ContentLength, tt.wantCL)
			}
			if tt.wantHeader != "" {
				if got := fieldsString(&resp.Header); got != tt.wantHeader {
					t.Errorf("header:\ngot  %q\nwant %q", got, tt.wantHeader)
				}
			}
			body, rerr := io.ReadAll(resp.Body)
			if string(body) != tt.wantBody {
				t.Errorf("body: got %q, want %q", body, tt.wantBody)
			}
			if tt.wantRdErr != 0 {
				if rerr == nil {
					t.Fatalf("body read: got no error, want %v", tt.wantRdErr)
				}
				if k, _ := kindOf(t, rerr); k != tt.wantRdErr {
					t.Errorf("body read: got %v (%v), want %v", k, rerr, tt.wantRdErr)
				}
				if _, err := resp.Body.Read(make([]byte, 1)); !errors.Is(err, rerr) {
					t.Errorf("second read: got %v, want the same error %v", err, rerr)
				}
			} else if rerr != nil {
				t.Errorf("body read: %v", rerr)
			}
			if got := fieldsString(&resp.Trailer); got != tt.wantTrail {
				t.Errorf("trailer: got %q, want %q", got, tt.wantTrail)
			}
		})
	}
}

// The last bytes of a body come with io.EOF where the framing allows, so
// the connection is back in the pool without an extra Read.
func TestEOFWithLastBytes(t *testing.T) {
	tests := []struct{ name, resp, body string }{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, serveFixed(tt.resp))
			p := newTestPool(t, Options{Addr: s.addr()})
			resp, err := p.RoundTrip(testCtx(t), newReq("GET", "/"))
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			n, err := resp.Body.Read(buf)
			if string(buf[:n]) != tt.body || err != io.EOF {
				t.Errorf("Read: got %q, %v; want %q, io.EOF", buf[:n], err, tt.body)
			}
			if a, i := p.Stats(); a != 0 || i != 1 {
				t.Errorf("Stats before Close: got %d %d, want 0 1", a, i)
			}
			resp.Body.Close()
			if _, err := resp.Body.Read(buf); err == nil {
				t.Error("Read after Close: got no error")
			}
		})
	}
}

func TestInformational(t *testing.T) {
	s := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.Header.Get("Expect") != "100-continue" {
			io.WriteString(c, "HTTP/1.1 417 Expectation Failed\r\ncontent-length: 0\r\n\r\n")
			return
		}
		// The client sends the body without waiting for 100 Continue.
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
		io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\nLink: </app.js>; rel=preload\r\n\r\n")
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n")
		c.Write(body)
	})
	p := newTestPool(t, Options{Addr: s.addr()})
	type info struct {
		status int
		fields string
	}
	var got []info
	req := newReq("POST", "/", "expect", "100-continue")
	req.Body, req.ContentLength = strings.NewReader("payload"), 7
	req.OnInformational = func(status int, h *message.Header) {
		got = append(got, info{status, fieldsString(h)})
	}
	resp, body := mustDo(t, p, testCtx(t), req)
	want := []info{
		{100, ""},
		{103, "link: </style.css>; rel=preload\nlink: </app.js>; rel=preload\n"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("informational responses:\ngot  %+v\nwant %+v", got, want)
	}
	if resp.Status != 200 || body != "payload" || resp.Header.Len() != 1 {
		t.Errorf("final response: got %d %q with %d fields, want 200 %q with 1 field", resp.Status, body, resp.Header.Len(), "payload")
	}
}

func TestUpgrade(t *testing.T) {
	s := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil || req.Header.Get("Upgrade") != "echo" {
			return
		}
		// The 101 head and the first upgraded bytes in one write.
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello from server|")
		io.Copy(c, br)
	})
	var hooks hookCounts
	o := Options{Addr: s.addr()}
	hooks.set(&o)
	p := newTestPool(t, o)
	resp, err := p.RoundTrip(testCtx(t), newReq("GET", "/ws", "upgrade", "echo", "connection", "upgrade"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 101 || resp.Upgraded == nil {
		t.Fatalf("got status %d, Upgraded %v; want 101 and a connection", resp.Status, resp.Upgraded)
	}
	if n, err := resp.Body.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("101 body: got %d, %v; want 0, EOF", n, err)
	}
	resp.Body.Close()
	up := resp.Upgraded
	up.(net.Conn).SetDeadline(time.Now().Add(5 * time.Second))
	want := "hello from server|"
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(up, buf); err != nil || string(buf) != want {
		t.Fatalf("first upgraded bytes: got %q, %v; want %q", buf, err, want)
	}
	for _, msg := range []string{"ping", strings.Repeat("z", 100<<10)} {
		go up.Write([]byte(msg))
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(up, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo of %d bytes: got %d bytes, %v", len(msg), len(buf), err)
		}
	}
	if a, i := p.Stats(); a != 1 || i != 0 {
		t.Errorf("Stats while upgraded: got %d %d, want 1 0", a, i)
	}
	if err := up.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Errorf("CloseWrite: %v", err)
	}
	if n, err := up.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("read after half-close: got %d, %v; want server's EOF", n, err)
	}
	up.Close()
	up.Close()
	if a, i := p.Stats(); a != 0 || i != 0 {
		t.Errorf("Stats after Close: got %d %d, want 0 0", a, i)
	}
	if o, c := hooks.open.Load(), hooks.close.Load(); o != 1 || c != 1 {
		t.Errorf("hooks: opened %d closed %d, want 1 1", o, c)
	}
}
