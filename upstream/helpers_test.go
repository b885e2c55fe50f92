package upstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/edge/message"
	"github.com/edgeproxy/edge/edge/stats"
)

const testTimeout = 10 * time.Second

// parseConfig parses a config whose clusters section is clusters (YAML
// lines, indented as list items under "clusters:").
func parseConfig(t testing.TB, dir, clusters string) *config.Config {
	t.Helper()
	src := `listeners:
  - name: l
    address: 127.0.0.1:1
    route_config: main
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            direct_response: {status: 200}
clusters:
` + clusters
	cfg, err := config.Parse([]byte(src), "test.yaml", dir)
	if err != nil {
		t.Fatalf("config:\n%s\nerror: %v", src, err)
	}
	return cfg
}

// newTestSet compiles clusters with a fresh stats store.
func newTestSet(t testing.TB, clusters string, o Options) (*Set, *stats.Store) {
	t.Helper()
	if o.Stats == nil {
		o.Stats = stats.NewStore(1024)
	}
	s, err := NewSet(parseConfig(t, t.TempDir(), clusters), o)
	if err != nil {
		t.Fatalf("NewSet: %v", err)
	}
	t.Cleanup(s.Close)
	return s, o.Stats
}

// stat reads a cluster stat.
func stat(st *stats.Store, name, cluster string) float64 {
	v, _ := st.Lookup(name, stats.Label{Name: "cluster", Value: cluster})
	return v
}

// backend is a loopback HTTP server (HTTP/1.1 and h2c) that answers with
// its own listening address; /slow sends the header, then waits for
// release before the body.
type backend struct {
	addr    string
	srv     *http.Server
	release chan struct{}
	opened  atomic.Int32
	closed  atomic.Int32
}

func newBackend(t testing.TB, addr string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	b := &backend{addr: ln.Addr().String(), release: make(chan struct{})}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	b.srv = &http.Server{
		Protocols:         &protos,
		ReadHeaderTimeout: testTimeout,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Proto", r.Proto)
			if r.URL.Path == "/slow" {
				w.WriteHeader(200)
				w.(http.Flusher).Flush()
				select {
				case <-b.release:
				case <-time.After(testTimeout):
				}
			}
			io.WriteString(w, b.addr)
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				b.opened.Add(1)
			case http.StateClosed, http.StateHijacked:
				b.closed.Add(1)
			}
		},
	}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

// backendsOnOnePort starts backends on 127.0.0.1, .2, ... with one port,
// as a DNS name's addresses would be.
func backendsOnOnePort(t testing.TB, n int) []*backend {
	t.Helper()
	first := newBackend(t, "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(first.addr)
	bs := []*backend{first}
	for i := 2; i <= n; i++ {
		bs = append(bs, newBackend(t, fmt.Sprintf("127.0.0.%d:%s", i, port)))
	}
	return bs
}

func get(path string) *message.Request {
	return &message.Request{Method: "GET", Scheme: "http", Authority: "edge.test", Path: path, ProtoMajor: 1}
}

// do sends a request to h and returns the body (the serving backend's
// address).
func do(t testing.TB, h *Host, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	resp, err := h.RoundTrip(ctx, get(path))
	if err != nil {
		t.Fatalf("RoundTrip to %s: %v", h.Address(), err)
	}
	b, err := io.ReadAll(resp.Body)
	h.Release(resp)
	if err != nil {
		t.Fatalf("reading body from %s: %v", h.Address(), err)
	}
	return string(b)
}

// pickDo picks a host of c and sends a request there.
func pickDo(t testing.TB, c *Cluster, path string) string {
	t.Helper()
	h, err := c.Pick(nil)
	if err != nil {
		t.Fatalf("Pick: %v", err)
	}
	return do(t, h, path)
}

func addrs(hosts []*Host) string {
	var s []string
	for _, h := range hosts {
		s = append(s, h.Address())
	}
	return strings.Join(s, " ")
}

// waitFor polls cond until it holds or the test timeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dnsServer is a real DNS server on UDP loopback whose answers the test
// changes: A and AAAA records per name, or SERVFAIL for everything.
type dnsServer struct {
	pc      net.PacketConn
	queries atomic.Int32

	mu      sync.Mutex
	records map[string][]netip.Addr // lower-case FQDN -> addresses
	fail    bool
}

func newDNSServer(t testing.TB) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen udp: %v", err)
	}
	d := &dnsServer{pc: pc, records: make(map[string][]netip.Addr)}
	go d.serve()
	t.Cleanup(func() { pc.Close() })
	return d
}

// set makes name resolve to addrs (none: the name does not exist).
func (d *dnsServer) set(name string, addrs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fqdn := strings.ToLower(name) + "."
	if len(addrs) == 0 {
		delete(d.records, fqdn)
		return
	}
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	d.records[fqdn] = as
}

func (d *dnsServer) setFail(fail bool) {
	d.mu.Lock()
	d.fail = fail
	d.mu.Unlock()
}

// resolver returns a pure-Go resolver that asks only this server.
func (d *dnsServer) resolver() *net.Resolver {
	addr := d.pc.LocalAddr().String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "udp", addr)
		},
	}
}

func (d *dnsServer) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := d.answer(buf[:n]); resp != nil {
			d.pc.WriteTo(resp, from)
		}
	}
}

func (d *dnsServer) answer(msg []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	d.queries.Add(1)
	d.mu.Lock()
	as, known := d.records[strings.ToLower(q.Name.String())]
	fail := d.fail
	d.mu.Unlock()
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	switch {
	case fail:
		rh.RCode = dnsmessage.RCodeServerFailure
	case !known:
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	if !fail {
		for _, a := range as {
			rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}
			switch {
			case q.Type == dnsmessage.TypeA && a.Is4():
				b.AResource(rr, dnsmessage.AResource{A: a.As4()})
			case q.Type == dnsmessage.TypeAAAA && a.Is6():
				b.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: a.As16()})
			}
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// logBuffer is a slog handler's output, safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// writeFile writes data to name under dir and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
