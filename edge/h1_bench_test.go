package edge

import (
	"bufio"
	"testing"
)

// loopReader returns data over and over, like a client pipelining the same
// request without end.
type loopReader struct {
	data []byte
	off  int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], r.data[r.off:])
		n += k
		r.off = (r.off + k) % len(r.data)
	}
	return n, nil
}

// BenchmarkH1ParseRequest measures the HTTP/1.1 codec alone: reading and
// checking a typical browser-sized request head and building the
// message.Request from it. The one allocation is the head's string.
func BenchmarkH1ParseRequest(b *testing.B) {
	req := "GET /api/v1/items?page=2&sort=desc HTTP/1.1\r\n" +
		"Host: www.example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
		"Accept-Language: en-US,en;q=0.5\r\n" +
		"Accept-Encoding: gzip, deflate, br\r\n" +
		"Connection: keep-alive\r\n" +
		"Cookie: session=0123456789abcdef; theme=dark\r\n" +
		"Upgrade-Insecure-Requests: 1\r\n" +
		"\r\n"
	c := &h1conn{d: &downstream{maxHeadBytes: 60 << 10, maxFields: 100}}
	c.br = bufio.NewReaderSize(&loopReader{data: []byte(req)}, h1BufSize)
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		if err := c.readHead(); err != nil {
			b.Fatal(err)
		}
		c.buildRequest()
		if c.req.Header.Len() != 7 || c.req.Authority != "www.example.com" {
			b.Fatalf("parsed %d fields, authority %q", c.req.Header.Len(), c.req.Authority)
		}
		c.req.Reset()
	}
}

// BenchmarkWatchArmDisarm is what watching for a client going away costs a
// request whose response comes before h1WatchAfter: a timer reset and stop.
func BenchmarkWatchArmDisarm(b *testing.B) {
	c := &h1conn{}
	b.ReportAllocs()
	for b.Loop() {
		c.armWatch()
		c.disarmWatch()
	}
}
