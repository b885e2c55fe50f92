package edge

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// flaky is an upstream that fails its first N requests in a chosen way and
// records every attempt it saw.
type flaky struct {
	*countingServer
	failures atomic.Int64 // requests still to fail
	mode     string       // "503", "409", "reset", "hang"
	mu       sync.Mutex
	seen     []attemptSeen
}

type attemptSeen struct {
	requestID, attempt, body string
}

func newFlaky(t *testing.T, mode string, failures int) *flaky {
	f := &flaky{mode: mode}
	f.failures.Store(int64(failures))
	f.countingServer = newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.seen = append(f.seen, attemptSeen{r.Header.Get("X-Request-Id"), r.Header.Get("X-Edge-Attempt-Count"), string(body)})
		f.mu.Unlock()
		if f.failures.Add(-1) < 0 {
			fmt.Fprintf(w, "ok from %s", f.hostPort())
			return
		}
		switch f.mode {
		case "503":
			w.WriteHeader(503)
			io.WriteString(w, "unavailable")
		case "409":
			w.WriteHeader(409)
		case "reset":
			c, _, _ := http.NewResponseController(w).Hijack()
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		case "hang":
			select {
			case <-time.After(10 * time.Second):
			case <-r.Context().Done():
			}
		}
	}))
	return f
}

func (f *flaky) attempts() []attemptSeen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seen)
}

const retryConfig = `
admin: {address: "127.0.0.1:0"}
listeners: [{name: public, address: "127.0.0.1:0", route_config: main}]
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /plain}
            route: {cluster: up}
          - match: {prefix: /}
            route:
              cluster: up
              timeout: TIMEOUT
              retry_policy:
                retry_on: [RETRY_ON]
                retriable_status_codes: [418]
                num_retries: RETRIES
                per_try_timeout: PERTRY
                backoff: {base_interval: 5ms, max_interval: 20ms}
                buffer_limit: 1KiB
clusters:
  - name: up
    endpoints: [ENDPOINTS]
`

func retryEdge(t *testing.T, retryOn, retries, perTry, timeout string, endpoints ...string) *Server {
	t.Helper()
	eps := make([]string, len(endpoints))
	for i, e := range endpoints {
		eps[i] = `"` + e + `"`
	}
	return startEdge(t, retryConfig, "RETRY_ON", retryOn, "RETRIES", retries, "PERTRY", perTry,
		"TIMEOUT", timeout, "ENDPOINTS", strings.Join(eps, ", "))
}

func statValue(t *testing.T, s *Server, name, cluster string) float64 {
	t.Helper()
	v, _ := s.Stats().Lookup(name, statsLabel("cluster", cluster))
	return v
}

func getBody(t *testing.T, req *http.Request) (int, string, time.Duration) {
	t.Helper()
	start := time.Now()
	resp := mustDo(t, req)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), time.Since(start)
}

func TestRetryOn5xxThenSuccess(t *testing.T) {
	up := newFlaky(t, "503", 2)
	s := retryEdge(t, "5xx", "2", "0s", "5s", up.hostPort())
	status, body, _ := getBody(t, mustReq(t, "GET", s.url("public", "/r")))
	if status != 200 || !strings.HasPrefix(body, "ok") {
		t.Fatalf("got %d %q, want 200 after two retries", status, body)
	}
	seen := up.attempts()
	var counts []string
	for _, a := range seen {
		counts = append(counts, a.attempt)
	}
	if strings.Join(counts, ",") != "1,2,3" {
		t.Errorf("x-edge-attempt-count per try = %v, want 1,2,3", counts)
	}
	if seen[0].requestID != seen[2].requestID {
		t.Errorf("tries of one request carry different request ids: %v", seen)
	}
	if got := statValue(t, s, "edge_cluster_upstream_rq_retry", "up"); got != 2 {
		t.Errorf("upstream_rq_retry = %v, want 2", got)
	}
	if got := statValue(t, s, "edge_cluster_upstream_rq_retry_success", "up"); got != 1 {
		t.Errorf("upstream_rq_retry_success = %v, want 1", got)
	}
}

func TestRetriesExhaustedReturnLastResponse(t *testing.T) {
	up := newFlaky(t, "503", 100)
	s := retryEdge(t, "gateway-error", "2", "0s", "5s", up.hostPort())
	status, body, _ := getBody(t, mustReq(t, "GET", s.url("public", "/r")))
	if status != 503 || body != "unavailable" {
		t.Errorf("got %d %q, want the upstream's last 503", status, body)
	}
	if n := len(up.attempts()); n != 3 {
		t.Errorf("upstream saw %d tries, want 3 (1 + num_retries 2)", n)
	}
}

