package edge

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Config fronts an upstream with a listener offering HTTP/1.1 and HTTP/2;
// /direct is answered by edge itself.
const h2Config = `
admin: {address: ""}
listeners:
  - name: public
    address: 127.0.0.1:0
    route_config: main
    protocols: [http1, http2]
    limits: {max_concurrent_streams: 100}
    timeouts: {request_headers: 5s, idle: 30s}
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /direct}
            direct_response: {status: 200, body: "direct\n"}
          - match: {prefix: /}
            route: {cluster: web, timeout: 0}
clusters:
  - name: web
    endpoints: ["UPSTREAM"]
`

// h2specPath finds the h2spec conformance tool ($H2SPEC or PATH).
func h2specPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("H2SPEC"); p != "" {
		return p
	}
	if p, err := exec.LookPath("h2spec"); err == nil {
		return p
	}
	// The module's tool (go.mod), built once per test binary.
	p, err := buildH2Spec()
	if err != nil {
		t.Fatalf("building h2spec (go.mod tool): %v", err)
	}
	return p
}

var buildH2Spec = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "h2spec")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "h2spec")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/summerwind/h2spec/cmd/h2spec").CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v\n%s", err, out)
	}
	return bin, nil
})

// TestH2Spec runs the h2spec conformance suite (RFC 9113 and RFC 7541)
// against edge's codec, cleartext and over TLS.
func TestH2Spec(t *testing.T) {
	bin := h2specPath(t)
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok\n")
	}))
	ca := newTestCA(t)
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"h2c", false}, {"tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := strings.Replace(h2Config, "UPSTREAM", up.hostPort(), 1)
			args := []string{"-o", "3"}
			if tc.tls {
				cfg = strings.Replace(cfg, "    protocols: [http1, http2]\n", "    protocols: [http1, http2]\n    tls: {certificates: [{cert_file: CERT, key_file: KEY}]}\n", 1)
				args = append(args, "-t", "-k")
			} else {
				// HTTP/2 only: a connection that does not start with the
				// preface is not an HTTP/1.1 request then, and is closed.
				cfg = strings.Replace(cfg, "protocols: [http1, http2]", "protocols: [http2]", 1)
			}
			var s *Server
			if tc.tls {
				cert, key := ca.issue(t, "edge", "localhost", "127.0.0.1")
				s = startEdge(t, cfg, "CERT", cert, "KEY", key)
			} else {
				s = startEdge(t, cfg)
			}
			addr := s.Addr("public").(*net.TCPAddr)
			args = append(args, "-h", addr.IP.String(), "-p", strconv.Itoa(addr.Port))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
			summary := out
			if i := bytes.LastIndex(out, []byte("Failures:")); i >= 0 {
				summary = out[i:]
			}
			if err != nil {
				t.Errorf("h2spec %v: %v\n%s", args, err, summary)
			}
			t.Logf("%s", lastLine(out))
		})
	}
}

func lastLine(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

// h2TestUpstream echoes request bodies with a trailer carrying their
// length, serves /big (1 MiB) and blocks /hang until the request's context
// ends, reporting that on hung.
func h2TestUpstream(t *testing.T, hung chan<- struct{}) *countingServer {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	return newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write(big)
		case "/hang":
			w.Write([]byte("x")) // the response starts: edge forwards streamed bytes as they come
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			hung <- struct{}{}
		default:
			// Read all first: an HTTP/1.1 handler may not read after writing.
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Trailer", "X-Length")
			w.Write(body)
			w.Header().Set("X-Length", strconv.Itoa(len(body)))
			w.Header().Set("X-Req-Trailer", r.Trailer.Get("X-Sum"))
		}
	}))
}

