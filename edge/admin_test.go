package edge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/internal/pebbletest"
)

// adminClient talks to a server's admin API.
type adminClient struct {
	t    *testing.T
	base string
}

func newAdminClient(t *testing.T, s *Server) adminClient {
	return adminClient{t, "http://" + s.Addr("admin").String()}
}

// do sends method path and returns the status, the body and the headers.
func (a adminClient) do(method, path string) (int, string, http.Header) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, nil)
	if err != nil {
		a.t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// get returns the body of GET path, failing the test unless it is 200.
func (a adminClient) get(path string) string {
	a.t.Helper()
	code, body, _ := a.do("GET", path)
	if code != 200 {
		a.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	return body
}

// post sends POST path and fails the test unless it answers 200.
func (a adminClient) post(path string) string {
	a.t.Helper()
	code, body, _ := a.do("POST", path)
	if code != 200 {
		a.t.Fatalf("POST %s: %d %s", path, code, body)
	}
	return body
}

// scrape parses /stats/prometheus with Prometheus' own text parser.
func (a adminClient) scrape() map[string]*dto.MetricFamily {
	a.t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(a.get("/stats/prometheus")))
	if err != nil {
		a.t.Fatalf("/stats/prometheus does not parse: %v", err)
	}
	return fams
}

// promMetric finds the metric of family name whose labels include want
// (name, value pairs).
func promMetric(fams map[string]*dto.MetricFamily, name string, want ...string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m
	}
	return nil
}

// promValue is a counter's or gauge's value, -1 when absent.
func promValue(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	m := promMetric(fams, name, labels...)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return -1
}

const metricsConfig = `
admin: {address: "127.0.0.1:0"}
listeners: [{name: public, address: "127.0.0.1:0", route_config: main}]
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - {match: {prefix: /up/}, route: {cluster: up}}
          - {match: {path: /old}, redirect: {path_redirect: /new, response_code: 301}}
          - {match: {path: /ping}, direct_response: {status: 200, body: "pong\n"}}
clusters:
  - {name: up, endpoints: ["UPSTREAM"]}
`

