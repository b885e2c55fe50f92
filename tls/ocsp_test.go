package tls_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/edgeproxy/edge/edge/config"
	edgetls "github.com/edgeproxy/edge/tls"
)

// fakeClock is a time source tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// ocspResponder is a real OCSP responder on loopback, signing with the
// test CA.
type ocspResponder struct {
	t     *testing.T
	ca    *pki
	clock *fakeClock
	url   string

	mu       sync.Mutex
	status   int  // ocsp.Good, ocsp.Revoked, ...
	fail     bool // answer HTTP 500
	validity time.Duration
	last     []byte // last response served
	requests int
}

func newOCSPResponder(t *testing.T, ca *pki, clock *fakeClock) *ocspResponder {
	r := &ocspResponder{t: t, ca: ca, clock: clock, status: ocsp.Good, validity: 2 * time.Hour}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.url = "http://" + ln.Addr().String() + "/ocsp"
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: r}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

func (r *ocspResponder) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	body, _ := io.ReadAll(hr.Body)
	req, err := ocsp.ParseRequest(body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if err != nil || hr.Header.Get("Content-Type") != "application/ocsp-request" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if r.fail {
		http.Error(w, "responder down", http.StatusInternalServerError)
		return
	}
	now := r.clock.now()
	tmpl := ocsp.Response{
		Status:       r.status,
		SerialNumber: req.SerialNumber,
		ThisUpdate:   now.Add(-time.Minute).Truncate(time.Second),
		NextUpdate:   now.Add(r.validity - time.Minute).Truncate(time.Second),
	}
	if r.status == ocsp.Revoked {
		tmpl.RevokedAt = now.Add(-time.Hour)
		tmpl.RevocationReason = ocsp.KeyCompromise
	}
	der, err := ocsp.CreateResponse(r.ca.cert, r.ca.cert, tmpl, r.ca.key)
	if err != nil {
		r.t.Errorf("CreateResponse: %v", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	r.last = der
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Write(der)
}

func (r *ocspResponder) set(f func(r *ocspResponder)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

func (r *ocspResponder) lastResponse() ([]byte, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last, r.requests
}

func TestOCSPStapling(t *testing.T) {
	dir := t.TempDir()
	ca := newPKI(t, dir, "ca")
	clock := newFakeClock()
	resp := newOCSPResponder(t, ca, clock)
	stapled := ca.issue("stapled", leafOpts{dns: []string{"stapled.test"}, ocsp: []string{resp.url}, chain: true})
	noIssuer := ca.issue("noissuer", leafOpts{dns: []string{"noissuer.test"}, ocsp: []string{resp.url}})
	plain := ca.issue("plain", leafOpts{dns: []string{"plain.test"}})
	cfg := testConfig(dir)
	l := &config.ListenerTLS{Certificates: []config.CertificateFiles{
		{CertFile: stapled.certFile, KeyFile: stapled.keyFile},
		{CertFile: noIssuer.certFile, KeyFile: noIssuer.keyFile},
		{CertFile: plain.certFile, KeyFile: plain.keyFile},
	}}
	logger, logs := testLogger(t)
	st := edgetls.NewStapler(logger)
	st.SetClock(clock.now)
	defer st.Stop()

	sc, err := edgetls.ServerConfigWith(cfg, "listeners[0].tls", l, nil, edgetls.ServerOptions{Stapler: st})
	if err != nil {
		t.Fatalf("ServerConfigWith: %v", err)
	}
	staple := func(sni string) []byte {
		t.Helper()
		cc := &tls.Config{ServerName: sni, RootCAs: ca.pool()}
		srv, cli := handshake(t, sc, cc)
		if srv.err != nil || cli.err != nil {
			t.Fatalf("handshake %s: server %v, client %v; OCSP must never fail a handshake", sni, srv.err, cli.err)
		}
		return cli.state.OCSPResponse
	}
	parse := func(b []byte) *ocsp.Response {
		t.Helper()
		r, err := ocsp.ParseResponseForCert(b, stapled.leaf, ca.cert)
		if err != nil {
			t.Fatalf("stapled response does not parse: %v", err)
		}
		return r
	}

	// Stapled at load: the first handshake has it.
	first, n := resp.lastResponse()
	if n != 1 {
		t.Fatalf("responder asked %d times at load, want 1 (only the certificate with responder and issuer)", n)
	}
	if got := staple("stapled.test"); !bytes.Equal(got, first) {
		t.Fatalf("first handshake staple = %d bytes, want the responder's %d-byte response", len(got), len(first))
	}
	if r := parse(first); r.Status != ocsp.Good {
		t.Errorf("status %d, want good", r.Status)
	}
	hello := &tls.ClientHelloInfo{ServerName: "stapled.test"}
	if n := testing.AllocsPerRun(100, func() { sc.GetCertificate(hello) }); n != 0 {
		t.Errorf("GetCertificate of a stapled certificate: %v allocations, want 0", n)
	}
	for _, sni := range []string{"noissuer.test", "plain.test"} {
		if got := staple(sni); len(got) != 0 {
			t.Errorf("%s: stapled %d bytes, want none", sni, len(got))
		}
	}
	if !strings.Contains(logs.String(), "no issuer certificate") {
		t.Errorf("log does not explain why noissuer.test is not stapled")
	}

	// Past halfway to nextUpdate, a handshake starts a refresh in the
	// background and is never left without a staple: it gets the current
	// one, or the new one if the loopback responder was faster than the
	// rest of the handshake; a later handshake gets the new response.
	clock.advance(61 * time.Minute)
	if got := staple("stapled.test"); len(got) == 0 || parse(got).Status != ocsp.Good {
		t.Errorf("handshake that triggers the refresh: got %d staple bytes, want a good staple (old or new)", len(got))
	}
	second := waitStaple(t, staple, first)
	if r := parse(second); !r.ThisUpdate.After(parse(first).ThisUpdate) {
		t.Errorf("refreshed response thisUpdate %v, want after %v", r.ThisUpdate, parse(first).ThisUpdate)
	}
	if _, n := resp.lastResponse(); n != 2 {
		t.Errorf("responder asked %d times, want 2", n)
	}

	// The responder fails: the old staple is served until its
	// nextUpdate, then none; handshakes keep succeeding; the failure is
	// logged and retried after a backoff.
	resp.set(func(r *ocspResponder) { r.fail = true })
	clock.advance(61 * time.Minute)
	staple("stapled.test") // triggers the failing fetch
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "OCSP staple not refreshed") {
		if time.Now().After(deadline) {
			t.Fatalf("failed refresh not logged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, w := range []string{"responder answered HTTP 500", "retry_in=1m0s", "serving=\"the previous staple until"} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log does not contain %q", w)
		}
	}
	if got := staple("stapled.test"); !bytes.Equal(got, second) {
		t.Errorf("while the responder fails: staple %d bytes, want the previous, still valid one", len(got))
	}
	_, before := resp.lastResponse()
	staple("stapled.test") // within the backoff: no new fetch
	time.Sleep(50 * time.Millisecond)
	if _, after := resp.lastResponse(); after != before {
		t.Errorf("fetched again within the backoff (%d -> %d requests)", before, after)
	}
	clock.advance(2 * time.Hour) // past nextUpdate
	if got := staple("stapled.test"); len(got) != 0 {
		t.Errorf("after nextUpdate with the responder down: stapled %d bytes, want none", len(got))
	}

	// The responder recovers and says revoked: the revocation is stapled
	// and logged.
	resp.set(func(r *ocspResponder) { r.fail, r.status = false, ocsp.Revoked })
	clock.advance(2 * time.Hour)
	staple("stapled.test")
	third := waitStaple(t, staple, nil)
	if r := parse(third); r.Status != ocsp.Revoked {
		t.Errorf("status %d, want revoked", r.Status)
	}
	if !strings.Contains(logs.String(), "REVOKED") {
		t.Errorf("revocation not logged")
	}
}

// waitStaple handshakes until the staple differs from old.
func waitStaple(t *testing.T, staple func(string) []byte, old []byte) []byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got := staple("stapled.test"); len(got) > 0 && !bytes.Equal(got, old) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("staple not refreshed within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOCSPUnreachableAtLoad(t *testing.T) {
	// A responder that is down at load delays the config by at most the
	// wait, and the certificate is served without a staple.
	dir := t.TempDir()
	ca := newPKI(t, dir, "ca")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Accepts and never answers.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	defer ln.Close()
	c := ca.issue("c", leafOpts{dns: []string{"c.test"}, ocsp: []string{"http://" + ln.Addr().String() + "/"}, chain: true})
	st := edgetls.NewStapler(nil)
	start := time.Now()
	sc, err := edgetls.ServerConfigWith(testConfig(dir), "listeners[0].tls",
		&config.ListenerTLS{Certificates: []config.CertificateFiles{{CertFile: c.certFile, KeyFile: c.keyFile}}}, nil,
		edgetls.ServerOptions{Stapler: st})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("ServerConfigWith took %v with a hanging responder, want about 2s at most", d)
	}
	srv, cli := handshake(t, sc, &tls.Config{ServerName: "c.test", RootCAs: ca.pool()})
	if srv.err != nil || cli.err != nil || len(cli.state.OCSPResponse) != 0 {
		t.Errorf("handshake: %v, %v, staple %d bytes; want success without a staple", srv.err, cli.err, len(cli.state.OCSPResponse))
	}
	stopped := time.Now()
	st.Stop() // cancels the hanging fetch
	if d := time.Since(stopped); d > 2*time.Second {
		t.Errorf("Stop took %v", d)
	}
}

// TestOCSPStaplesCarriedAcrossRestart: a new process given the old one's
// staples (Export, Carry) serves them from its first handshake without
// asking the responder, even while the responder is down; a carried staple
// that has expired is not used.
func TestOCSPStaplesCarriedAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	ca := newPKI(t, dir, "ca")
	clock := newFakeClock()
	resp := newOCSPResponder(t, ca, clock)
	c := ca.issue("c", leafOpts{dns: []string{"c.test"}, ocsp: []string{resp.url}, chain: true})
	l := &config.ListenerTLS{Certificates: []config.CertificateFiles{{CertFile: c.certFile, KeyFile: c.keyFile}}}
	load := func(carried [][]byte) (*edgetls.Stapler, *tls.Config) {
		t.Helper()
		st := edgetls.NewStapler(nil)
		st.SetClock(clock.now)
		t.Cleanup(st.Stop)
		st.Carry(carried)
		sc, err := edgetls.ServerConfigWith(testConfig(dir), "listeners[0].tls", l, nil, edgetls.ServerOptions{Stapler: st})
		if err != nil {
			t.Fatal(err)
		}
		return st, sc
	}
	staple := func(sc *tls.Config) []byte {
		t.Helper()
		srv, cli := handshake(t, sc, &tls.Config{ServerName: "c.test", RootCAs: ca.pool()})
		if srv.err != nil || cli.err != nil {
			t.Fatalf("handshake: %v, %v", srv.err, cli.err)
		}
		return cli.state.OCSPResponse
	}

	old, oldSC := load(nil)
	first := staple(oldSC)
	exported := old.Export()
	if len(first) == 0 || len(exported) != 1 || !bytes.Equal(exported[0], first) {
		t.Fatalf("exported %d staples; the old process served %d bytes", len(exported), len(first))
	}
	resp.set(func(r *ocspResponder) { r.fail = true })
	_, asked := resp.lastResponse()
	_, newSC := load(exported)
	if got := staple(newSC); !bytes.Equal(got, first) {
		t.Errorf("the new process's first handshake stapled %d bytes, want the carried %d", len(got), len(first))
	}
	if _, n := resp.lastResponse(); n != asked {
		t.Errorf("the new process asked the responder %d times at load; the carried staple was current", n-asked)
	}

	clock.advance(3 * time.Hour) // past the staple's nextUpdate
	_, lateSC := load(exported)
	if got := staple(lateSC); len(got) != 0 {
		t.Errorf("an expired carried staple was served (%d bytes)", len(got))
	}
}
