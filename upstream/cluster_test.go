package upstream

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/upstream/http1"
	"github.com/edgeproxy/edge/upstream/http2"
)

func TestStaticClusterRoundTrip(t *testing.T) {
	for _, proto := range []string{"http1", "http2"} {
		t.Run(proto, func(t *testing.T) {
			b1, b2 := newBackend(t, "127.0.0.1:0"), newBackend(t, "127.0.0.1:0")
			s, st := newTestSet(t, fmt.Sprintf(`  - name: web
    protocol: %s
    endpoints: [%q, %q]
`, proto, b1.addr, b2.addr), Options{})
			c := s.Cluster(s.Index()["web"])
			if c.Name != "web" {
				t.Fatalf("cluster name %q, want web", c.Name)
			}
			served := map[string]int{}
			for range 4 {
				served[pickDo(t, c, "/")]++
			}
			if served[b1.addr] != 2 || served[b2.addr] != 2 {
				t.Errorf("4 requests served %v, want 2 by each backend", served)
			}
			wantProto := map[string]string{"http1": "HTTP/1.1", "http2": "HTTP/2.0"}[proto]
			h, _ := c.Pick(nil)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			resp, err := h.RoundTrip(ctx, get("/"))
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Header.Get("x-proto"); got != wantProto {
				t.Errorf("backend saw %s, want %s", got, wantProto)
			}
			if got := h.ActiveRequests(); got != 1 {
				t.Errorf("ActiveRequests with a body open = %d, want 1", got)
			}
			if got := stat(st, "edge_cluster_upstream_rq_active", "web"); got != 1 {
				t.Errorf("rq_active with a body open = %v, want 1", got)
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
			if got := h.ActiveRequests(); got != 0 {
				t.Errorf("ActiveRequests after Close = %d, want 0", got)
			}
			want := map[string]float64{
				"edge_cluster_upstream_cx_total":        2,
				"edge_cluster_upstream_cx_active":       2,
				"edge_cluster_upstream_cx_connect_fail": 0,
				"edge_cluster_upstream_rq_total":        5,
				"edge_cluster_upstream_rq_active":       0,
				"edge_cluster_membership_total":         2,
				"edge_cluster_membership_healthy":       2,
			}
			for name, v := range want {
				if got := stat(st, name, "web"); got != v {
					t.Errorf("%s = %v, want %v", name, got, v)
				}
			}
		})
	}
}

func TestConnectFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	for _, proto := range []string{"http1", "http2"} {
		t.Run(proto, func(t *testing.T) {
			s, st := newTestSet(t, fmt.Sprintf("  - name: dead\n    protocol: %s\n    endpoints: [%q]\n", proto, dead), Options{})
			h, err := s.Cluster(0).Pick(nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = h.RoundTrip(context.Background(), get("/"))
			var e *Error
			if !errors.As(err, &e) || e.Kind != ConnectFailure || e.Sent {
				t.Fatalf("RoundTrip to a closed port: %v, want *Error connect failure, not sent", err)
			}
			if got := stat(st, "edge_cluster_upstream_cx_connect_fail", "dead"); got != 1 {
				t.Errorf("cx_connect_fail = %v, want 1", got)
			}
			if got, rq := h.ActiveRequests(), stat(st, "edge_cluster_upstream_rq_active", "dead"); got != 0 || rq != 0 {
				t.Errorf("after a failed request: host active %d, rq_active %v; want 0, 0", got, rq)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	cause := errors.New("cause")
	tests := []struct {
		name     string
		err      error
		wantKind Kind
		wantSent bool
	}{
		{"http1 connect failure", &http1.Error{Kind: http1.ConnectFailure, Err: cause}, ConnectFailure, false},
		{"http1 reset sent", &http1.Error{Kind: http1.Reset, Sent: true, Err: cause}, Reset, true},
		{"http1 reset unsent", &http1.Error{Kind: http1.Reset, Err: cause}, Reset, false},
		{"http1 timeout", &http1.Error{Kind: http1.Timeout, Sent: true, Err: cause}, Timeout, true},
		{"http1 canceled", &http1.Error{Kind: http1.Canceled, Sent: true, Err: cause}, Canceled, true},
		{"http1 protocol", &http1.Error{Kind: http1.Protocol, Err: cause}, Protocol, false},
		{"http1 request body", &http1.Error{Kind: http1.RequestBody, Sent: true, Err: cause}, RequestBody, true},
		{"http2 refused stream", &http2.Error{Kind: http2.RefusedStream, Err: cause}, RefusedStream, false},
		{"http2 reset", &http2.Error{Kind: http2.Reset, Sent: true, Err: cause}, Reset, true},
		{"http2 connect failure", &http2.Error{Kind: http2.ConnectFailure, Err: cause}, ConnectFailure, false},
		{"http2 timeout", &http2.Error{Kind: http2.Timeout, Sent: true, Err: cause}, Timeout, true},
		{"http2 canceled", &http2.Error{Kind: http2.Canceled, Sent: true, Err: cause}, Canceled, true},
		{"http2 protocol", &http2.Error{Kind: http2.Protocol, Sent: true, Err: cause}, Protocol, true},
		{"http2 request body", &http2.Error{Kind: http2.RequestBody, Sent: true, Err: cause}, RequestBody, true},
		{"wrapped http2", fmt.Errorf("ctx: %w", &http2.Error{Kind: http2.RefusedStream, Err: cause}), RefusedStream, false},
		{"unknown", cause, Reset, true},
		{"no host", ErrNoHealthyEndpoint, NoHost, false},
	}
	for _, tt := range tests {
		e := Classify(tt.err)
		if e.Kind != tt.wantKind || e.Sent != tt.wantSent {
			t.Errorf("%s: Classify = %v sent=%v, want %v sent=%v", tt.name, e.Kind, e.Sent, tt.wantKind, tt.wantSent)
		}
		// The result is the error itself, the *Error it wraps, or a new
		// *Error wrapping it: never a loss of the cause.
		if !errors.Is(e, tt.err) && !errors.Is(tt.err, e) {
			t.Errorf("%s: Classify result and the original error are unrelated", tt.name)
		}
	}
	if Classify(nil) != nil {
		t.Error("Classify(nil) != nil")
	}
}

// writeCA writes the test server's certificate as a PEM CA file.
func writeCA(t *testing.T, dir string, ts *httptest.Server) string {
	return writeFile(t, dir, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}))
}

func TestTLSCluster(t *testing.T) {
	for _, proto := range []string{"http1", "http2"} {
		t.Run(proto, func(t *testing.T) {
			sni := make(chan string, 4)
			ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sni <- r.TLS.ServerName
				io.WriteString(w, r.Proto)
			}))
			ts.EnableHTTP2 = proto == "http2"
			ts.StartTLS()
			defer ts.Close()
			dir := t.TempDir()
			writeCA(t, dir, ts)
			// httptest's certificate is valid for example.com and 127.0.0.1.
			cfg := parseConfig(t, dir, fmt.Sprintf(`  - name: secure
    protocol: %s
    endpoints: [%q]
    tls: {server_name: example.com, ca_file: ca.pem}
`, proto, ts.Listener.Addr().String()))
			s, err := NewSet(cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			h, _ := s.Cluster(0).Pick(nil)
			got := do(t, h, "/")
			want := map[string]string{"http1": "HTTP/1.1", "http2": "HTTP/2.0"}[proto]
			if got != want {
				t.Errorf("served over %s, want %s", got, want)
			}
			if name := <-sni; name != "example.com" {
				t.Errorf("SNI %q, want example.com", name)
			}
		})
	}
}

func TestNewSetErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := parseConfig(t, dir, `  - name: ok
    endpoints: ["127.0.0.1:80"]
  - name: bad
    endpoints: ["127.0.0.1:443"]
    tls:
      ca_file: missing.pem
`)
	_, err := NewSet(cfg, Options{})
	var errs config.Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Fatalf("NewSet error = %v, want one config.Error", err)
	}
	e := errs[0]
	if e.Path != "clusters[1].tls.ca_file" || e.Pos.Line != 19 || !strings.Contains(e.Msg, "missing.pem") {
		t.Errorf("error = %+v (%v), want path clusters[1].tls.ca_file at line 19 naming missing.pem", *e, e)
	}
}