func TestNoRetryWithoutPolicyOrMatchingCondition(t *testing.T) {
	up := newFlaky(t, "503", 100)
	s := retryEdge(t, "retriable-4xx", "3", "0s", "5s", up.hostPort())
	for _, path := range []string{"/plain", "/r"} {
		before := len(up.attempts())
		status, _, _ := getBody(t, mustReq(t, "GET", s.url("public", path)))
		if n := len(up.attempts()) - before; status != 503 || n != 1 {
			t.Errorf("%s: %d after %d tries, want 503 after 1", path, status, n)
		}
	}
}

func TestRetriable4xxAndStatusCodes(t *testing.T) {
	up := newFlaky(t, "409", 1)
	s := retryEdge(t, "retriable-4xx", "1", "0s", "5s", up.hostPort())
	if status, _, _ := getBody(t, mustReq(t, "GET", s.url("public", "/r"))); status != 200 {
		t.Errorf("409 with retriable-4xx: %d, want 200 after a retry", status)
	}
}

func TestRetryGoesToAnotherHost(t *testing.T) {
	bad := newFlaky(t, "503", 1<<30)
	good1 := newFlaky(t, "503", 0)
	good2 := newFlaky(t, "503", 0)
	s := retryEdge(t, "5xx", "2", "0s", "5s", bad.hostPort(), good1.hostPort(), good2.hostPort())
	for i := range 30 {
		status, _, _ := getBody(t, mustReq(t, "GET", s.url("public", fmt.Sprintf("/r%d", i))))
		if status != 200 {
			t.Fatalf("request %d: %d, want 200 (a retry reaches a healthy host)", i, status)
		}
	}
	// No request tried the bad host twice.
	ids := map[string]int{}
	for _, a := range bad.attempts() {
		ids[a.requestID]++
		if ids[a.requestID] > 1 {
			t.Fatalf("request %s tried the failing host twice", a.requestID)
		}
	}
}

func TestRetryConnectFailure(t *testing.T) {
	good := newFlaky(t, "503", 0)
	s := retryEdge(t, "connect-failure", "1", "0s", "5s", closedPort(t), good.hostPort())
	for i := range 10 {
		if status, body, _ := getBody(t, mustReq(t, "GET", s.url("public", "/r"))); status != 200 {
			t.Fatalf("request %d: %d %q, want 200 (refused host retried elsewhere)", i, status, body)
		}
	}
}

func TestRetryReset(t *testing.T) {
	up := newFlaky(t, "reset", 1)
	s := retryEdge(t, "reset", "1", "0s", "5s", up.hostPort())
	if status, body, _ := getBody(t, mustReq(t, "GET", s.url("public", "/r"))); status != 200 {
		t.Errorf("reset then success: %d %q, want 200", status, body)
	}
}

func TestPerTryTimeout(t *testing.T) {
	slow := newFlaky(t, "hang", 1<<30)
	fast := newFlaky(t, "503", 0)
	s := retryEdge(t, "5xx", "1", "200ms", "5s", slow.hostPort(), fast.hostPort())
	// Round robin: at least one of two requests starts on the slow host.
	for range 2 {
		status, _, d := getBody(t, mustReq(t, "GET", s.url("public", "/r")))
		if status != 200 {
			t.Fatalf("status %d, want 200 from the second host", status)
		}
		if d > 2*time.Second {
			t.Errorf("took %v; the per-try timeout is 200ms", d)
		}
	}
	if got := statValue(t, s, "edge_cluster_upstream_rq_per_try_timeout", "up"); got < 1 {
		t.Errorf("upstream_rq_per_try_timeout = %v, want at least 1", got)
	}
}

func TestRouteTimeoutBoundsAllTries(t *testing.T) {
	slow := newFlaky(t, "hang", 1<<30)
	s := retryEdge(t, "5xx", "10", "300ms", "1s", slow.hostPort())
	status, body, d := getBody(t, mustReq(t, "GET", s.url("public", "/r")))
	if status != 504 || body != "upstream request timeout\n" {
		t.Errorf("got %d %q, want 504", status, body)
	}
	if d < 900*time.Millisecond || d > 1800*time.Millisecond {
		t.Errorf("answered after %v, want about the 1s route timeout", d)
	}
	if n := len(slow.attempts()); n < 2 || n > 4 {
		t.Errorf("%d tries in 1s with a 300ms per-try timeout, want 2-4", n)
	}
	if got := statValue(t, s, "edge_cluster_upstream_rq_timeout", "up"); got != 1 {
		t.Errorf("upstream_rq_timeout = %v, want 1", got)
	}
}

