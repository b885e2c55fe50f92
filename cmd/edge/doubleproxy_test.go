package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// buildEdge compiles the edge binary once per test run.
var buildEdge = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "edge-e2e-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "edge")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// nextBaseID returns a --base-id no other edge started by this test
// binary (or, very likely, by another test binary running alongside) uses,
// so that control sockets and shared stats regions do not meet.
func nextBaseID() int {
	return int(baseIDs.Add(1)) + os.Getpid()%100000*100
}

var baseIDs atomic.Int32

// runtimeDir is an owner-only directory for control sockets, short enough
// for a unix socket path.
func runtimeDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "edge-rt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// process is an edge binary running for one test.
type process struct {
	cmd   *exec.Cmd
	admin string
	out   *strings.Builder
}

// startProcess runs `edge run -c config` and waits until its admin API
// reports ready.
func startProcess(t *testing.T, config, admin string) *process {
	t.Helper()
	bin, err := buildEdge()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{admin: admin, out: &strings.Builder{}}
	p.cmd = exec.Command(bin, "run", "-c", config, "--log-level", "warn", "--drain-time", "2s",
		"--base-id", strconv.Itoa(nextBaseID()))
	p.cmd.Env = append(os.Environ(), "EDGE_RUNTIME_DIR="+runtimeDir(t))
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			if !strings.HasPrefix(sc.Text(), "{") { // skip access log lines
				p.out.WriteString(sc.Text() + "\n")
			}
			mu.Unlock()
		}
	}()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
		pw.Close()
	})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + admin + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Fatalf("%s not ready; output:\n%s", config, p.out.String())
	return nil
}

// stat reads one sample from the process's /stats text output.
func (p *process) stat(t *testing.T, line string) string {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if name, v, ok := strings.Cut(l, ": "); ok && name == line {
			return v
		}
	}
	return ""
}