// TestMetricsMatchTraffic sends known traffic and checks, through a real
// Prometheus parse of /stats/prometheus, that every count equals it.
func TestMetricsMatchTraffic(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/up/fail" {
			w.WriteHeader(503)
			return
		}
		io.WriteString(w, "ok")
	}))
	s, _ := runEdge(t, metricsConfig, Options{Epoch: 2, Version: "v1.2.3-test"}, "UPSTREAM", up.hostPort())
	traffic := []struct {
		path   string
		n      int
		status int
	}{
		{"/up/ok", 4, 200},   // forwarded, 2xx
		{"/up/fail", 2, 503}, // forwarded, 5xx from the upstream
		{"/ping", 3, 200},    // direct response
		{"/old", 1, 301},     // redirect
		{"/nope", 2, 404},    // no route
	}
	for _, c := range traffic {
		for range c.n {
			resp := mustDo(t, mustReq(t, "GET", s.url("public", c.path)))
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("GET %s: %d, want %d", c.path, resp.StatusCode, c.status)
			}
		}
	}
	const total, forwarded = 12, 6

	a := newAdminClient(t, s)
	// Stats are recorded as the exchange ends, which may be just after
	// the client has its response: wait (bounded) until all are in.
	var fams map[string]*dto.MetricFamily
	for deadline := time.Now().Add(5 * time.Second); ; {
		fams = a.scrape()
		h := promMetric(fams, "edge_http_downstream_rq_time", "listener", "public")
		if h != nil && h.Histogram.GetSampleCount() == total || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"edge_http_downstream_rq_total", []string{"listener", "public"}, total},
		{"edge_http_downstream_rq_xx", []string{"listener", "public", "response_code_class", "1xx"}, 0},
		{"edge_http_downstream_rq_xx", []string{"listener", "public", "response_code_class", "2xx"}, 7},
		{"edge_http_downstream_rq_xx", []string{"listener", "public", "response_code_class", "3xx"}, 1},
		{"edge_http_downstream_rq_xx", []string{"listener", "public", "response_code_class", "4xx"}, 2},
		{"edge_http_downstream_rq_xx", []string{"listener", "public", "response_code_class", "5xx"}, 2},
		{"edge_http_downstream_rq_active", []string{"listener", "public"}, 0},
		{"edge_listener_downstream_cx_total", []string{"listener", "public"}, 1}, // one keep-alive connection
		{"edge_cluster_upstream_rq_total", []string{"cluster", "up"}, forwarded},
		{"edge_cluster_upstream_rq_xx", []string{"cluster", "up", "response_code_class", "2xx"}, 4},
		{"edge_cluster_upstream_rq_xx", []string{"cluster", "up", "response_code_class", "5xx"}, 2},
		{"edge_cluster_upstream_cx_total", []string{"cluster", "up"}, 1},
		{"edge_cluster_membership_total", []string{"cluster", "up"}, 1},
		{"edge_server_hot_restart_epoch", nil, 2},
		{"edge_server_live", nil, 1},
		{"edge_server_state", nil, 0},
		{"edge_server_version", []string{"version", "v1.2.3-test"}, 1},
	} {
		if got := promValue(fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	alloc := promValue(fams, "edge_server_memory_allocated")
	if heap := promValue(fams, "edge_server_memory_heap_size"); alloc <= 0 || heap < alloc {
		t.Errorf("memory_allocated %v, memory_heap_size %v: want allocated > 0 and heap >= allocated", alloc, heap)
	}
	if up := promValue(fams, "edge_server_uptime"); up < 0 {
		t.Errorf("edge_server_uptime = %v", up)
	}

	wantBounds := []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000, math.Inf(1)}
	for _, c := range []struct {
		name, label, value string
		count              uint64
	}{
		{"edge_http_downstream_rq_time", "listener", "public", total},
		{"edge_cluster_upstream_rq_time", "cluster", "up", forwarded},
	} {
		if typ := fams[c.name].GetType(); typ != dto.MetricType_HISTOGRAM {
			t.Errorf("%s is a %v, want a histogram", c.name, typ)
			continue
		}
		h := promMetric(fams, c.name, c.label, c.value).GetHistogram()
		if h.GetSampleCount() != c.count {
			t.Errorf("%s count = %d, want %d", c.name, h.GetSampleCount(), c.count)
		}
		var bounds []float64
		var last uint64
		for _, b := range h.GetBucket() {
			if b.GetCumulativeCount() < last {
				t.Errorf("%s buckets not cumulative: %v", c.name, h.GetBucket())
			}
			last = b.GetCumulativeCount()
			bounds = append(bounds, b.GetUpperBound())
		}
		if !slices.Equal(bounds, wantBounds) {
			t.Errorf("%s bounds = %v, want Envoy's (ms) %v", c.name, bounds, wantBounds)
		}
		// Loopback requests take well under 10 s, so the 10000 ms bucket
		// holds them all.
		if b := h.GetBucket()[12]; b.GetCumulativeCount() != c.count {
			t.Errorf("%s le=%v holds %d, want all %d", c.name, b.GetUpperBound(), b.GetCumulativeCount(), c.count)
		}
		if sum := h.GetSampleSum(); sum <= 0 || sum > float64(c.count)*10000 {
			t.Errorf("%s sum = %v ms, want a positive loopback latency", c.name, sum)
		}
	}

	text := a.get("/stats")
	line := ""
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "edge_http_downstream_rq_time.listener=public: ") {
			line = l
		}
	}
	if !strings.Contains(line, " P50=") || !strings.Contains(line, " P99=") || !strings.Contains(line, "count=12 sum=") {
		t.Errorf("/stats histogram line = %q, want quantiles, count=12 and the sum", line)
	}
	if !strings.Contains(text, "edge_http_downstream_rq_total.listener=public: 12\n") {
		t.Errorf("/stats lacks the request counter:\n%s", text)
	}
	filtered := a.get("/stats?filter=" + url.QueryEscape(`upstream_rq_time\.`))
	if strings.Count(filtered, "\n") != 1 || !strings.HasPrefix(filtered, "edge_cluster_upstream_rq_time.cluster=up: ") {
		t.Errorf("/stats?filter=upstream_rq_time\\. = %q, want the one histogram line", filtered)
	}
	if code, _, _ := a.do("GET", "/stats?filter=("); code != 400 {
		t.Errorf("/stats with a bad filter: %d, want 400", code)
	}
}