func TestRetryReplaysBody(t *testing.T) {
	up := newFlaky(t, "503", 1)
	s := retryEdge(t, "5xx", "1", "0s", "5s", up.hostPort())
	status, _, _ := getBody(t, mustBodyReq(t, s.url("public", "/r"), strings.NewReader("payload-123"), 11))
	seen := up.attempts()
	if status != 200 || len(seen) != 2 || seen[0].body != "payload-123" || seen[1].body != "payload-123" {
		t.Errorf("status %d, tries %+v; want two tries with the whole body", status, seen)
	}

	// Chunked too (unknown length).
	up2 := newFlaky(t, "503", 1)
	s2 := retryEdge(t, "5xx", "1", "0s", "5s", up2.hostPort())
	pr, pw := io.Pipe()
	go func() { io.WriteString(pw, "streamed-"); io.WriteString(pw, "body"); pw.Close() }()
	status, _, _ = getBody(t, mustBodyReq(t, s2.url("public", "/r"), pr, -1))
	seen = up2.attempts()
	if status != 200 || len(seen) != 2 || seen[1].body != "streamed-body" {
		t.Errorf("chunked: status %d, tries %+v", status, seen)
	}
}

func TestBodyOverBufferLimitIsNotRetried(t *testing.T) {
	up := newFlaky(t, "503", 1)
	s := retryEdge(t, "5xx", "1", "0s", "5s", up.hostPort()) // buffer_limit: 1KiB
	big := strings.Repeat("b", 4096)
	status, _, _ := getBody(t, mustBodyReq(t, s.url("public", "/r"), strings.NewReader(big), int64(len(big))))
	seen := up.attempts()
	if status != 503 || len(seen) != 1 || len(seen[0].body) != 4096 {
		t.Errorf("status %d, %d tries; want the 503 of a single try with the whole 4 KiB body", status, len(seen))
	}
}

func TestRetryHeadersFromInternalClientsOnly(t *testing.T) {
	up := newFlaky(t, "503", 1<<30)
	s := retryEdge(t, "retriable-4xx", "1", "0s", "5s", up.hostPort())

	req := mustReq(t, "GET", s.url("public", "/plain"))
	req.Header.Set("X-Edge-Retry-On", "5xx")
	req.Header.Set("X-Edge-Max-Retries", "3")
	getBody(t, req)
	seen := up.attempts()
	if len(seen) != 4 {
		t.Errorf("internal client asking 5xx x3: %d tries, want 4", len(seen))
	}

	// External (it sent its own X-Forwarded-For): the headers are dropped.
	req = mustReq(t, "GET", s.url("public", "/plain"))
	req.Header.Set("X-Forwarded-For", "203.0.113.1")
	req.Header.Set("X-Edge-Retry-On", "5xx")
	req.Header.Set("X-Edge-Max-Retries", "3")
	getBody(t, req)
	if n := len(up.attempts()) - len(seen); n != 1 {
		t.Errorf("external client asking for retries: %d tries, want 1", n)
	}

	slow := newFlaky(t, "hang", 1<<30)
	s2 := retryEdge(t, "5xx", "0", "0s", "5s", slow.hostPort())
	req = mustReq(t, "GET", s2.url("public", "/plain"))
	req.Header.Set("X-Edge-Upstream-Rq-Timeout-Ms", "200")
	status, _, d := getBody(t, req)
	if status != 504 || d > 2*time.Second {
		t.Errorf("x-edge-upstream-rq-timeout-ms 200: %d after %v, want 504 after ~200ms", status, d)
	}
}

func TestNoRetryAfterResponseStarted(t *testing.T) {
	var n atomic.Int64
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		c, _, _ := http.NewResponseController(w).Hijack()
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}))
	s := retryEdge(t, "5xx,reset", "3", "0s", "5s", up.hostPort())
	resp := mustDo(t, mustReq(t, "GET", s.url("public", "/r")))
	_, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Error("client read a complete body from an upstream that died mid-body")
	}
	if n.Load() != 1 {
		t.Errorf("upstream saw %d tries, want 1: a started response is never retried", n.Load())
	}
}