// h2Clients returns x/net HTTP/2 clients for edge started with h2Config:
// cleartext with prior knowledge and TLS with ALPN.
func h2Clients(t *testing.T, upstream string) map[string]struct {
	c    *http.Client
	base string
} {
	ca := newTestCA(t)
	cert, key := ca.issue(t, "edge", "localhost", "127.0.0.1")
	plain := startEdge(t, strings.Replace(h2Config, "UPSTREAM", upstream, 1))
	tlsCfg := strings.Replace(h2Config, "    protocols: [http1, http2]\n",
		"    protocols: [http1, http2]\n    tls: {certificates: [{cert_file: CERT, key_file: KEY}]}\n", 1)
	secure := startEdge(t, strings.Replace(tlsCfg, "UPSTREAM", upstream, 1), "CERT", cert, "KEY", key)
	h2c := &http.Client{Timeout: 20 * time.Second, Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}}
	h2t := &http.Client{Timeout: 20 * time.Second, Transport: &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
	t.Cleanup(h2c.CloseIdleConnections)
	t.Cleanup(h2t.CloseIdleConnections)
	return map[string]struct {
		c    *http.Client
		base string
	}{
		"h2c": {h2c, "http://" + plain.Addr("public").String()},
		"tls": {h2t, "https://" + secure.Addr("public").String()},
	}
}

// TestH2ConcurrentStreams sends many concurrent requests with bodies of
// various sizes (and request trailers) over one connection, cleartext and
// TLS, and checks every echoed body and response trailer.
func TestH2ConcurrentStreams(t *testing.T) {
	up := h2TestUpstream(t, nil)
	for name, cl := range h2Clients(t, up.hostPort()) {
		t.Run(name, func(t *testing.T) {
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for i := range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					size := (i * 7919) % (300 << 10)
					if i%8 == 0 {
						size = 0
					}
					body := bytes.Repeat([]byte{byte('a' + i%26)}, size)
					req, _ := http.NewRequest("POST", cl.base+"/echo", bytes.NewReader(body))
					if i%3 == 0 {
						// Unknown length, with a request trailer.
						req.Body = io.NopCloser(bytes.NewReader(body))
						req.ContentLength = -1
						req.Trailer = http.Header{"X-Sum": {"s" + strconv.Itoa(i)}}
					}
					resp, err := cl.c.Do(req)
					if err != nil {
						errs <- fmt.Errorf("request %d: %v", i, err)
						return
					}
					got, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					switch {
					case err != nil:
						errs <- fmt.Errorf("request %d: reading body: %v", i, err)
					case resp.ProtoMajor != 2 || resp.StatusCode != 200:
						errs <- fmt.Errorf("request %d: %s %d", i, resp.Proto, resp.StatusCode)
					case !bytes.Equal(got, body):
						errs <- fmt.Errorf("request %d: echoed %d bytes, sent %d", i, len(got), len(body))
					case resp.Trailer.Get("X-Length") != strconv.Itoa(size):
						errs <- fmt.Errorf("request %d: trailer X-Length %q, want %d", i, resp.Trailer.Get("X-Length"), size)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestH2ClientResetCancelsUpstream checks that a client's RST_STREAM
// cancels the request upstream.
func TestH2ClientResetCancelsUpstream(t *testing.T) {
	hung := make(chan struct{}, 2)
	up := h2TestUpstream(t, hung)
	for name, cl := range h2Clients(t, up.hostPort()) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, "GET", cl.base+"/hang", nil)
			resp, err := cl.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(resp.Body, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			cancel() // resets the stream
			resp.Body.Close()
			select {
			case <-hung:
			case <-time.After(5 * time.Second):
				t.Fatal("upstream request still running 5s after the client reset the stream")
			}
			// The connection stays usable.
			resp, err = cl.c.Get(cl.base + "/direct")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("request after reset: %v %v", resp, err)
			}
			resp.Body.Close()
		})
	}
}

// h2RawConn is a hand-driven HTTP/2 client connection.
type h2RawConn struct {
	net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	hb  bytes.Buffer
}

func dialH2Raw(t *testing.T, addr string, settings ...http2.Setting) *h2RawConn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	r := &h2RawConn{Conn: c, fr: http2.NewFramer(c, c)}
	r.enc = hpack.NewEncoder(&r.hb)
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.fr.WriteSettings(settings...)
	return r
}

func (r *h2RawConn) request(id uint32, endStream bool, fields ...string) {
	r.hb.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		r.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.hb.Bytes(), EndStream: endStream, EndHeaders: true})
}

