package edge

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

const tlsConfig = `
admin: {address: ""}
listeners:
  - name: public
    address: 127.0.0.1:0
    route_config: main
    tls:
      certificates:
        - {cert_file: DEFAULT_CRT, key_file: DEFAULT_KEY}
        - {cert_file: API_CRT, key_file: API_KEY}
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes: [{match: {prefix: /}, route: {cluster: web}}]
clusters:
  - name: web
    endpoints: ["UPSTREAM"]
`

func TestTLSWithSNIAndHTTP2(t *testing.T) {
	ca := newTestCA(t)
	defCrt, defKey := ca.issue(t, "default", "www.example.test", "127.0.0.1")
	apiCrt, apiKey := ca.issue(t, "api", "api.example.test", "*.api.example.test")
	up := newUpstream(t, http.HandlerFunc(echoHandler))
	s := startEdge(t, tlsConfig, "DEFAULT_CRT", defCrt, "DEFAULT_KEY", defKey, "API_CRT", apiCrt, "API_KEY", apiKey, "UPSTREAM", up.hostPort())
	addr := s.Addr("public").String()

	for _, c := range []struct {
		sni, wantCN string
	}{
		{"api.example.test", "api.example.test"},
		{"v1.api.example.test", "api.example.test"},
		{"www.example.test", "www.example.test"},
		{"other.test", "www.example.test"},
		{"", "www.example.test"},
	} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: c.sni, InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatalf("sni %q: %v", c.sni, err)
		}
		st := conn.ConnectionState()
		conn.Close()
		if cn := st.PeerCertificates[0].Subject.CommonName; cn != c.wantCN {
			t.Errorf("sni %q: served %q, want %q", c.sni, cn, c.wantCN)
		}
		if st.NegotiatedProtocol != "h2" {
			t.Errorf("sni %q: ALPN %q, want h2", c.sni, st.NegotiatedProtocol)
		}
	}

	resp, err := ca.client(true).Get("https://" + addr + "/h2")
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("client spoke HTTP/%d, want 2", resp.ProtoMajor)
	}
	e := getEcho(t, resp)
	if e.Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("x-forwarded-proto over TLS = %q", e.Header.Get("X-Forwarded-Proto"))
	}

	if _, err := exec.LookPath("curl"); err == nil {
		port := addr[strings.LastIndexByte(addr, ':')+1:]
		out, err := exec.Command("curl", "-sS", "--http2", "--cacert", ca.file(),
			"--resolve", "api.example.test:"+port+":127.0.0.1",
			"-o", "/dev/null", "-w", "%{http_version} %{http_code}",
			"https://api.example.test:"+port+"/curl").CombinedOutput()
		if err != nil || string(out) != "2 200" {
			t.Errorf("curl --http2 with SNI api.example.test: %q %v", out, err)
		}
	}
}

func TestUpstreamHTTP2(t *testing.T) {
	// h2c upstream (prior knowledge) and TLS upstream with ALPN h2.
	h2c := &http.Server{Handler: http.HandlerFunc(echoHandler), Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go h2c.Serve(ln)
	t.Cleanup(func() { h2c.Close() })

	ca := newTestCA(t)
	crt, key := ca.issue(t, "up", "up.internal")
	tlsUp := httptest.NewUnstartedServer(http.HandlerFunc(echoHandler))
	cert, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	tlsUp.EnableHTTP2 = true
	tlsUp.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	tlsUp.StartTLS()
	t.Cleanup(tlsUp.Close)

	s := startEdge(t, `
admin: {address: ""}
listeners: [{name: public, address: "127.0.0.1:0", route_config: main}]
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - {match: {prefix: /h2c}, route: {cluster: h2c}}
          - {match: {prefix: /tls}, route: {cluster: tls}}
clusters:
  - {name: h2c, endpoints: ["H2C"], protocol: http2}
  - name: tls
    endpoints: ["TLSUP"]
    protocol: http2
    tls: {server_name: up.internal, ca_file: CAFILE}
`, "H2C", ln.Addr().String(), "TLSUP", tlsUp.Listener.Addr().String(), "CAFILE", ca.file())

	for _, p := range []string{"/h2c", "/tls"} {
		resp := mustDo(t, mustBodyReq(t, s.url("public", p), strings.NewReader("body!"), 5))
		e := getEcho(t, resp)
		if e.Proto != 2 || e.Body != "body!" || e.Path != p {
			t.Errorf("%s: upstream saw HTTP/%d path %q body %q", p, e.Proto, e.Path, e.Body)
		}
	}
}

func TestGRPCThroughEdge(t *testing.T) {
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)

	s := startEdge(t, `
admin: {address: ""}
listeners: [{name: public, address: "127.0.0.1:0", route_config: main, protocols: [http2]}]
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes: [{match: {prefix: /}, route: {cluster: grpc, timeout: 0}}]
clusters:
  - {name: grpc, endpoints: ["GRPC"], protocol: http2}
`, "GRPC", ln.Addr().String())

	cc, err := grpc.NewClient(s.Addr("public").String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Unary, success: the status travels in trailers.
	res, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check(svc) = %v, %v; want SERVING", res, err)
	}
	// Unary, error status from the upstream.
	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("Check(unknown) error %v, want code NotFound", err)
	}
	// Server streaming: updates arrive as the upstream sends them.
	stream, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch first = %v, %v", first, err)
	}
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_NOT_SERVING)
	second, err := stream.Recv()
	if err != nil || second.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch second = %v, %v; want NOT_SERVING", second, err)
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	wsUp := newUpstream(t, websocket.Handler(func(c *websocket.Conn) {
		for {
			var msg string
			if err := websocket.Message.Receive(c, &msg); err != nil {
				return
			}
			websocket.Message.Send(c, "echo: "+msg)
		}
	}))
	s := startEdge(t, basicConfig, "UPSTREAM", wsUp.hostPort())
	origin := "http://" + s.Addr("public").String()
	ws, err := websocket.Dial("ws://"+s.Addr("public").String()+"/ws", "", origin)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetDeadline(time.Now().Add(5 * time.Second))
	for _, m := range []string{"one", "two", strings.Repeat("x", 100<<10)} {
		if err := websocket.Message.Send(ws, m); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil {
			t.Fatal(err)
		}
		if got != "echo: "+m {
			t.Errorf("got %.20q..., want echo of %.20q...", got, m)
		}
	}
}

