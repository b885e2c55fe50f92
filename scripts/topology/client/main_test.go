package main

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// runArgs parses args and runs the client as the command would.
func runArgs(t *testing.T, args ...string) int {
	t.Helper()
	o, err := parseFlags(args)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return run(o)
}

// TestProbe: -q exits 0 on a 2xx and 1 otherwise; -wait retries until a
// 2xx comes.
func TestProbe(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "PRE_INITIALIZING", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("LIVE\n"))
	}))
	defer srv.Close()
	if code := runArgs(t, "-q", srv.URL+"/ready"); code != 1 {
		t.Errorf("a 503 exits %d, want 1", code)
	}
	if code := runArgs(t, "-q", "-wait", "5s", srv.URL+"/ready"); code != 0 || calls.Load() != 3 {
		t.Errorf("with -wait: exit %d after %d requests, want 0 after 3", code, calls.Load())
	}
	if code := runArgs(t, "-q", "-timeout", "1s", "http://127.0.0.1:1/ready"); code != 1 {
		t.Errorf("a refused connection exits %d, want 1", code)
	}
}

// TestPreStopHook: -X POST sends a POST, then -sleep holds the process.
func TestPreStopHook(t *testing.T) {
	var method atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method.Store(r.Method + " " + r.URL.Path)
	}))
	defer srv.Close()
	start := time.Now()
	if code := runArgs(t, "-q", "-X", "POST", "-sleep", "300ms", srv.URL+"/drain_listeners"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if got := method.Load(); got != "POST /drain_listeners" {
		t.Errorf("server saw %v", got)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("returned after %v, before -sleep 300ms", d)
	}
}

// TestProtocols: HTTP/2 over TLS with -cacert, and h2c with -http2 on an
// http:// URL.
func TestProtocols(t *testing.T) {
	var proto atomic.Value
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { proto.Store(r.Proto) })

	tlsSrv := httptest.NewUnstartedServer(h)
	tlsSrv.EnableHTTP2 = true
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if code := runArgs(t, "-q", "-cacert", ca, "-servername", "example.com", tlsSrv.URL); code != 0 || proto.Load() != "HTTP/2.0" {
		t.Errorf("TLS: exit %d, server saw %v; want 0 and HTTP/2.0", code, proto.Load())
	}
	if code := runArgs(t, "-q", tlsSrv.URL); code != 1 {
		t.Errorf("a certificate from an unknown CA exits %d, want 1", code)
	}

	h2c := httptest.NewUnstartedServer(h)
	h2c.Config.Protocols = new(http.Protocols)
	h2c.Config.Protocols.SetHTTP1(true)
	h2c.Config.Protocols.SetUnencryptedHTTP2(true)
	h2c.Start()
	defer h2c.Close()
	if code := runArgs(t, "-q", "-http2", h2c.URL); code != 0 || proto.Load() != "HTTP/2.0" {
		t.Errorf("h2c: exit %d, server saw %v; want 0 and HTTP/2.0", code, proto.Load())
	}
	if code := runArgs(t, "-q", "-http1", h2c.URL); code != 0 || proto.Load() != "HTTP/1.1" {
		t.Errorf("-http1: exit %d, server saw %v; want 0 and HTTP/1.1", code, proto.Load())
	}
}

func TestBadUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-http1", "-http2", "http://x/"},
		{"-cert", "c.pem", "http://x/"},
		{"-H", "no-colon", "http://x/"},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
