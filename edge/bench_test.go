package edge

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// rawUpstream is a minimal keep-alive HTTP/1.1 origin answering every
// request with a fixed 128-byte body, so benchmarks measure edge, not the
// origin.
func rawUpstream(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	body := strings.Repeat("x", 128)
	resp := []byte("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 128\r\n\r\n" + body)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					// Read a request head (the benchmark sends no bodies).
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// discardWriter is a ResponseWriter that keeps nothing, for measuring the
// forwarding core without a downstream codec.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) Flush()                      {}

// BenchmarkForwardingCore runs a request through the listener's handler
// (header policy, routing, upstream round trip on a pooled connection,
// response streaming) with a no-op downstream writer.
func BenchmarkForwardingCore(b *testing.B) {
	up := rawUpstream(b)
	s := startEdge(b, strings.Replace(basicConfig, "UPSTREAM", up, 1))
	l := s.listeners[0]
	req, _ := http.NewRequest("GET", "http://example.com/bench", nil)
	req.RequestURI = "/bench"
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("User-Agent", "bench")
	req.Header.Set("Accept", "*/*")
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		l.ServeHTTP(w, req)
		if w.status != 200 {
			b.Fatalf("status %d", w.status)
		}
	}
}

// BenchmarkProxyHTTP1 measures a whole proxied keep-alive HTTP/1.1 request
// over loopback: client -> edge (its HTTP/1.1 loop) -> upstream and back.
// The client is a raw connection, so allocations counted are edge's.
func BenchmarkProxyHTTP1(b *testing.B) {
	up := rawUpstream(b)
	s := startEdge(b, strings.Replace(basicConfig, "UPSTREAM", up, 1))
	c, err := net.Dial("tcp", s.Addr("public").String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	reqBytes := []byte("GET /bench HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(reqBytes); err != nil {
			b.Fatal(err)
		}
		if err := readResponse(br); err != nil {
			b.Fatal(err)
		}
	}
}

// readResponse consumes one response with a content-length body.
func readResponse(br *bufio.Reader) error {
	n := -1
	status := true
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if status {
			if !bytes.HasPrefix(line, []byte("HTTP/1.1 200")) {
				return fmt.Errorf("status line %q", line)
			}
			status = false
			continue
		}
		if len(line) <= 2 {
			break
		}
		if i := bytes.IndexByte(line, ':'); i > 0 && strings.EqualFold(string(line[:i]), "content-length") {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(line[i+1:])))
		}
	}
	if n < 0 {
		return fmt.Errorf("no content-length")
	}
	_, err := br.Discard(n)
	return err
}

var _ io.Writer = (*discardWriter)(nil)
