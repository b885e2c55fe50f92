package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
	"golang.org/x/net/websocket"

	"github.com/edgeproxy/edge/hotrestart/shmstats"
	"github.com/edgeproxy/edge/internal/testcert"
)

// hotEdge is an edge started by a test and every generation it restarts
// into. Its output (all generations share it) goes to a file.
type hotEdge struct {
	t       *testing.T
	bin     string // the path every generation is started from
	cfg     string
	admin   string
	baseID  int
	env     []string
	pidFile string
	logPath string
	first   *exec.Cmd
	waited  chan struct{}
}

// hotConfig is the config of the hot restart tests: two cleartext
// listeners (one for the Go clients, one for wrk) in front of one upstream.
const hotConfig = `admin: {address: "ADMIN"}
listeners:
  - name: public
    address: PUBLIC
    protocols: [http1, http2]
    route_config: main
  - name: bench
    address: BENCH
    route_config: main
  - name: secure
    address: SECURE
    protocols: [http1, http2, http3]
    route_config: main
    tls:
      certificates:
        - {cert_file: "CERT", key_file: "KEY"}
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: svc, timeout: 30s}
clusters:
  - name: svc
    type: static
    endpoints: ["UPSTREAM"]
    protocol: http1
`

// copyBinary copies the test build of edge to dir, so that a test can
// replace it on disk.
func copyBinary(t *testing.T, dir string) string {
	t.Helper()
	src, err := buildEdge()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "edge")
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// startHotEdge writes cfg (with the placeholders replaced) and runs edge on
// it with the given extra flags, waiting until it is ready.
func startHotEdge(t *testing.T, cfg, admin string, args ...string) *hotEdge {
	t.Helper()
	dir := t.TempDir()
	e := &hotEdge{
		t: t, bin: copyBinary(t, dir), cfg: filepath.Join(dir, "edge.yaml"),
		baseID: nextBaseID(), pidFile: filepath.Join(dir, "edge.pid"), logPath: filepath.Join(dir, "edge.log"),
		waited: make(chan struct{}),
	}
	e.env = append(os.Environ(), "EDGE_RUNTIME_DIR="+runtimeDir(t))
	e.admin = admin
	if err := os.WriteFile(e.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	e.first = exec.Command(e.bin, append([]string{"run", "-c", e.cfg, "--base-id", strconv.Itoa(e.baseID),
		"--pid-file", e.pidFile, "--log-level", "info"}, args...)...)
	e.first.Env = e.env
	// A file, not a pipe: later generations inherit it, and Wait must not
	// wait for them.
	e.first.Stdout, e.first.Stderr = logf, logf
	if err := e.first.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { e.first.Wait(); close(e.waited) }()
	t.Cleanup(e.stop)
	e.waitReady(15 * time.Second)
	return e
}

// stop ends the newest generation (named by the PID file) and waits for
// every generation to be gone; on failure it shows the log.
func (e *hotEdge) stop() {
	if pid := e.pid(); pid > 0 {
		syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(15 * time.Second)
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	select {
	case <-e.waited:
	case <-time.After(15 * time.Second):
		e.first.Process.Kill()
	}
	shmstats.Remove(e.baseID)
	if e.t.Failed() {
		b, _ := os.ReadFile(e.logPath)
		e.t.Logf("edge log:\n%s", tail(string(b), 80))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || len(s) < i+3 || s[i+2] != 'Z'
}

// socketPath is the control socket of e.
func (e *hotEdge) socketPath() string {
	for _, kv := range e.env {
		if dir, ok := strings.CutPrefix(kv, "EDGE_RUNTIME_DIR="); ok {
			return filepath.Join(dir, "edge-"+strconv.Itoa(e.baseID)+".sock")
		}
	}
	return ""
}

// pid is the serving generation's PID, from the PID file.
func (e *hotEdge) pid() int {
	b, err := os.ReadFile(e.pidFile)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

func (e *hotEdge) waitReady(d time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + e.admin + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, _ := os.ReadFile(e.logPath)
	e.t.Fatalf("edge not ready after %s; log:\n%s", d, b)
}

// restart runs `edge restart` (from the test build, not from e.bin, which
// a test may replace with something broken) and returns its output and
// error.
func (e *hotEdge) restart() (string, error) {
	bin, err := buildEdge()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bin, "restart", "--base-id", strconv.Itoa(e.baseID), "--timeout", "60s")
	cmd.Env = e.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var restartedRE = regexp.MustCompile(`edge restarted: pid (\d+), epoch (\d+)`)

// mustRestart restarts and returns the new PID and epoch.
func (e *hotEdge) mustRestart() (pid, epoch int) {
	e.t.Helper()
	out, err := e.restart()
	m := restartedRE.FindStringSubmatch(out)
	if err != nil || m == nil {
		e.t.Fatalf("edge restart: %v\n%s", err, out)
	}
	pid, _ = strconv.Atoi(m[1])
	epoch, _ = strconv.Atoi(m[2])
	return pid, epoch
}

// metric reads one sample from /stats/prometheus: the line whose name and
// labels are exactly series (e.g. `edge_http_downstream_rq_total{listener="public"}`).
func (e *hotEdge) metric(series string) float64 {
	e.t.Helper()
	resp, err := http.Get("http://" + e.admin + "/stats/prometheus")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if ok && name == series {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				e.t.Fatalf("%s: %v", sc.Text(), err)
			}
			return f
		}
	}
	e.t.Fatalf("no sample %s in /stats/prometheus", series)
	return 0
}

// hotUpstream is the service behind edge: "/" answers at once, "/slow"
// after the duration in ?d=, "/ws" echoes WebSocket messages.
func hotUpstream(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok "+r.URL.Path)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "slow done")
	})
	mux.Handle("/ws", websocket.Handler(func(c *websocket.Conn) {
		for {
			var msg string
			if err := websocket.Message.Receive(c, &msg); err != nil {
				return
			}
			websocket.Message.Send(c, "echo: "+msg)
		}
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// hotEdgeConfig returns hotConfig on free ports, with its admin, public
// and bench addresses; the secure (TLS) listener's address and a client
// trusting its certificate are in tlsAddr and tlsClientConfig.
func hotEdgeConfig(t *testing.T) (cfg, admin, public, bench string) {
	admin, public, bench = freePort(t), freePort(t), freePort(t)
	certFile, keyFile := selfSigned(t)
	cfg = strings.NewReplacer("ADMIN", admin, "PUBLIC", public, "BENCH", bench, "SECURE", freePort(t),
		"CERT", certFile, "KEY", keyFile, "UPSTREAM", hotUpstream(t)).Replace(hotConfig)
	return cfg, admin, public, bench
}

// secureAddr is the address of the TLS listener in a hotEdgeConfig.
func secureAddr(t *testing.T, cfg string) string {
	t.Helper()
	m := regexp.MustCompile(`name: secure\n    address: (\S+)`).FindStringSubmatch(cfg)
	if m == nil {
		t.Fatal("no secure listener in the config")
	}
	return m[1]
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	return testcert.Loopback(t, "edge hot restart test").WriteFiles(t, t.TempDir())
}

// loadStats counts one client kind's requests.
type loadStats struct {
	sent, ok atomic.Int64
	mu       sync.Mutex
	errs     []string
}

func (s *loadStats) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) < 10 {
		s.errs = append(s.errs, err.Error())
	}
}

// get sends one GET and checks the upstream's answer.
func (s *loadStats) get(c *http.Client, url string) {
	s.sent.Add(1)
	resp, err := c.Get(url)
	if err != nil {
		s.fail(err)
		return
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !bytes.HasPrefix(b, []byte("ok /")) {
		s.fail(fmt.Errorf("status %d, body %.40q, err %v", resp.StatusCode, b, err))
		return
	}
	s.ok.Add(1)
}

// TestHotRestartUnderLoad restarts edge every 2 s for 30 s (once into a
// rebuilt binary) under HTTP/1.1 keep-alive clients, HTTP/2 clients with
// many concurrent streams, clients that open a connection per request, and
// wrk: every request must succeed, and the counters must equal the
// requests sent across all epochs.
func TestHotRestartUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s load test")
	}
	cfg, admin, public, bench := hotEdgeConfig(t)
	e := startHotEdge(t, cfg, admin, "--drain-time", "5s", "--parent-shutdown-time", "10s")
	const runFor = 30 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), runFor)
	defer cancel()
	base := "http://" + public

	var h1, h2, fresh loadStats
	var wg sync.WaitGroup
	keepAlive := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 20 * time.Second}
	for i := 0; i < 4; i++ {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				h1.get(keepAlive, fmt.Sprintf("%s/h1/%d", base, n))
			}
		})
	}
	h2c := &http.Client{Timeout: 20 * time.Second, Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
	for i := 0; i < 16; i++ { // 16 concurrent streams, on one or two connections
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				h2.get(h2c, fmt.Sprintf("%s/h2/%d", base, n))
			}
		})
	}
	for i := 0; i < 2; i++ {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
				fresh.get(c, fmt.Sprintf("%s/new/%d", base, n))
			}
		})
	}
	// Over TLS: HTTP/1.1 keep-alive (idle connections are closed at the
	// drain: Go's client retries a request that met such a close) and
	// HTTP/2 (GOAWAY).
	secure := "https://" + secureAddr(t, cfg)
	tlsConf := &tls.Config{InsecureSkipVerify: true} // a self-signed test certificate
	var tls1, tls2, h3 loadStats
	tlsH1 := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tlsConf, MaxIdleConnsPerHost: 2,
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
	}}
	tlsH2 := &http.Client{Timeout: 20 * time.Second, Transport: &http2.Transport{TLSClientConfig: tlsConf}}
	for i := 0; i < 2; i++ {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				tls1.get(tlsH1, fmt.Sprintf("%s/tls1/%d", secure, n))
			}
		})
	}
	for i := 0; i < 8; i++ {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				tls2.get(tlsH2, fmt.Sprintf("%s/tls2/%d", secure, n))
			}
		})
	}
	// HTTP/3: the old process's QUIC connections get GOAWAY; their packets,
	// read by the new process from the shared UDP socket, are forwarded back.
	h3rt := &http3.Transport{TLSClientConfig: tlsConf}
	defer h3rt.Close()
	h3c := &http.Client{Timeout: 20 * time.Second, Transport: h3rt}
	for i := 0; i < 4; i++ {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				h3.get(h3c, fmt.Sprintf("%s/h3/%d", secure, n))
			}
		})
	}
	var wrkOut []byte
	var wrkErr error
	wrkPath, lookErr := exec.LookPath("wrk")
	if lookErr == nil {
		wg.Go(func() {
			wrkOut, wrkErr = exec.Command(wrkPath, "-t1", "-c8", "-d"+strconv.Itoa(int(runFor/time.Second))+"s",
				"http://"+bench+"/wrk").CombinedOutput()
		})
	} else {
		t.Log("wrk is not installed: only the Go clients run")
	}

	// Restart every 2 s; halfway, replace the binary with a rebuilt one
	// (another version string) first.
	var pids []int
	lastEpoch := 0
	rebuilt := false
	for next := time.Now().Add(2 * time.Second); ; next = next.Add(2 * time.Second) {
		if !rebuilt && lastEpoch >= 6 {
			rebuildInto(t, e.bin, "rebuilt-for-test")
			rebuilt = true
		}
		// Every 2 s, and never sooner than 1 s after the last restart
		// (the rebuild may have taken a while).
		next = later(next, time.Now().Add(time.Second))
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(next)):
		}
		if ctx.Err() != nil {
			break
		}
		pid, epoch := e.mustRestart()
		if epoch != lastEpoch+1 {
			t.Errorf("restart gave epoch %d after %d", epoch, lastEpoch)
		}
		lastEpoch = epoch
		pids = append(pids, pid)
	}
	wg.Wait()

	for name, s := range map[string]*loadStats{"HTTP/1.1 keep-alive": &h1, "HTTP/2": &h2, "connection per request": &fresh,
		"TLS HTTP/1.1 keep-alive": &tls1, "TLS HTTP/2": &tls2, "HTTP/3": &h3} {
		t.Logf("%s: %d sent, %d ok", name, s.sent.Load(), s.ok.Load())
		if s.sent.Load() == 0 || s.ok.Load() != s.sent.Load() {
			t.Errorf("%s: %d of %d requests failed; first errors: %q", name, s.sent.Load()-s.ok.Load(), s.sent.Load(), s.errs)
		}
	}
	if lastEpoch < 10 {
		t.Errorf("only %d restarts in %s", lastEpoch, runFor)
	}
	sent := h1.sent.Load() + h2.sent.Load() + fresh.sent.Load()
	if got := e.metric(`edge_http_downstream_rq_total{listener="public"}`); got != float64(sent) {
		t.Errorf("edge_http_downstream_rq_total{listener=public} = %v after %d restarts, want the %d requests sent", got, lastEpoch, sent)
	}
	if got := e.metric(`edge_http_downstream_rq_xx{listener="public",response_code_class="2xx"}`); got != float64(sent) {
		t.Errorf("2xx responses = %v, want %d", got, sent)
	}
	if got, want := e.metric(`edge_http_downstream_rq_total{listener="secure"}`), tls1.sent.Load()+tls2.sent.Load()+h3.sent.Load(); got != float64(want) {
		t.Errorf("edge_http_downstream_rq_total{listener=secure} = %v, want the %d requests sent", got, want)
	}
	handed := e.metric(`edge_listener_downstream_cx_handed_off{listener="public"}`)
	adopted := e.metric(`edge_listener_downstream_cx_adopted{listener="public"}`)
	t.Logf("restarts: %d (pids %v); idle connections handed over: %v, adopted: %v; requests: %d", lastEpoch, pids, handed, adopted, sent)
	if handed == 0 || adopted != handed {
		t.Errorf("handed over %v idle connections, adopted %v: want equal and above 0", handed, adopted)
	}
	if lookErr == nil {
		t.Logf("wrk through the same restarts:\n%s", wrkOut)
		if wrkErr != nil {
			t.Errorf("wrk: %v", wrkErr)
		}
		if m := regexp.MustCompile(`Socket errors: .*|Non-2xx or 3xx responses: \d+`).FindAllString(string(wrkOut), -1); m != nil {
			t.Errorf("wrk saw errors: %q", m)
		}
		m := regexp.MustCompile(`(\d+) requests in`).FindStringSubmatch(string(wrkOut))
		if m == nil {
			t.Fatalf("no request count in wrk's output")
		}
		n, _ := strconv.Atoi(m[1])
		got := e.metric(`edge_http_downstream_rq_total{listener="bench"}`)
		// wrk counts answered requests; edge also counts the up to 8 it
		// had sent when its time was up.
		if got < float64(n) || got > float64(n+8) {
			t.Errorf("bench listener counted %v requests; wrk sent %d (+ up to 8 unanswered at its end)", got, n)
		}
	}
	if !strings.Contains(e.metricsText(), `edge_server_version{version="rebuilt-for-test"} 1`) {
		t.Errorf("the serving process is not the rebuilt binary")
	}
	// Old generations end once drained, by parent-shutdown-time (10 s)
	// at the latest.
	deadline := time.Now().Add(12 * time.Second)
	for _, pid := range pids[:len(pids)-1] {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(pid) {
			t.Errorf("an old generation (pid %d) is still running", pid)
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (e *hotEdge) metricsText() string {
	resp, err := http.Get("http://" + e.admin + "/stats/prometheus")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// rebuildInto builds edge with another version string and renames it over
// path, as a package upgrade would.
func rebuildInto(t *testing.T, path, version string) {
	t.Helper()
	tmp := path + ".new"
	out, err := exec.Command("go", "build", "-ldflags", "-X main.version="+version, "-o", tmp, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestHotRestartSlowRequestAndWebSocket: a 5 s response started before a
// restart completes on the old process; a WebSocket opened before it keeps
// working until drain-time and is closed then.
func TestHotRestartSlowRequestAndWebSocket(t *testing.T) {
	cfg, admin, public, _ := hotEdgeConfig(t)
	e := startHotEdge(t, cfg, admin, "--drain-time", "2s", "--parent-shutdown-time", "10s")
	oldPID := e.pid()

	slow := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + public + "/slow?d=5s")
		if err == nil {
			var b []byte
			b, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && (resp.StatusCode != 200 || string(b) != "slow done") {
				err = fmt.Errorf("status %d body %q", resp.StatusCode, b)
			}
		}
		slow <- err
	}()
	ws, err := websocket.Dial("ws://"+public+"/ws", "", "http://"+public)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	echo := func(msg string) error {
		ws.SetDeadline(time.Now().Add(3 * time.Second))
		if err := websocket.Message.Send(ws, msg); err != nil {
			return err
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil {
			return err
		}
		if got != "echo: "+msg {
			return fmt.Errorf("got %q", got)
		}
		return nil
	}
	if err := echo("before"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the slow request is on its way
	start := time.Now()
	newPID, _ := e.mustRestart()
	if newPID == oldPID {
		t.Fatalf("restart kept pid %d", oldPID)
	}
	// New requests go to the new process; the old one still runs.
	resp, err := http.Get("http://" + public + "/after")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !alive(oldPID) {
		t.Fatal("the old process exited before its slow response was done")
	}
	// The new process answers the admin API; the active-requests gauge is
	// the sum over both processes: the slow request and the WebSocket run
	// on the old one.
	if got := e.metric(`edge_http_downstream_rq_active{listener="public"}`); got != 2 {
		t.Errorf("downstream_rq_active during the drain = %v, want 2 (the old process's slow request and WebSocket)", got)
	}
	time.Sleep(time.Second)
	if err := echo("during the drain"); err != nil {
		t.Errorf("WebSocket during drain-time: %v", err)
	}
	// After drain-time (2 s), the old process closes the WebSocket.
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	var msg string
	err = websocket.Message.Receive(ws, &msg)
	closedAfter := time.Since(start)
	t.Logf("websocket closed after %s: %v", closedAfter, err)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("WebSocket not closed at drain-time: %v", err)
	} else if closedAfter < 1500*time.Millisecond {
		t.Errorf("WebSocket closed %s after the restart, before drain-time", closedAfter)
	}
	select {
	case err := <-slow:
		if err != nil {
			t.Errorf("slow request across the restart: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("slow request did not finish")
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(oldPID) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(oldPID) {
		t.Errorf("old process %d still running after its last request", oldPID)
	}
	t.Logf("old process gone %s after the restart", time.Since(start))
	if got := e.metric(`edge_http_downstream_rq_active{listener="public"}`); got != 0 {
		t.Errorf("downstream_rq_active after the old process exited = %v, want 0", got)
	}
}

// TestHotRestartParentShutdownTime: whatever still runs on the old process
// at --parent-shutdown-time is cut, and the process exits.
func TestHotRestartParentShutdownTime(t *testing.T) {
	cfg, admin, public, _ := hotEdgeConfig(t)
	e := startHotEdge(t, cfg, admin, "--drain-time", "1s", "--parent-shutdown-time", "2s")
	oldPID := e.pid()
	slow := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + public + "/slow?d=8s")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		slow <- err
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	e.mustRestart()
	select {
	case err := <-slow:
		if err == nil {
			t.Error("the 8 s request completed; parent-shutdown-time should have cut it")
		}
	case <-time.After(6 * time.Second):
		t.Fatal("the old process kept the request past parent-shutdown-time")
	}
	for alive(oldPID) && time.Since(start) < 6*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	if took := time.Since(start); alive(oldPID) || took < 1900*time.Millisecond {
		t.Errorf("old process exit after %s (alive %v), want at about 2s", took, alive(oldPID))
	}
}

// TestHotRestartFailures: a child that cannot serve never replaces the
// running process, and `edge restart` says why.
func TestHotRestartFailures(t *testing.T) {
	cfg, admin, public, _ := hotEdgeConfig(t)
	e := startHotEdge(t, cfg, admin, "--drain-time", "2s", "--parent-shutdown-time", "4s")
	pid := e.pid()
	serving := func(when string) {
		t.Helper()
		resp, err := http.Get("http://" + public + "/still")
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || e.pid() != pid || !alive(pid) {
			t.Fatalf("%s: status %d, pid file %d (want %d still serving)", when, resp.StatusCode, e.pid(), pid)
		}
	}

	t.Run("bad config", func(t *testing.T) {
		good, _ := os.ReadFile(e.cfg)
		bad := strings.Replace(string(good), "timeout: 30s}", "timeout: 30s, retires: 3}", 1)
		os.WriteFile(e.cfg, []byte(bad), 0o600)
		defer os.WriteFile(e.cfg, good, 0o600)
		out, err := e.restart()
		line := 1 + strings.Count(bad[:strings.Index(bad, "retires")], "\n")
		if err == nil || !strings.Contains(out, fmt.Sprintf("edge.yaml:%d:", line)) || !strings.Contains(out, "retires") {
			t.Errorf("edge restart with a bad config: err %v, output:\n%s", err, out)
		}
		serving("after a bad config")
		// The failed child must leave the control socket to the parent
		// (tableflip's Stop in a child would unlink it).
		time.Sleep(200 * time.Millisecond)
		if _, err := os.Stat(e.socketPath()); err != nil {
			t.Errorf("control socket after a failed restart: %v", err)
		}
	})

	t.Run("child crashes before ready", func(t *testing.T) {
		good, _ := os.ReadFile(e.bin)
		replace := func(b []byte) {
			if err := os.WriteFile(e.bin+".tmp", b, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(e.bin+".tmp", e.bin); err != nil {
				t.Fatal(err)
			}
		}
		replace([]byte("#!/bin/sh\necho crashing on purpose >&2\nexit 3\n"))
		defer replace(good)
		out, err := e.restart()
		if err == nil || !strings.Contains(out, "exit") {
			t.Errorf("edge restart into a crashing binary: err %v, output:\n%s", err, out)
		}
		serving("after a crashed child")
	})

	t.Run("incompatible shared memory", func(t *testing.T) {
		path := shmstats.Path(e.baseID)
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var orig [4]byte
		f.ReadAt(orig[:], 8) // the layout version
		f.WriteAt([]byte{99, 0, 0, 0}, 8)
		defer f.WriteAt(orig[:], 8)
		out, err := e.restart()
		if err == nil || !strings.Contains(out, "version") {
			t.Errorf("edge restart with an incompatible stats layout: err %v, output:\n%s", err, out)
		}
		serving("after an incompatible child")
	})

	t.Run("concurrent restart refused", func(t *testing.T) {
		// A cluster whose health check waits for a silent host makes the
		// child take a while to warm up.
		silent, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		good, _ := os.ReadFile(e.cfg)
		defer os.WriteFile(e.cfg, good, 0o600)
		slowWarm := string(good) + `  - name: silent
    type: static
    endpoints: ["` + silent.Addr().String() + `"]
    health_check: {path: /healthz, interval: 5s, timeout: 1500ms}
`
		os.WriteFile(e.cfg, []byte(slowWarm), 0o600)
		first := make(chan string, 1)
		go func() { out, _ := e.restart(); first <- out }()
		time.Sleep(500 * time.Millisecond)
		out, err := e.restart()
		if err == nil || !strings.Contains(out, "already under way") {
			t.Errorf("second restart while the first child starts: err %v, output:\n%s", err, out)
		}
		if out := <-first; !restartedRE.MatchString(out) {
			t.Fatalf("first restart: %s", out)
		}
		pid = e.pid()
	})
}

// TestHotRestartThreeGenerations: a restart while the previous generation
// still drains is not blocked: that generation ends at once.
func TestHotRestartThreeGenerations(t *testing.T) {
	cfg, admin, public, _ := hotEdgeConfig(t)
	e := startHotEdge(t, cfg, admin, "--drain-time", "60s", "--parent-shutdown-time", "90s")
	gen0 := e.pid()
	held := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + public + "/slow?d=30s")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		held <- err
	}()
	time.Sleep(200 * time.Millisecond)
	gen1, _ := e.mustRestart()
	if !alive(gen0) {
		t.Fatal("generation 0 should still drain its 30 s request")
	}
	start := time.Now()
	gen2, epoch := e.mustRestart()
	took := time.Since(start)
	t.Logf("third generation ready %s after edge restart, generation 0 ended", took)
	if took > 10*time.Second {
		t.Errorf("the third generation took %s to start", took)
	}
	if epoch != 2 || gen2 == gen1 {
		t.Errorf("epoch %d pid %d", epoch, gen2)
	}
	if alive(gen0) {
		t.Error("generation 0 still runs after a third one started")
	}
	if err := <-held; err == nil {
		t.Error("generation 0's request completed; it should have been cut when it ended")
	}
	resp, err := http.Get("http://" + public + "/third")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestHotRestartSIGHUP: SIGHUP restarts like `edge restart`.
func TestHotRestartSIGHUP(t *testing.T) {
	cfg, admin, _, _ := hotEdgeConfig(t)
	e := startHotEdge(t, cfg, admin, "--drain-time", "2s")
	pid := e.pid()
	syscall.Kill(pid, syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for (e.pid() == pid || e.pid() == 0) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if e.pid() == pid {
		t.Fatal("SIGHUP did not start a new generation")
	}
	e.waitReady(5 * time.Second)
	// SIGHUP made generation 1: the next restart makes generation 2.
	if _, epoch := e.mustRestart(); epoch != 2 {
		t.Errorf("restart after SIGHUP gave epoch %d, want 2", epoch)
	}
}

// TestHotRestartTLSResumption: the child gets the parent's session ticket
// keys, so a client resumes its TLS session across a restart.
func TestHotRestartTLSResumption(t *testing.T) {
	cfg, admin, _, _ := hotEdgeConfig(t)
	e := startHotEdge(t, cfg, admin, "--drain-time", "2s")
	addr := secureAddr(t, cfg)
	conf := &tls.Config{InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(4), NextProtos: []string{"http/1.1"}}
	handshake := func() tls.ConnectionState {
		t.Helper()
		c, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A request and its answer: TLS 1.3 tickets arrive after the
		// handshake and are read with it.
		io.WriteString(c, "GET /resume HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		return c.ConnectionState()
	}
	if handshake().DidResume {
		t.Fatal("the first connection cannot resume")
	}
	if !handshake().DidResume {
		t.Fatal("no resumption before the restart")
	}
	e.mustRestart()
	if !handshake().DidResume {
		t.Error("the session did not resume on the new process")
	}
}

// TestSecondEdgeOnSameBaseIDRefused: a second `edge run` with the base id
// of a running edge is refused with the way out, and the first serves on.
func TestSecondEdgeOnSameBaseIDRefused(t *testing.T) {
	cfg, admin, public, _ := hotEdgeConfig(t)
	e := startHotEdge(t, cfg, admin)
	other, otherAdmin, _, _ := hotEdgeConfig(t)
	path := filepath.Join(t.TempDir(), "other.yaml")
	os.WriteFile(path, []byte(other), 0o600)
	cmd := exec.Command(e.bin, "run", "-c", path, "--base-id", strconv.Itoa(e.baseID))
	cmd.Env = e.env
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already running") || !strings.Contains(string(out), "edge restart --base-id") {
		t.Errorf("second edge on base id %d: err %v, output:\n%s", e.baseID, err, out)
	}
	if resp, err := http.Get("http://" + otherAdmin + "/ready"); err == nil {
		resp.Body.Close()
		t.Error("the second edge served its admin API")
	}
	resp, err := http.Get("http://" + public + "/first")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestDrainListenersRefusesNewConnections: after POST /drain_listeners the
// real binary refuses new connections (the listening socket is closed in
// full, tableflip's copy included) while its admin API answers.
func TestDrainListenersRefusesNewConnections(t *testing.T) {
	cfg, admin, public, _ := hotEdgeConfig(t)
	e := startHotEdge(t, cfg, admin, "--drain-time", "2s")
	resp, err := http.Post("http://"+admin+"/drain_listeners", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /drain_listeners: %d", resp.StatusCode)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", public, time.Second)
		if errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			// A reset is a connection caught in the queue as the socket
			// closed; the next attempt is refused.
			t.Fatalf("connecting after the drain: %v, want connection refused", err)
		}
		if c != nil {
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatal("new connections still accepted 5 s after /drain_listeners")
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err = http.Get("http://" + admin + "/ready")
	if err != nil {
		t.Fatalf("admin after the drain: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/ready after the drain: %d, want 503", resp.StatusCode)
	}
	if !alive(e.pid()) {
		t.Error("the process exited after /drain_listeners; it should stay up until stopped")
	}
}

// TestHotRestartNewConfig: a restart applies the config on disk: a route
// change takes effect, a new listener is bound fresh, and a listener the
// new config drops stops accepting once the old process is gone.
func TestHotRestartNewConfig(t *testing.T) {
	cfg, admin, public, bench := hotEdgeConfig(t)
	e := startHotEdge(t, cfg, admin, "--drain-time", "2s", "--parent-shutdown-time", "4s")
	oldPID := e.pid()
	extra := freePort(t)
	next := strings.Replace(cfg, "  - name: bench\n    address: "+bench+"\n    route_config: main\n",
		"  - name: extra\n    address: "+extra+"\n    route_config: main\n", 1)
	next = strings.Replace(next, "      - name: all\n", "      - name: all\n        response_headers_to_add: [{name: x-generation, value: two}]\n", 1)
	if next == cfg || !strings.Contains(next, "x-generation") {
		t.Fatal("the test's config edit did not apply")
	}
	if err := os.WriteFile(e.cfg, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustRestart()
	for _, addr := range []string{public, extra} {
		resp, err := http.Get("http://" + addr + "/after")
		if err != nil {
			t.Fatalf("%s after the restart: %v", addr, err)
		}
		resp.Body.Close()
		if resp.Header.Get("x-generation") != "two" {
			t.Errorf("%s: x-generation %q, want the new config's", addr, resp.Header.Get("x-generation"))
		}
	}
	deadline := time.Now().Add(6 * time.Second)
	for alive(oldPID) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if c, err := net.DialTimeout("tcp", bench, time.Second); err == nil {
		c.Close()
		t.Errorf("the dropped listener %s still accepts after the old process exited", bench)
	} else if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("connecting to the dropped listener: %v, want connection refused", err)
	}
}
