package edge

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/edgeproxy/edge/internal/pebbletest"
)

// acmeConfig is an edge with a plain listener (which answers HTTP-01) and
// an ACME-only TLS listener (which answers TLS-ALPN-01), both routing to
// direct responses.
const acmeConfig = `
admin: {address: ""}
listeners:
  - name: plain
    address: 127.0.0.1:$HTTPPORT
    protocols: [http1]
    route_config: main
  - name: public
    address: 127.0.0.1:$TLSPORT
    protocols: [http1]
    route_config: main
    tls:
      acme:
        directory: $DIRECTORY
        ca_root_file: $ROOT
        domains: [$DOMAIN]
        storage: $STORAGE
        email: ops@edge.test
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {path: /ping}
            direct_response: {status: 200, body: "pong\n"}
          - match: {prefix: /.well-known/acme-challenge/}
            direct_response: {status: 404, body: "routed\n"}
clusters: []
`

// TestACMEThroughEdge obtains a certificate from a real pebble through a
// running edge: the CA validates against edge's own listeners, and the
// certificate is then served by edge's TLS listener.
//
// Pebble offers every challenge type and certmagic picks one; each case
// forces its type by leaving the port pebble validates the other type on
// closed, so the order only succeeds through the challenge under test
// (after a failed attempt with the other type, which certmagic retries).
func TestACMEThroughEdge(t *testing.T) {
	pb, err := pebbletest.Start(pebbletest.Options{})
	if err != nil {
		t.Fatalf("pebble: %v", err)
	}
	t.Cleanup(pb.Close)

	tests := []struct {
		name   string
		domain string
		// plain and public are the listeners' ports; 0 picks a free port
		// pebble does not validate on.
		plain, public int
		wantHTTP01    bool // the plain listener answered a challenge
	}{
		{"HTTP-01 on the plain listener", "http01.edge.test", pb.HTTPPort, 0, true},
		{"TLS-ALPN-01 on the TLS listener", "alpn.edge.test", 0, pb.TLSPort, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					out := pb.Output()
					if len(out) > 6000 {
						out = "..." + out[len(out)-6000:]
					}
					t.Logf("pebble output (tail):\n%s", out)
				}
			})
			for _, p := range []*int{&tt.plain, &tt.public} {
				if *p == 0 {
					if *p, err = pebbletest.FreePort(); err != nil {
						t.Fatal(err)
					}
				}
			}
			s := startEdge(t, acmeConfig,
				"$HTTPPORT", strconv.Itoa(tt.plain),
				"$TLSPORT", strconv.Itoa(tt.public),
				"$DIRECTORY", pb.Directory,
				"$ROOT", pb.RootFile,
				"$DOMAIN", tt.domain,
				"$STORAGE", t.TempDir(),
			)
			tlsAddr := s.Addr("public").String()
			cc := verifyingConfig(tt.domain, pb.Roots, pb.Intermediates)

			start := time.Now()
			deadline := start.Add(30 * time.Second)
			var leaf *x509.Certificate
			for {
				leaf, err = handshakeLeaf(tlsAddr, cc)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("edge did not serve a pebble certificate for %s within 30s; last handshake: %v", tt.domain, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("issued in %v", time.Since(start).Round(time.Millisecond))
			if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != tt.domain {
				t.Errorf("certificate names %q, want [%s]", leaf.DNSNames, tt.domain)
			}

			// HTTPS through edge to a direct response, verifying the chain.
			hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cc}}
			defer hc.CloseIdleConnections()
			req, _ := http.NewRequest("GET", "https://"+tlsAddr+"/ping", nil)
			req.Host = tt.domain
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("HTTPS GET /ping: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "pong\n" {
				t.Errorf("HTTPS GET /ping: got %d %q, want 200 %q", resp.StatusCode, body, "pong\n")
			}

			if got, _ := s.Stats().Lookup("edge_acme_certificates_obtained_total", statsLabel("listener", "public")); got != 1 {
				t.Errorf("edge_acme_certificates_obtained_total = %v, want 1", got)
			}

			// Which listener answered the challenge: only challenge
			// responses are 2xx on the plain listener so far.
			ok2xx, _ := s.Stats().Lookup("edge_http_downstream_rq_xx",
				statsLabel("listener", "plain"), statsLabel("response_code_class", "2xx"))
			if got := ok2xx > 0; got != tt.wantHTTP01 {
				t.Errorf("plain listener answered HTTP-01 (2xx responses: %v): %v, want %v", ok2xx, got, tt.wantHTTP01)
			}

			// An unknown challenge token is not ACME's: the router answers.
			req, _ = http.NewRequest("GET", s.url("plain", "/.well-known/acme-challenge/unknown"), nil)
			req.Host = tt.domain
			resp, err = client.Do(req)
			if err != nil {
				t.Fatalf("GET unknown challenge: %v", err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 404 || string(body) != "routed\n" {
				t.Errorf("GET /.well-known/acme-challenge/unknown: got %d %q, want 404 %q from the route", resp.StatusCode, body, "routed\n")
			}
		})
	}
}

// verifyingConfig is a client config for serverName that verifies the
// served leaf against roots and intermediates (pebble's, whether or not
// the server sends the intermediate).
func verifyingConfig(serverName string, roots, intermediates *x509.CertPool) *tls.Config {
	return &tls.Config{
		ServerName:         serverName,
		NextProtos:         []string{"http/1.1"},
		InsecureSkipVerify: true, // verified below, with pebble's intermediate too
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no certificate")
			}
			inter := intermediates.Clone()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: serverName, Roots: roots, Intermediates: inter})
			return err
		},
	}
}

// handshakeLeaf handshakes with addr and returns the verified leaf.
func handshakeLeaf(addr string, cc *tls.Config) (*x509.Certificate, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cc)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}
