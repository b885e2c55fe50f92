package tls_test

import (
	"context"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/edge/config"
	edgetls "github.com/edgeproxy/edge/tls"
)

func TestCertificateFiles(t *testing.T) {
	dir := t.TempDir()
	ca := newPKI(t, dir, "certinfo-ca")
	a := ca.issue("a", leafOpts{cn: "a.example.test", dns: []string{"A.example.test.", "*.a.example.test"}, chain: true})
	b := ca.issue("b", leafOpts{cn: "b.example.test", ips: []net.IP{net.ParseIP("192.0.2.7")}})
	cfg := testConfig(dir)
	l := &config.ListenerTLS{Certificates: []config.CertificateFiles{
		{CertFile: a.certFile, KeyFile: a.keyFile},
		{CertFile: b.certFile, KeyFile: b.keyFile},
	}}
	got, err := edgetls.CertificateFiles(cfg, l)
	if err != nil || len(got) != 2 {
		t.Fatalf("CertificateFiles = %+v, %v; want two", got, err)
	}
	ga := got[0]
	if ga.Source != filepath.Join(dir, "a.crt") || !slices.Equal(ga.Names, []string{"a.example.test", "*.a.example.test"}) ||
		ga.Serial != a.leaf.SerialNumber.Text(16) || !ga.NotAfter.Equal(a.leaf.NotAfter) ||
		!strings.Contains(ga.Issuer, "certinfo-ca") || ga.Subject != "CN=a.example.test" {
		t.Errorf("first = %+v, want the leaf of a.crt (not the CA after it)", ga)
	}
	// No DNS SANs: SNI matches the common name, which is what Names says.
	if gb := got[1]; !slices.Equal(gb.Names, []string{"b.example.test"}) || !slices.Equal(gb.IPs, []string{"192.0.2.7"}) {
		t.Errorf("second = %+v, want CN b.example.test and IP 192.0.2.7", gb)
	}

	l.Certificates = append(l.Certificates, config.CertificateFiles{CertFile: "gone.crt", KeyFile: "gone.key"})
	got, err = edgetls.CertificateFiles(cfg, l)
	if len(got) != 2 || err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "gone.crt")) {
		t.Errorf("with a missing file: %d certificates, error %v; want the two others and an error naming the file", len(got), err)
	}
	if got, err := edgetls.CertificateFiles(cfg, nil); got != nil || err != nil {
		t.Errorf("no tls section: %v, %v", got, err)
	}
}

// TestACMECertificates: the manager lists the certificate it obtained, as
// served.
func TestACMECertificates(t *testing.T) {
	e := getACMEEnv(t)
	logger, _ := testLogger(t)
	const domain = "certinfo.edge.test"
	l := &config.ListenerTLS{ACME: &config.ACME{
		Directory: e.directory, CARootFile: e.rootFile, Email: "ops@edge.test",
		Domains: []string{domain}, Storage: "acme",
	}}
	m, _ := acmeListener(t, e, t.TempDir(), l, logger, true, false)
	if got := m.Certificates(); len(got) != 0 {
		t.Errorf("before Start: %+v, want none", got)
	}
	m.Start(context.Background())
	leaf := e.waitCert(t, domain, 30*time.Second)
	got := m.Certificates()
	if len(got) != 1 || got[0].Source != "acme" || !slices.Equal(got[0].Names, []string{domain}) ||
		got[0].Serial != leaf.SerialNumber.Text(16) || !got[0].NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("Certificates() = %+v, want the served certificate (serial %x)", got, leaf.SerialNumber)
	}
}