// TestH2SmallClientWindow fetches a 1 MiB response with the default 64 KiB
// windows: edge must stop at the window and go on after each
// WINDOW_UPDATE, never sending more than the client allowed.
func TestH2SmallClientWindow(t *testing.T) {
	up := h2TestUpstream(t, nil)
	s := startEdge(t, strings.Replace(h2Config, "UPSTREAM", up.hostPort(), 1))
	c := dialH2Raw(t, s.Addr("public").String(), http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535})
	c.request(1, true, ":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/big")
	connWin, streamWin := int64(65535), int64(65535)
	var got int64
	var status string
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			status = f.PseudoValue("status")
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			t.Fatalf("after %d bytes: %v", got, f)
		case *http2.DataFrame:
			n := int64(len(f.Data()))
			connWin -= n
			streamWin -= n
			got += n
			if connWin < 0 || streamWin < 0 {
				t.Fatalf("edge overran the window: connection %d, stream %d", connWin, streamWin)
			}
			if f.StreamEnded() {
				if status != "200" || got != 1<<20 {
					t.Fatalf("status %q, %d bytes; want 200 and 1 MiB", status, got)
				}
				return
			}
			// Give the window back slowly, in small steps.
			if n > 0 {
				c.fr.WriteWindowUpdate(0, uint32(n))
				c.fr.WriteWindowUpdate(1, uint32(n))
				connWin += n
				streamWin += n
			}
		}
	}
}

// TestH2RequestErrors checks stream-level refusals of malformed requests
// and that the connection survives them.
func TestH2RequestErrors(t *testing.T) {
	up := h2TestUpstream(t, nil)
	s := startEdge(t, strings.Replace(h2Config, "UPSTREAM", up.hostPort(), 1))
	c := dialH2Raw(t, s.Addr("public").String())
	base := []string{":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/direct"}
	cases := []struct {
		name   string
		fields []string
	}{
		{"missing path", []string{":method", "GET", ":scheme", "http", ":authority", "a"}},
		{"duplicate method", append(append([]string{}, base...), ":method", "GET")},
		{"connection field", append(append([]string{}, base...), "connection", "close")},
		{"te gzip", append(append([]string{}, base...), "te", "gzip")},
		{"response pseudo", append(append([]string{}, base...), ":status", "200")},
	}
	id := uint32(1)
	for _, tc := range cases {
		c.request(id, true, tc.fields...)
		if code := h2WaitStream(t, c, id); code != "RST PROTOCOL_ERROR" {
			t.Errorf("%s: got %s, want RST PROTOCOL_ERROR", tc.name, code)
		}
		id += 2
	}
	// Content-length disagreeing with the DATA sent, on a forwarded
	// request (the upstream reads the whole body before it answers, so
	// the answer cannot race the refusal as a direct response would).
	forwarded := []string{":method", "POST", ":scheme", "http", ":authority", "a", ":path", "/echo"}
	c.request(id, false, append(forwarded, "content-length", "3")...)
	c.fr.WriteData(id, true, []byte("hello"))
	if code := h2WaitStream(t, c, id); code != "RST PROTOCOL_ERROR" {
		t.Errorf("content-length mismatch: got %s", code)
	}
	id += 2
	c.request(id, true, base...)
	if code := h2WaitStream(t, c, id); code != "200" {
		t.Errorf("valid request after errors: got %s, want 200", code)
	}
}

// h2WaitStream reads frames until stream id ends and says how.
func h2WaitStream(t *testing.T, c *h2RawConn, id uint32) string {
	status := ""
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return "read error: " + err.Error()
		}
		if f.Header().StreamID != id {
			if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
				c.fr.WriteSettingsAck()
			}
			if g, ok := f.(*http2.GoAwayFrame); ok {
				return "GOAWAY " + g.ErrCode.String()
			}
			continue
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			return "RST " + f.ErrCode.String()
		case *http2.MetaHeadersFrame:
			status = f.PseudoValue("status")
			if f.StreamEnded() {
				return status
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				return status
			}
		}
	}
}

