package accesslog

import (
	"net/netip"
	"testing"
	"time"

	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/edge/message"
)

// BenchmarkFormat measures building a line without the write(2), to
// separate formatting cost from the system call BenchmarkLog* include.
func BenchmarkFormat(b *testing.B) {
	var h message.Header
	h.Add("user-agent", "curl/8.5.0")
	h.Add("x-forwarded-for", "203.0.113.9")
	h.Add("accept", "*/*")
	e := &Entry{
		Start: time.Now(), Duration: 1234 * time.Microsecond, Method: "GET", Authority: "example.com",
		Path: "/index.html", Protocol: "HTTP/1.1", Status: 200, BytesSent: 1234, UpstreamHost: "10.0.0.1:80",
		RequestID: "0f3c2a4e-5b7d-4c1e-9f2a-3b4c5d6e7f80", Downstream: netip.MustParseAddrPort("192.0.2.1:5555"),
		RequestHeader: &h, Attempts: 1,
	}
	ops, err := compile(config.DefaultAccessLogFormat)
	if err != nil {
		b.Fatal(err)
	}
	l := &Logger{ops: ops}
	buf := make([]byte, 0, 1024)
	b.Run("text", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = l.appendText(buf[:0], e)
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = appendJSON(buf[:0], e)
		}
	})
}