func TestDescribe(t *testing.T) {
	b := newBackend(t, "127.0.0.1:0")
	s, _ := newTestSet(t, fmt.Sprintf(`  - name: web
    endpoints: [%q, {address: "127.0.0.2:1", weight: 3}]
  - name: grpc
    protocol: http2
    type: strict_dns
    endpoints: ["grpc.edge.test:50051"]
`, b.addr), Options{})
	h := s.Cluster(0).Hosts()[0]
	do(t, h, "/")
	got, err := json.Marshal(s.Describe())
	if err != nil {
		t.Fatal(err)
	}
	breakers := func(conns int) string {
		return fmt.Sprintf(`"circuit_breakers":{"max_connections":1024,"connections":%d,"max_pending_requests":1024,"pending_requests":0,"max_requests":1024,"requests":0,"max_retries":3,"retries":0}`, conns)
	}
	want := fmt.Sprintf(`[{"name":"web","type":"static","protocol":"http1","lb_policy":"round_robin","hosts":[`+
		`{"address":%q,"hostname":"127.0.0.1","weight":1,"active_requests":0,"health":"healthy","times_ejected":0,"pool":{"protocol":"http1","connections":1,"active_connections":0,"idle_connections":1,"active_streams":0}},`+
		`{"address":"127.0.0.2:1","hostname":"127.0.0.2","weight":3,"active_requests":0,"health":"healthy","times_ejected":0,"pool":{"protocol":"http1","connections":0,"active_connections":0,"idle_connections":0,"active_streams":0}}],`+
		breakers(1)+`},`+
		`{"name":"grpc","type":"strict_dns","protocol":"http2","lb_policy":"round_robin","hosts":[],`+breakers(0)+`}]`, b.addr)
	if string(got) != want {
		t.Errorf("Describe =\n%s\nwant\n%s", got, want)
	}
}