// TestAdminMethods: endpoints that change state answer POST only, with 405
// and an Allow header otherwise; read-only ones answer GET only.
func TestAdminMethods(t *testing.T) {
	s := startEdge(t, metricsConfig, "UPSTREAM", closedPort(t))
	a := newAdminClient(t, s)
	for _, p := range []string{"/healthcheck/fail", "/healthcheck/ok", "/drain_listeners", "/quitquitquit"} {
		code, _, h := a.do("GET", p)
		if code != http.StatusMethodNotAllowed || h.Get("Allow") != "POST" {
			t.Errorf("GET %s: %d Allow %q, want 405 Allow POST", p, code, h.Get("Allow"))
		}
	}
	for _, p := range []string{"/ready", "/server_info", "/listeners", "/certs", "/stats", "/config_dump", "/clusters"} {
		if code, _, _ := a.do("POST", p); code != http.StatusMethodNotAllowed {
			t.Errorf("POST %s: %d, want 405", p, code)
		}
	}
	if code, _, h := a.do("DELETE", "/logging"); code != http.StatusMethodNotAllowed || !strings.Contains(h.Get("Allow"), "POST") {
		t.Errorf("DELETE /logging: %d Allow %q, want 405 allowing GET and POST", code, h.Get("Allow"))
	}
	if got := a.get("/"); !strings.Contains(got, "POST /quitquitquit") || !strings.Contains(got, "GET  /certs") {
		t.Errorf("index does not list the endpoints:\n%s", got)
	}
	// Nothing took effect.
	if got := a.get("/ready"); got != "LIVE\n" {
		t.Errorf("/ready after refused requests = %q, want LIVE", got)
	}
}

// TestAdminHealthcheckAndDrain: /healthcheck/fail turns /ready to 503 while
// traffic flows; /healthcheck/ok restores it; /drain_listeners closes the
// listener to new connections while the admin API still answers.
func TestAdminHealthcheckAndDrain(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(echoHandler))
	s := startEdge(t, metricsConfig, "UPSTREAM", up.hostPort())
	a := newAdminClient(t, s)
	proxied := func() int {
		resp := mustDo(t, mustReq(t, "GET", s.url("public", "/up/x")))
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	state := func() (int, string, serverInfo) {
		code, body, _ := a.do("GET", "/ready")
		var info serverInfo
		if err := json.Unmarshal([]byte(a.get("/server_info")), &info); err != nil {
			t.Fatal(err)
		}
		return code, body, info
	}

	a.post("/healthcheck/fail")
	if code, body, info := state(); code != 503 || body != "DRAINING\n" || info.State != "DRAINING" || !info.HealthcheckFailed {
		t.Errorf("after /healthcheck/fail: /ready %d %q, server_info %+v; want 503 DRAINING", code, body, info)
	}
	if live := promValue(a.scrape(), "edge_server_live"); live != 0 {
		t.Errorf("edge_server_live = %v while the health check is failed, want 0", live)
	}
	if got := proxied(); got != 200 {
		t.Errorf("proxied request with the health check failed: %d, want 200 (traffic still flows)", got)
	}
	a.post("/healthcheck/ok")
	if code, body, info := state(); code != 200 || body != "LIVE\n" || info.State != "LIVE" || info.HealthcheckFailed {
		t.Errorf("after /healthcheck/ok: /ready %d %q, server_info %+v; want 200 LIVE", code, body, info)
	}

	addr := s.Addr("public").String()
	a.post("/drain_listeners")
	if code, body, info := state(); code != 503 || body != "DRAINING\n" || info.State != "DRAINING" {
		t.Errorf("after /drain_listeners: /ready %d %q, state %s; want 503 DRAINING", code, body, info.State)
	}
	refused := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			refused = true
			break
		}
		c.Close()
	}
	if !refused {
		t.Errorf("listener %s still accepts connections after /drain_listeners", addr)
	}
	if got := a.get("/listeners"); !strings.Contains(got, "public::"+addr) {
		t.Errorf("admin /listeners after the drain = %q", got)
	}
}

