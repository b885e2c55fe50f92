package http1

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/edge/message"
)

// benchResp is the benchmark server's response: a small head and a
// 128-byte body.
var benchResp = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ndate: Sat, 22 Nov 2026 03:00:00 GMT\r\ncontent-length: 128\r\n\r\n" + strings.Repeat("x", 128)

// benchServer is a minimal keep-alive server that allocates nothing: for
// each request head (requests have no body) it writes resp.
func benchServer(b testing.TB, resp string) *rawServer {
	return newRawServer(b, func(c net.Conn, br *bufio.Reader) {
		resp := []byte(resp)
		c.SetDeadline(time.Time{})
		for {
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
	})
}

func benchRoundTrip(b *testing.B, p *Pool, ctx context.Context, req *message.Request, buf []byte) {
	resp, err := p.RoundTrip(ctx, req)
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.ReadFull(resp.Body, buf)
	if n != 128 || err != nil {
		b.Fatalf("body: %d bytes, %v", n, err)
	}
	resp.Body.Close()
	p.Release(resp)
}

// BenchmarkRoundTrip measures a small GET with a 128-byte response over
// loopback, the server included. "cancelable" uses a context that can be
// canceled, as a server's request context can (context.AfterFunc's cost).
func BenchmarkRoundTrip(b *testing.B) {
	for _, bc := range []struct {
		name       string
		cancelable bool
	}{{"background", false}, {"cancelable", true}} {
		newCtx := func() (context.Context, context.CancelFunc) {
			if bc.cancelable {
				return context.WithCancel(context.Background())
			}
			return context.Background(), func() {}
		}
		b.Run("sequential/"+bc.name, func(b *testing.B) {
			s := benchServer(b, benchResp)
			p := NewPool(Options{Addr: s.addr(), MaxIdle: 64})
			defer p.Close()
			ctx, cancel := newCtx()
			defer cancel()
			req := newReq("GET", "/bench", "user-agent", "bench", "accept", "*/*")
			buf := make([]byte, 128)
			b.ReportAllocs()
			for b.Loop() {
				benchRoundTrip(b, p, ctx, req, buf)
			}
		})
		b.Run("parallel/"+bc.name, func(b *testing.B) {
			s := benchServer(b, benchResp)
			p := NewPool(Options{Addr: s.addr(), MaxIdle: 256})
			defer p.Close()
			ctx, cancel := newCtx()
			defer cancel()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := newReq("GET", "/bench", "user-agent", "bench", "accept", "*/*")
				buf := make([]byte, 128)
				for pb.Next() {
					benchRoundTrip(b, p, ctx, req, buf)
				}
			})
		})
	}
}

// BenchmarkParseHead measures the response head parser alone.
func BenchmarkParseHead(b *testing.B) {
	raw := "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Sat, 22 Nov 2026 03:00:00 GMT\r\nServer: bench\r\nCache-Control: no-cache\r\nX-Request-Id: 5f2b8c1e-0d1e-4b53-9b1b-6c2f7d1a2e3f\r\nContent-Length: 128\r\n\r\n"
	p := NewPool(Options{Addr: "unused:0"})
	c := &conn{p: p}
	r := strings.NewReader(raw)
	c.br = bufio.NewReaderSize(r, readBufSize)
	var h head
	var dst message.Header
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(raw)
		c.br.Reset(r)
		dst.Reset()
		if err := c.readHead(&h, &dst, false); err != nil || h.cl != 128 {
			b.Fatal(err)
		}
	}
}

// BenchmarkHTTPTransport is the same exchange through a tuned
// net/http.Transport, for comparison.
func BenchmarkHTTPTransport(b *testing.B) {
	s := benchServer(b, benchResp)
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr}
	url := "http://" + s.addr() + "/bench"
	run := func(buf []byte) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("User-Agent", "bench")
		req.Header.Set("Accept", "*/*")
		resp, err := cl.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.ReadFull(resp.Body, buf); n != 128 || err != nil {
			b.Fatalf("body: %d bytes, %v", n, err)
		}
		resp.Body.Close()
	}
	b.Run("sequential", func(b *testing.B) {
		buf := make([]byte, 128)
		b.ReportAllocs()
		for b.Loop() {
			run(buf)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			buf := make([]byte, 128)
			for pb.Next() {
				run(buf)
			}
		})
	})
}

// TestAllocsPerRoundTrip keeps the steady-state allocation count: one
// string for the header block, one more for a trailer section.
func TestAllocsPerRoundTrip(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	tests := []struct {
		name string
		resp string
		want float64
	}{
		{"content-length", benchResp, 1},
		{"chunked", "HTTP/1.1 200 OK\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n80\r\n" + strings.Repeat("x", 128) + "\r\n0\r\n\r\n", 1},
		{"chunked with trailer", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n80\r\n" + strings.Repeat("x", 128) + "\r\n0\r\ngrpc-status: 0\r\n\r\n", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := benchServer(t, tt.resp)
			p := newTestPool(t, Options{Addr: s.addr()})
			req := newReq("GET", "/", "user-agent", "test")
			buf := make([]byte, 256)
			rt := func() {
				resp, err := p.RoundTrip(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				n, err := io.ReadFull(resp.Body, buf[:128])
				if n != 128 || err != nil {
					t.Fatalf("body: %d, %v", n, err)
				}
				if n, err := resp.Body.Read(buf); n != 0 || err != io.EOF {
					t.Fatalf("end of body: %d, %v", n, err)
				}
				resp.Body.Close()
				p.Release(resp)
			}
			rt() // warm up: dial, buffers
			if got := testing.AllocsPerRun(200, rt); got > tt.want {
				t.Errorf("allocations per round trip: got %v, want <= %v", got, tt.want)
			}
		})
	}
}