// TestHostDiesUnderLoad kills one of three hosts while clients keep
// sending: every request must still succeed, through retries on the other
// hosts (the dead host's connections reset, then refuse).
func TestHostDiesUnderLoad(t *testing.T) {
	var ups []*countingServer
	for range 3 {
		ups = append(ups, newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(time.Millisecond)
			io.WriteString(w, "ok")
		})))
	}
	// Eight clients retry at once at worst: allow it (Envoy's default
	// max_retries of 3 would turn the excess into 503s), and let outlier
	// detection take the dead host out after three gateway failures.
	eps := fmt.Sprintf(`"%s", "%s", "%s"`, ups[0].hostPort(), ups[1].hostPort(), ups[2].hostPort())
	s := startEdge(t, strings.Replace(retryConfig, "    endpoints: [ENDPOINTS]\n",
		"    endpoints: [ENDPOINTS]\n    circuit_breakers: {max_retries: 16}\n"+
			"    outlier_detection: {consecutive_gateway_failure: 3, base_ejection_time: 10s, max_ejection_percent: 50}\n", 1),
		"RETRY_ON", "connect-failure,reset,gateway-error", "RETRIES", "2", "PERTRY", "1s", "TIMEOUT", "5s", "ENDPOINTS", eps)

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(s.url("public", "/load"))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						ok.Add(1)
						continue
					}
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		}()
	}
	time.Sleep(700 * time.Millisecond)
	dead := ups[1]
	dead.Listener.Close()
	dead.CloseClientConnections()
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed.Load() > 0 {
		t.Errorf("%d of %d requests failed after one host died; first: %v", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
	if ok.Load() < 100 {
		t.Errorf("only %d requests succeeded; the load did not run", ok.Load())
	}
	t.Logf("%d requests, %d retries, %d retry overflows, %d ejections", ok.Load(),
		int(statValue(t, s, "edge_cluster_upstream_rq_retry", "up")),
		int(statValue(t, s, "edge_cluster_upstream_rq_retry_overflow", "up")),
		int(statValue(t, s, "edge_cluster_outlier_detection_ejections_enforced_total", "up")))
}

func TestCircuitBreakerOverflow(t *testing.T) {
	release := make(chan struct{})
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "done")
	}))
	s := startEdge(t, strings.Replace(retryConfig, "    endpoints: [ENDPOINTS]\n",
		"    endpoints: [ENDPOINTS]\n    circuit_breakers: {max_requests: 2}\n", 1),
		"RETRY_ON", "5xx", "RETRIES", "0", "PERTRY", "0s", "TIMEOUT", "5s", "ENDPOINTS", `"`+up.hostPort()+`"`)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if status, _, _ := getBody(t, mustReq(t, "GET", s.url("public", "/plain"))); status != 200 {
				t.Errorf("admitted request: %d", status)
			}
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for statValue(t, s, "edge_cluster_upstream_rq_active", "up") < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	resp := mustDo(t, mustReq(t, "GET", s.url("public", "/plain")))
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("X-Edge-Overloaded") != "true" || string(body) != "upstream overloaded\n" {
		t.Errorf("third request over max_requests 2: %d %q overloaded=%q", resp.StatusCode, body, resp.Header.Get("X-Edge-Overloaded"))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("overflow answered after %v; it must not wait", d)
	}
	close(release)
	wg.Wait()
	if got := statValue(t, s, "edge_cluster_upstream_rq_pending_overflow", "up"); got != 1 {
		t.Errorf("upstream_rq_pending_overflow = %v, want 1", got)
	}
}

func TestRetryOverflowCounted(t *testing.T) {
	up := newFlaky(t, "503", 1)
	s := startEdge(t, strings.Replace(retryConfig, "    endpoints: [ENDPOINTS]\n",
		"    endpoints: [ENDPOINTS]\n    circuit_breakers: {max_retries: 0}\n", 1),
		"RETRY_ON", "5xx", "RETRIES", "2", "PERTRY", "0s", "TIMEOUT", "5s", "ENDPOINTS", `"`+up.hostPort()+`"`)
	status, _, _ := getBody(t, mustReq(t, "GET", s.url("public", "/r")))
	if status != 503 || len(up.attempts()) != 1 {
		t.Errorf("max_retries 0: %d after %d tries, want the first 503 and no retry", status, len(up.attempts()))
	}
	if got := statValue(t, s, "edge_cluster_upstream_rq_retry_overflow", "up"); got != 1 {
		t.Errorf("upstream_rq_retry_overflow = %v, want 1", got)
	}
}