func TestAdminAndAccessLog(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(echoHandler))
	logPath := filepath.Join(t.TempDir(), "access.log")
	cfg := strings.Replace(basicConfig, `admin: {address: ""}`, `admin: {address: "127.0.0.1:0"}`, 1)
	cfg = strings.Replace(cfg, "    route_config: main\n", "    route_config: main\n    access_log: {path: LOGPATH, format: json}\n", 1)
	s := startEdge(t, cfg, "UPSTREAM", up.hostPort(), "LOGPATH", logPath)

	for _, p := range []string{"/a", "/b", "/ping"} {
		resp := mustDo(t, mustReq(t, "GET", s.url("public", p)))
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	admin := "http://" + s.Addr("admin").String()
	get := func(path string) string {
		resp, err := client.Get(admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Errorf("admin %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	if got := get("/ready"); got != "LIVE\n" {
		t.Errorf("/ready = %q", got)
	}
	prom := get("/stats/prometheus")
	for _, want := range []string{
		`edge_http_downstream_rq_total{listener="public"} 3`,
		`edge_http_downstream_rq_xx{listener="public",response_code_class="2xx"} 3`,
		`edge_cluster_upstream_rq_xx{cluster="web",response_code_class="2xx"} 2`,
		`edge_cluster_upstream_cx_total{cluster="web"} 1`,
	} {
		if !strings.Contains(prom, want) {
			t.Errorf("/stats/prometheus lacks %q", want)
		}
	}
	if got := get("/clusters"); !strings.Contains(got, "web::"+up.hostPort()+"::") {
		t.Errorf("/clusters = %q, want the web host", got)
	}
	var dump map[string]any
	if err := json.Unmarshal([]byte(get("/config_dump")), &dump); err != nil || dump["clusters"] == nil {
		t.Errorf("/config_dump not the config as JSON: %v", err)
	}
	resp, _ := client.Post(admin+"/ready", "text/plain", nil)
	if resp != nil && resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /ready = %d, want 405", resp.StatusCode)
	}

	data, _ := os.ReadFile(logPath)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 {
		t.Fatalf("access log has %d lines, want 3:\n%s", len(lines), data)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("access log line not JSON: %v: %s", err, lines[0])
	}
	if first["path"] != "/a" || first["response_code"] != float64(200) || first["upstream_host"] != up.hostPort() {
		t.Errorf("access log line = %v", first)
	}
}

func TestEarlyHintsPassThrough(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "final")
	}))
	s := startEdge(t, basicConfig, "UPSTREAM", up.hostPort())
	var got []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req := mustReq(t, "GET", s.url("public", "/hints"))
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp := mustDo(t, req)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(got) != 1 || got[0] != "103 </style.css>; rel=preload" {
		t.Errorf("1xx responses seen by the client: %q, want one 103 with the Link header", got)
	}
	if resp.StatusCode != 200 || string(body) != "final" || resp.Header.Get("Link") != "" {
		t.Errorf("final response: %d %q Link=%q", resp.StatusCode, body, resp.Header.Get("Link"))
	}
}

func TestHTTP2MaxConcurrentStreamsAdvertised(t *testing.T) {
	cfg := strings.Replace(basicConfig, "    route_config: main\n", "    route_config: main\n    limits: {max_concurrent_streams: 7}\n", 1)
	s := startEdge(t, cfg, "UPSTREAM", closedPort(t))
	c, err := net.Dial("tcp", s.Addr("public").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %T, want SETTINGS", f)
	}
	if v, ok := sf.Value(http2.SettingMaxConcurrentStreams); !ok || v != 7 {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d (sent %v), want 7", v, ok)
	}
}

// TestWebSocketUpgradeAfterWatch: an upgrade answered after h1WatchAfter
// (the connection is being watched for the client leaving) still tunnels
// every byte: the watch stops before the tunnel reads.
func TestWebSocketUpgradeAfterWatch(t *testing.T) {
	wsUp := newUpstream(t, websocket.Server{
		Handshake: func(*websocket.Config, *http.Request) error {
			time.Sleep(2 * h1WatchAfter)
			return nil
		},
		Handler: func(c *websocket.Conn) {
			for {
				var msg string
				if err := websocket.Message.Receive(c, &msg); err != nil {
					return
				}
				websocket.Message.Send(c, "echo: "+msg)
			}
		},
	})
	s := startEdge(t, basicConfig, "UPSTREAM", wsUp.hostPort())
	ws, err := websocket.Dial("ws://"+s.Addr("public").String()+"/ws", "", "http://"+s.Addr("public").String())
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetDeadline(time.Now().Add(5 * time.Second))
	for _, m := range []string{"one", "two"} {
		if err := websocket.Message.Send(ws, m); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil {
			t.Fatal(err)
		}
		if got != "echo: "+m {
			t.Errorf("got %q, want echo of %q", got, m)
		}
	}
}