// TestAdminQuitQuitQuit: /quitquitquit answers, then Run returns.
func TestAdminQuitQuitQuit(t *testing.T) {
	s, result := runEdge(t, metricsConfig, Options{}, "UPSTREAM", closedPort(t))
	a := newAdminClient(t, s)
	if got := a.post("/quitquitquit"); got != "OK\n" {
		t.Errorf("/quitquitquit = %q, want OK", got)
	}
	select {
	case err := <-result:
		if err != nil {
			t.Errorf("Run after /quitquitquit: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after /quitquitquit")
	}
}

// TestAdminLogging changes the level of a real slog handler and shows a
// debug line appear only after the change.
func TestAdminLogging(t *testing.T) {
	logs := &pebbletest.LogBuffer{}
	lv := new(slog.LevelVar)
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: lv}))
	s, _ := runEdge(t, metricsConfig, Options{Logger: logger, LogLevel: lv}, "UPSTREAM", closedPort(t))
	a := newAdminClient(t, s)
	failing := func() {
		// The upstream refuses connections: edge logs the failure at debug.
		resp := mustDo(t, mustReq(t, "GET", s.url("public", "/up/x")))
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Fatalf("request to a refusing upstream: %d, want 503", resp.StatusCode)
		}
	}
	const debugLine = "upstream request failed"

	if got := a.get("/logging"); got != "level: info\n" {
		t.Errorf("GET /logging = %q, want level: info", got)
	}
	failing()
	if strings.Contains(logs.String(), debugLine) {
		t.Fatalf("debug line logged at level info:\n%s", logs)
	}
	if got := a.post("/logging?level=debug"); got != "level: debug\n" {
		t.Errorf("POST /logging?level=debug = %q", got)
	}
	if lv.Level() != slog.LevelDebug {
		t.Errorf("level after POST = %v, want DEBUG", lv.Level())
	}
	failing()
	// The line is written after the response: wait for it, bounded.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), debugLine) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), debugLine) {
		t.Errorf("no debug line after POST /logging?level=debug:\n%s", logs)
	}
	if got := a.get("/logging"); got != "level: debug\n" {
		t.Errorf("GET /logging = %q, want level: debug", got)
	}
	for _, q := range []string{"?level=loud", ""} {
		code, body, _ := a.do("POST", "/logging"+q)
		if code != 400 || !strings.Contains(body, "debug, info, warn") {
			t.Errorf("POST /logging%s: %d %q, want 400 naming the levels", q, code, body)
		}
	}
	a.post("/logging?level=WARNING")
	if lv.Level() != slog.LevelWarn {
		t.Errorf("level after WARNING = %v, want WARN", lv.Level())
	}

	// Without a settable level: a clear 400, and GET shows the fixed one.
	fixed := startEdge(t, metricsConfig, "UPSTREAM", closedPort(t))
	fa := newAdminClient(t, fixed)
	code, body, _ := fa.do("POST", "/logging?level=debug")
	if code != 400 || !strings.Contains(body, "without a settable level") {
		t.Errorf("POST /logging without LogLevel: %d %q, want 400 explaining why", code, body)
	}
	if got := fa.get("/logging"); !strings.Contains(got, "fixed") {
		t.Errorf("GET /logging without LogLevel = %q, want it marked fixed", got)
	}
}

func TestAdminServerInfoAndListeners(t *testing.T) {
	s, _ := runEdge(t, metricsConfig, Options{Epoch: 3, Version: "v9.9.9-test", DrainTime: 7 * time.Second, ShutdownTime: 9 * time.Second},
		"UPSTREAM", closedPort(t))
	a := newAdminClient(t, s)
	var info serverInfo
	if err := json.Unmarshal([]byte(a.get("/server_info")), &info); err != nil {
		t.Fatal(err)
	}
	want := serverInfo{Version: "v9.9.9-test", State: "LIVE", Epoch: 3, PID: info.PID, ConfigFile: "test.yaml",
		DrainTime: "7s", ShutdownTime: "9s", UptimeSeconds: info.UptimeSeconds}
	if info != want || info.PID <= 0 || info.UptimeSeconds < 0 || info.UptimeSeconds > 60 {
		t.Errorf("/server_info = %+v, want %+v with a pid and a small uptime", info, want)
	}

	var ls []listenerInfo
	if err := json.Unmarshal([]byte(a.get("/listeners?format=json")), &ls); err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].Name != "public" || ls[0].Address != s.Addr("public").String() || ls[0].TLS ||
		!slices.Equal(ls[0].Protocols, []string{"http1", "http2"}) {
		t.Errorf("/listeners = %+v, want public at %s, http1 and http2, no TLS", ls, s.Addr("public"))
	}
}