// TestH2Load runs a short h2load burst (cleartext, many streams).
func TestH2Load(t *testing.T) {
	bin, err := exec.LookPath("h2load")
	if err != nil {
		t.Skip("h2load not installed")
	}
	up := h2TestUpstream(t, nil)
	s := startEdge(t, strings.Replace(h2Config, "UPSTREAM", up.hostPort(), 1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-n", "2000", "-c", "4", "-m", "32",
		"http://"+s.Addr("public").String()+"/echo").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("2000 succeeded, 0 failed, 0 errored")) {
		t.Fatalf("h2load: %v\n%s", err, out)
	}
}

// BenchmarkProxyHTTP2 measures proxied GET requests over one h2c
// connection (a raw framer client, so allocations counted are edge's).
func BenchmarkProxyHTTP2(b *testing.B) { benchProxyHTTP2(b) }

func benchProxyHTTP2(b *testing.B) {
	up := rawUpstream(b)
	s := startEdge(b, strings.Replace(basicConfig, "UPSTREAM", up, 1))
	c, err := net.Dial("tcp", s.Addr("public").String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.SetReuseFrames()
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
	fr.WriteWindowUpdate(0, 1<<30)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "example.com"},
		{":path", "/bench"}, {"user-agent", "bench"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	block := hb.Bytes()
	id := uint32(1)
	b.ReportAllocs()
	for b.Loop() {
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
			b.Fatal(err)
		}
		for done := false; !done; {
			f, err := fr.ReadFrame()
			if err != nil {
				b.Fatal(err)
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					fr.WriteSettingsAck()
				}
			case *http2.RSTStreamFrame, *http2.GoAwayFrame:
				b.Fatalf("%v", f)
			case *http2.HeadersFrame:
				done = f.StreamID == id && f.StreamEnded()
			case *http2.DataFrame:
				if n := len(f.Data()); n > 0 {
					fr.WriteWindowUpdate(0, uint32(n))
				}
				done = f.StreamID == id && f.StreamEnded()
			}
		}
		id += 2
	}
}

// TestH2IdleTimeout checks that a connection without streams for
// timeouts.idle gets GOAWAY and is closed.
func TestH2IdleTimeout(t *testing.T) {
	cfg := strings.Replace(h2Config, "idle: 30s", "idle: 300ms", 1)
	s := startEdge(t, strings.Replace(cfg, "UPSTREAM", "127.0.0.1:1", 1))
	c := dialH2Raw(t, s.Addr("public").String())
	c.request(1, true, ":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/direct")
	if got := h2WaitStream(t, c, 1); got != "200" {
		t.Fatalf("request: %s", got)
	}
	start := time.Now()
	var goAway bool
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			break
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			goAway = g.ErrCode == http2.ErrCodeNo && g.LastStreamID == 1
		}
	}
	if el := time.Since(start); !goAway || el > 3*time.Second {
		t.Errorf("GOAWAY(NO_ERROR, 1) seen %v; connection closed after %v, want about 300ms", goAway, el)
	}
}

// TestH2ClientThatStopsReading: a client that opens big windows, asks for
// many large responses and reads nothing loses its connection after the
// write timeout instead of holding the connection's writer for ever.
func TestH2ClientThatStopsReading(t *testing.T) {
	defer func(d time.Duration) { h2WriteTimeout = d }(h2WriteTimeout)
	h2WriteTimeout = 500 * time.Millisecond
	up := h2TestUpstream(t, nil)
	s := startEdge(t, strings.Replace(h2Config, "UPSTREAM", up.hostPort(), 1))
	c := dialH2Raw(t, s.Addr("public").String(), http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	c.fr.WriteWindowUpdate(0, 1<<31-1-65535)
	for id := uint32(1); id < 64; id += 2 { // 32 MiB asked for, none read
		c.request(id, true, ":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/big")
	}
	var l *listenerRuntime
	for _, lr := range s.listeners {
		l = lr
	}
	waitFor(t, "the stalled connection closed", func() bool { return l.stats.cxActive.Value() == 0 })
}