func TestNoHostBeforeResolution(t *testing.T) {
	s, _ := newTestSet(t, `  - name: dns
    type: strict_dns
    endpoints: ["never.edge.test:80"]
`, Options{})
	_, err := s.Cluster(0).Pick(nil)
	var e *Error
	if !errors.Is(err, ErrNoHealthyEndpoint) || !errors.As(err, &e) || e.Kind != NoHost {
		t.Errorf("Pick on an unresolved cluster: %v, want ErrNoHealthyEndpoint of kind NoHost", err)
	}
}

func TestCloseDrainsInFlight(t *testing.T) {
	for _, proto := range []string{"http1", "http2"} {
		t.Run(proto, func(t *testing.T) {
			b := newBackend(t, "127.0.0.1:0")
			s, err := NewSet(parseConfig(t, t.TempDir(), fmt.Sprintf("  - name: web\n    protocol: %s\n    endpoints: [%q]\n", proto, b.addr)), Options{})
			if err != nil {
				t.Fatal(err)
			}
			h, _ := s.Cluster(0).Pick(nil)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			resp, err := h.RoundTrip(ctx, get("/slow"))
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			if _, err := s.Cluster(0).Pick(nil); !errors.Is(err, ErrNoHealthyEndpoint) {
				t.Errorf("Pick after Close: %v, want ErrNoHealthyEndpoint", err)
			}
			close(b.release)
			body, err := io.ReadAll(resp.Body)
			if err != nil || string(body) != b.addr {
				t.Fatalf("in-flight body after Close: %q, %v; want %q", body, err, b.addr)
			}
			h.Release(resp)
			waitFor(t, "the drained pool to close its connection", func() bool { return b.closed.Load() == 1 })
		})
	}
}

func BenchmarkHostRoundTripH2C(b *testing.B) {
	be := newBackend(b, "127.0.0.1:0")
	s, _ := newTestSet(b, fmt.Sprintf("  - name: web\n    protocol: http2\n    endpoints: [%q]\n", be.addr), Options{})
	c := s.Cluster(0)
	ctx := context.Background()
	req := get("/")
	buf := make([]byte, 256)
	b.ReportAllocs()
	for b.Loop() {
		h, err := c.Pick(nil)
		if err != nil {
			b.Fatal(err)
		}
		resp, err := h.RoundTrip(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				break
			}
		}
		h.Release(resp)
	}
}