// issueValid writes a leaf certificate for name signed by ca, valid until
// notAfter, and returns its files and serial.
func (ca *testCA) issueValid(t *testing.T, file, name string, notAfter time.Time) (certFile, keyFile string, serial *big.Int) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial = big.NewInt(time.Now().UnixNano())
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name, "alt." + name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(ca.dir, file+".crt"), filepath.Join(ca.dir, file+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile, serial
}

func TestAdminCerts(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	soonCrt, soonKey, soonSerial := ca.issueValid(t, "soon", "soon.example.test", now.Add(10*24*time.Hour+time.Hour))
	laterCrt, laterKey, _ := ca.issueValid(t, "later", "later.example.test", now.Add(40*24*time.Hour+time.Hour))
	s, _ := runEdge(t, `
admin: {address: "127.0.0.1:0"}
listeners:
  - name: plain
    address: 127.0.0.1:0
    route_config: main
  - name: secure
    address: 127.0.0.1:0
    route_config: main
    tls:
      certificates:
        - {cert_file: LATER_CRT, key_file: LATER_KEY}
        - {cert_file: SOON_CRT, key_file: SOON_KEY}
route_configs:
  - name: main
    virtual_hosts:
      - {name: all, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200}}]}
clusters: []
`, Options{}, "LATER_CRT", laterCrt, "LATER_KEY", laterKey, "SOON_CRT", soonCrt, "SOON_KEY", soonKey)
	a := newAdminClient(t, s)
	var got struct {
		Certificates []certInfo `json:"certificates"`
		Errors       []string   `json:"errors"`
	}
	if err := json.Unmarshal([]byte(a.get("/certs")), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Certificates) != 2 || len(got.Errors) != 0 {
		t.Fatalf("/certs = %+v, want the two certificates of listener secure", got)
	}
	c := got.Certificates[1]
	if c.Listener != "secure" || c.Source != soonCrt || !slices.Equal(c.Names, []string{"soon.example.test", "alt.soon.example.test"}) ||
		c.Serial != soonSerial.Text(16) || !strings.Contains(c.Issuer, "edge test CA") || c.DaysUntilExpiration != 10 ||
		!c.NotAfter.Equal(now.Add(10*24*time.Hour+time.Hour).Truncate(time.Second)) {
		t.Errorf("/certs second entry = %+v, want soon.example.test from %s, serial %x, 10 days left", c, soonCrt, soonSerial)
	}
	if d := got.Certificates[0].DaysUntilExpiration; d != 40 {
		t.Errorf("first certificate: %d days left, want 40", d)
	}
	if v := promValue(a.scrape(), "edge_server_days_until_first_cert_expiring"); v != 10 {
		t.Errorf("edge_server_days_until_first_cert_expiring = %v, want 10", v)
	}
	var ls []listenerInfo
	json.Unmarshal([]byte(a.get("/listeners?format=json")), &ls)
	if len(ls) != 2 || ls[0].TLS || !ls[1].TLS {
		t.Errorf("/listeners TLS flags = %+v, want plain without and secure with TLS", ls)
	}
}