// TestDoubleProxy runs the two halves of configs/double-proxy as real edge
// processes in front of a service, with certificates from
// scripts/double-proxy-certs.sh, and drives 200 concurrent users' TLS
// connections through them.
func TestDoubleProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is needed for scripts/double-proxy-certs.sh (.ci/run installs it)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("../../scripts/double-proxy-certs.sh", filepath.Join(dir, "certs")).CombinedOutput(); err != nil {
		t.Fatalf("double-proxy-certs.sh: %v\n%s", err, out)
	}

	// The service reports what reached it.
	type seen struct{ XFF, XFCC, Proto string }
	service := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(seen{r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Client-Cert"), r.Header.Get("X-Forwarded-Proto")})
	}))
	defer service.Close()

	popAddr, popAdmin, dcAddr, dcAdmin := freePort(t), freePort(t), freePort(t), freePort(t)
	rewrite := func(src, dst string, pairs ...string) string {
		data, err := os.ReadFile(filepath.Join("../../configs/double-proxy", src))
		if err != nil {
			t.Fatal(err)
		}
		out := strings.NewReplacer(pairs...).Replace(string(data))
		path := filepath.Join(dir, dst)
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	dcConfig := rewrite("datacenter.yaml", "datacenter.yaml",
		"0.0.0.0:9443", dcAddr, "127.0.0.1:9902", dcAdmin, "127.0.0.1:8080", service.Listener.Addr().String(),
		"access_log: {path: stdout, format: json}", "")
	popConfig := rewrite("pop.yaml", "pop.yaml",
		"0.0.0.0:8443", popAddr, "127.0.0.1:9901", popAdmin,
		"type: strict_dns", "type: static", "dc.edge.internal:9443", dcAddr,
		"access_log: {path: stdout, format: json}", "")
	for _, c := range []string{dcConfig, popConfig} {
		if _, stderr, err := runCLI(t, "validate", "-c", c); err != nil {
			t.Fatalf("validate %s: %s", c, stderr)
		}
	}
	dc := startProcess(t, dcConfig, dcAdmin)
	pop := startProcess(t, popConfig, popAdmin)

	caPEM, _ := os.ReadFile(filepath.Join(dir, "certs", "ca.crt"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)

	// 200 users, each on its own TLS connection, 5 requests each.
	const users, each = 200, 5
	var (
		mu        sync.Mutex
		latencies []time.Duration
		failures  []string
	)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{
				TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: "example.com"},
				ForceAttemptHTTP2: u%2 == 0, // half the users speak HTTP/2
				MaxConnsPerHost:   1,
			}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
			<-start
			for i := range each {
				req, _ := http.NewRequest("GET", "https://"+popAddr+fmt.Sprintf("/user/%d/%d", u, i), nil)
				t0 := time.Now()
				resp, err := c.Do(req)
				d := time.Since(t0)
				if err == nil {
					var s seen
					err = json.NewDecoder(resp.Body).Decode(&s)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
					// The user (127.0.0.1, seen by the POP) is named in
					// X-Forwarded-For, followed by the POP (seen by the DC);
					// the DC vouches for the POP's certificate.
					if err == nil && (s.XFF != "127.0.0.1, 127.0.0.1" || !strings.Contains(s.XFCC, "DNS=pop.edge.internal") || s.Proto != "https") {
						err = fmt.Errorf("service saw %+v", s)
					}
				}
				mu.Lock()
				if err != nil {
					failures = append(failures, err.Error())
				} else {
					latencies = append(latencies, d)
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed; first: %s", len(failures), users*each, failures[0])
	}
	slices.Sort(latencies)
	p50, p99 := latencies[len(latencies)/2], latencies[len(latencies)*99/100]

	// The POP reached the data centre over at most connections_per_host (2)
	// connections, however many users there were.
	cx := pop.stat(t, "edge_cluster_upstream_cx_total.cluster=datacenter")
	if cx == "" || cx == "0" || (cx != "1" && cx != "2") {
		t.Errorf("POP opened %s connections to the data centre, want at most 2 (connections_per_host x 1 host)", cx)
	}
	t.Logf("%d users x %d requests through both hops: p50 %v, p99 %v; POP->DC connections: %s", users, each, p50, p99, cx)
	popHS := pop.stat(t, "edge_listener_downstream_tls_handshake_total.listener=users")
	dcHS := dc.stat(t, "edge_listener_downstream_tls_handshake_total.listener=pops")
	t.Logf("TLS handshakes: POP %s, DC %s", popHS, dcHS)
	if popHS != fmt.Sprint(users) || dcHS != cx {
		t.Errorf("TLS handshakes: POP %s (want %d, one per user), DC %s (want %s, one per POP connection)", popHS, users, dcHS, cx)
	}

	// A client talking to the data centre directly is refused without a
	// valid POP certificate, with one from another CA, and spoofing
	// X-Forwarded-For does not help.
	for _, c := range []struct {
		name  string
		certs []tls.Certificate
	}{
		{"no certificate", nil},
		{"certificate from another CA", mustPair(t, dir, "rogue-client")},
	} {
		conn, err := tls.Dial("tcp", dcAddr, &tls.Config{RootCAs: roots, ServerName: "dc.edge.internal", Certificates: c.certs, NextProtos: []string{"http/1.1"}})
		if err == nil {
			// TLS 1.3 reports the client-certificate failure on first read.
			fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: dc\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = http.ReadResponse(bufio.NewReader(conn), nil)
			conn.Close()
		}
		if err == nil {
			t.Errorf("data centre answered a client with %s", c.name)
		}
	}
	// The POP's own certificate is accepted (sanity check of the above).
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "dc.edge.internal", Certificates: mustPair(t, dir, "pop-client")}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(context.Background(), "GET", "https://"+dcAddr+"/direct", nil)
	req.Header.Set("X-Forwarded-For", "198.51.100.23")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("with the POP certificate: %v", err)
	}
	var s seen
	json.NewDecoder(resp.Body).Decode(&s)
	resp.Body.Close()
	if s.XFF != "198.51.100.23, 127.0.0.1" {
		t.Errorf("a verified POP's X-Forwarded-For: service saw %q", s.XFF)
	}
}

func mustPair(t *testing.T, dir, name string) []tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, "certs", name+".crt"), filepath.Join(dir, "certs", name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	return []tls.Certificate{c}
}
