package configs_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/configs"
	"github.com/edgeproxy/edge/edge"
	"github.com/edgeproxy/edge/edge/config"
)

// TestEveryConfigValidates loads and compiles every YAML file in this
// directory, as `edge validate` would. Certificate files the examples
// expect users to provide (git-ignored) are generated in a copy of the tree.
func TestEveryConfigValidates(t *testing.T) {
	tmp := t.TempDir()
	var files []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && (p == "kubernetes" || p == "prometheus") {
			return filepath.SkipDir // not edge configs; deploy_test.go checks them
		}
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml") {
			files = append(files, p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(tmp, p)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			path := filepath.Join(tmp, f)
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			provideCerts(t, cfg)
			if err := edge.Validate(cfg); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestEmbeddedDefaultValidates(t *testing.T) {
	cfg, err := config.Parse(configs.Default, "default.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := edge.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Admin.Address != "127.0.0.1:9901" || cfg.Listeners[0].Address != "127.0.0.1:8080" {
		t.Errorf("default binds %s and %s; the README promises 127.0.0.1:8080 and admin on 127.0.0.1:9901",
			cfg.Listeners[0].Address, cfg.Admin.Address)
	}
}

// provideCerts writes a CA and leaf certificates for every missing file a
// config's TLS sections name.
func provideCerts(t *testing.T, cfg *config.Config) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	write := func(path, typ string, der []byte) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pair := func(certFile, keyFile string) {
		certFile, keyFile = cfg.Resolve(certFile), cfg.Resolve(keyFile)
		if _, err := os.Stat(certFile); err == nil {
			return
		}
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		kder, _ := x509.MarshalECPrivateKey(key)
		write(certFile, "CERTIFICATE", der)
		write(keyFile, "EC PRIVATE KEY", kder)
	}
	for _, l := range cfg.Listeners {
		if l.TLS == nil {
			continue
		}
		for _, c := range l.TLS.Certificates {
			pair(c.CertFile, c.KeyFile)
		}
		if ca := l.TLS.ClientAuth; ca != nil && ca.CAFile != "" {
			write(cfg.Resolve(ca.CAFile), "CERTIFICATE", caDER)
		}
	}
	for _, c := range cfg.Clusters {
		if c.TLS == nil {
			continue
		}
		if c.TLS.CAFile != "" {
			write(cfg.Resolve(c.TLS.CAFile), "CERTIFICATE", caDER)
		}
		if c.TLS.CertFile != "" {
			pair(c.TLS.CertFile, c.TLS.KeyFile)
		}
	}
}