// TestConfigDumpRedactsSecrets: credentials written inline in the config
// (header values, a token in on_demand_ask's query) do not leave through
// /config_dump; file names do.
func TestConfigDumpRedactsSecrets(t *testing.T) {
	ca := newTestCA(t)
	crt, key := ca.issue(t, "srv", "www.example.test")
	src := strings.NewReplacer("CRT", crt, "KEY", key).Replace(`
admin: {address: "127.0.0.1:0"}
listeners:
  - name: secure
    address: 127.0.0.1:0
    route_config: main
    tls:
      certificates: [{cert_file: CRT, key_file: KEY}]
      acme:
        directory: https://acme.example.test/directory
        domains: [www.example.test]
        on_demand_ask: "http://127.0.0.1:5555/allow?token=hunter2-ask"
        storage: acme
route_configs:
  - name: main
    request_headers_to_add:
      - {name: Authorization, value: "Bearer hunter2-header"}
      - {name: x-edge-pop, value: fra1}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /, headers: [{name: x-api-key, exact: hunter2-match}]}
            direct_response: {status: 200}
clusters: []
`)
	cfg, err := config.Parse([]byte(src), "test.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	rec := httptest.NewRecorder()
	s.admin.srv.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/config_dump", nil))
	dump := rec.Body.String()
	if rec.Code != 200 {
		t.Fatalf("/config_dump: %d %s", rec.Code, dump)
	}
	if strings.Contains(dump, "hunter2") {
		t.Errorf("/config_dump leaks a secret:\n%s", dump)
	}
	for _, want := range []string{
		`"value": "[redacted]"`, `"exact": "[redacted]"`,
		`"on_demand_ask": "http://127.0.0.1:5555/allow?[redacted]"`,
		`"value": "fra1"`, `"cert_file": "` + crt + `"`, `"key_file": "` + key + `"`,
		`"directory": "https://acme.example.test/directory"`,
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("/config_dump lacks %s:\n%s", want, dump)
		}
	}
}

func TestRedact(t *testing.T) {
	doc := map[string]any{
		"ticket_keys":  []any{"k1", "k2"},
		"eab":          map[string]any{"key_id": "kid", "hmac_key": "c2VjcmV0"},
		"password":     "p",
		"key_file":     "/etc/edge/k.pem",
		"url":          "https://user:pw@ca.example.test/dir?x=1",
		"plain_url":    "https://ca.example.test/dir",
		"cookie_hdr":   map[string]any{"name": "Cookie", "value": "sid=1"},
		"other_header": map[string]any{"name": "x-trace", "value": "keep"},
	}
	got, _ := json.Marshal(redact(doc))
	want := `{"cookie_hdr":{"name":"Cookie","value":"[redacted]"},"eab":{"hmac_key":"[redacted]","key_id":"kid"},` +
		`"key_file":"/etc/edge/k.pem","other_header":{"name":"x-trace","value":"keep"},"password":"[redacted]",` +
		`"plain_url":"https://ca.example.test/dir","ticket_keys":"[redacted]","url":"https://user:redacted@ca.example.test/dir?[redacted]"}`
	if string(got) != want {
		t.Errorf("redact =\n%s\nwant\n%s", got, want)
	}
}

// TestAccessLogResponseFlags runs one request per outcome through a real
// edge and checks the %RESPONSE_CODE% and %RESPONSE_FLAGS% its access log
// line carries.
func TestAccessLogResponseFlags(t *testing.T) {
	ok := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	unavailable := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	slow := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	reset := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, _ := http.NewResponseController(w).Hijack()
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}))
	release := make(chan struct{})
	hold := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	logPath := filepath.Join(t.TempDir(), "access.log")
	s := startEdge(t, `
admin: {address: ""}
listeners:
  - name: public
    address: 127.0.0.1:0
    route_config: main
    access_log: {path: LOGPATH, format: "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_REQUEST_ATTEMPT_COUNT%"}
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - {match: {prefix: /ok}, route: {cluster: ok}}
          - {match: {prefix: /slow}, route: {cluster: slow, timeout: 200ms}}
          - {match: {prefix: /refused}, route: {cluster: refused}}
          - {match: {prefix: /reset}, route: {cluster: reset}}
          - {match: {prefix: /nohost}, route: {cluster: nohost}}
          - {match: {prefix: /hold}, route: {cluster: hold}}
          - {match: {prefix: /retry-overflow}, route: {cluster: unavailable_nobudget, retry_policy: {retry_on: [5xx], num_retries: 2, backoff: {base_interval: 1ms}}}}
          - {match: {prefix: /retry}, route: {cluster: unavailable, retry_policy: {retry_on: [5xx], num_retries: 1, backoff: {base_interval: 1ms}}}}
          - {match: {prefix: /plain503}, route: {cluster: unavailable}}
clusters:
  - {name: ok, endpoints: ["OK"]}
  - {name: slow, endpoints: ["SLOW"]}
  - {name: refused, endpoints: ["REFUSED"], connect_timeout: 1s}
  - {name: reset, endpoints: ["RESET"]}
  - {name: nohost, type: strict_dns, endpoints: ["no-such-host.invalid:80"]}
  - {name: hold, endpoints: ["HOLD"], circuit_breakers: {max_requests: 1}}
  - {name: unavailable, endpoints: ["UNAVAILABLE"]}
  - {name: unavailable_nobudget, endpoints: ["UNAVAILABLE"], circuit_breakers: {max_retries: 0}}
`, "LOGPATH", logPath, "OK", ok.hostPort(), "SLOW", slow.hostPort(), "REFUSED", closedPort(t),
		"RESET", reset.hostPort(), "HOLD", hold.hostPort(), "UNAVAILABLE", unavailable.hostPort())

	// One request holds the only max_requests slot of cluster hold, so the
	// overflow row is refused.
	held := make(chan int, 1)
	go func() {
		resp, err := client.Get(s.url("public", "/hold/first"))
		if err != nil {
			held <- 0
			return
		}
		resp.Body.Close()
		held <- resp.StatusCode
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if v, _ := s.Stats().Lookup("edge_cluster_upstream_rq_active", statsLabel("cluster", "hold")); v == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the holding request never reached the upstream")
		}
	}

	cases := []struct {
		name, path string
		status     int
		flags      string
		attempts   string
	}{
		{"success", "/ok", 200, "-", "1"},
		{"no route", "/nothing-routes-here", 404, "NR", "0"},
		{"upstream timeout", "/slow", 504, "UT", "1"},
		{"connect failure", "/refused", 503, "UF", "1"},
		{"upstream reset", "/reset", 503, "UC", "1"},
		{"no healthy upstream", "/nohost", 503, "UH", "0"},           // no host to try
		{"circuit breaker overflow", "/hold/second", 503, "UO", "1"}, // refused at the try, as Envoy's pool
		{"upstream 503 without retries", "/plain503", 503, "-", "1"},
		{"retries exhausted", "/retry", 503, "URX", "2"},
		{"retry refused by max_retries", "/retry-overflow", 503, "URX", "1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := mustDo(t, mustReq(t, "GET", s.url("public", c.path)))
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Errorf("GET %s: %d, want %d", c.path, resp.StatusCode, c.status)
			}
			want := c.path + " " + strconv.Itoa(c.status) + " " + c.flags + " " + c.attempts
			got := waitLogLine(t, logPath, c.path+" ")
			if got != want {
				t.Errorf("access log line %q, want %q", got, want)
			}
		})
	}
	close(release)
	if st := <-held; st != 200 {
		t.Errorf("holding request: %d, want 200", st)
	}

	// Local replies for upstream failures count as the cluster's 5xx: the
	// 504 of the timeout too.
	for _, c := range []string{"slow", "refused", "reset", "nohost", "hold"} {
		for class, want := range map[string]float64{"4xx": 0, "5xx": 1} {
			got, _ := s.Stats().Lookup("edge_cluster_upstream_rq_xx", statsLabel("cluster", c), statsLabel("response_code_class", class))
			if got != want {
				t.Errorf("cluster %s: upstream_rq_xx %s = %v, want %v", c, class, got, want)
			}
		}
	}
}

// waitLogLine returns the access log line starting with prefix, waiting
// (bounded) for it: the line is written as the exchange ends, which may be
// just after the client has its response.
func waitLogLine(t *testing.T, path, prefix string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, _ := os.ReadFile(path)
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access log line for %q in:\n%s", prefix, data)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAdminNonLoopbackBindingAllowed: with allow_non_loopback the admin
// server really binds every interface (TestAdminBinding in package config
// covers the refusal without it).
func TestAdminNonLoopbackBindingAllowed(t *testing.T) {
	s := startEdge(t, strings.Replace(metricsConfig, `admin: {address: "127.0.0.1:0"}`,
		`admin: {address: "0.0.0.0:0", allow_non_loopback: true}`, 1), "UPSTREAM", closedPort(t))
	addr := s.Addr("admin").(*net.TCPAddr)
	if !addr.IP.IsUnspecified() {
		t.Fatalf("admin bound to %v, want every interface", addr)
	}
	resp, err := client.Get("http://127.0.0.1:" + strconv.Itoa(addr.Port) + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/ready through the wildcard bind: %d", resp.StatusCode)
	}
}
