package tls_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/edge/config"
)

// pki is a throwaway certificate authority writing PEM files into dir.
type pki struct {
	t      testing.TB
	dir    string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	serial atomic.Int64
}

func newPKI(t testing.TB, dir, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{t: t, dir: dir, cert: cert, key: key}
	p.serial.Store(100)
	p.write(name+".crt", pemBlock("CERTIFICATE", der))
	return p
}

// caFile is the CA certificate's file name (relative to dir).
func (p *pki) caFile() string { return p.cert.Subject.CommonName + ".crt" }

func (p *pki) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	return pool
}

// leafOpts describes a leaf certificate.
type leafOpts struct {
	cn   string
	dns  []string
	uris []string
	rsa  bool
	ext  x509.ExtKeyUsage // default: server and client auth
	ips  []net.IP         // IP SANs
	ocsp []string         // OCSP responder URLs (AIA)
	// chain appends the CA certificate to the certificate file, as a
	// chain with its issuer.
	chain bool
}

// issued is a leaf written to <name>.crt and <name>.key.
type issued struct {
	certFile, keyFile string
	leaf              *x509.Certificate
	tlsCert           tls.Certificate
}

func (p *pki) issue(name string, o leafOpts) issued {
	p.t.Helper()
	var pub, priv any
	var keyDER []byte
	var err error
	if o.rsa {
		k, kerr := rsa.GenerateKey(rand.Reader, 2048)
		if kerr != nil {
			p.t.Fatal(kerr)
		}
		pub, priv = &k.PublicKey, k
	} else {
		k, kerr := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if kerr != nil {
			p.t.Fatal(kerr)
		}
		pub, priv = &k.PublicKey, k
	}
	if keyDER, err = x509.MarshalPKCS8PrivateKey(priv); err != nil {
		p.t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial.Add(1)),
		Subject:      pkix.Name{CommonName: o.cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     o.dns,
		IPAddresses:  o.ips,
		OCSPServer:   o.ocsp,
	}
	for _, u := range o.uris {
		pu, err := url.Parse(u)
		if err != nil {
			p.t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, pub, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		p.t.Fatal(err)
	}
	certPEM := pemBlock("CERTIFICATE", der)
	if o.chain {
		certPEM = append(certPEM, pemBlock("CERTIFICATE", p.cert.Raw)...)
	}
	keyPEM := pemBlock("PRIVATE KEY", keyDER)
	p.write(name+".crt", certPEM)
	p.write(name+".key", keyPEM)
	tc, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		p.t.Fatal(err)
	}
	return issued{certFile: name + ".crt", keyFile: name + ".key", leaf: leaf, tlsCert: tc}
}

func (p *pki) write(name string, data []byte) {
	p.t.Helper()
	if err := os.WriteFile(filepath.Join(p.dir, name), data, 0o600); err != nil {
		p.t.Fatal(err)
	}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// testConfig is a config whose relative paths resolve in dir.
func testConfig(dir string) *config.Config {
	return &config.Config{File: "edge.yaml", Dir: dir}
}

// result is one side's view of a handshake.
type result struct {
	state tls.ConnectionState
	err   error
}

// handshake runs a real TLS handshake over loopback between a server using
// sc and a client using cc. After a successful handshake the server writes
// one byte, which the client reads, so that a server-side refusal after the
// client's part of a TLS 1.3 handshake (client certificates) surfaces on the
// client too.
func handshake(t *testing.T, sc, cc *tls.Config) (srv, cli result) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()

	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		tc := tls.Server(c, sc)
		if err := tc.HandshakeContext(ctx); err != nil {
			done <- result{err: err}
			return
		}
		_, err = tc.Write([]byte{'x'})
		done <- result{state: tc.ConnectionState(), err: err}
	}()

	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(deadline)
	tc := tls.Client(c, cc)
	cli.err = tc.HandshakeContext(ctx)
	if cli.err == nil {
		var b [1]byte
		_, cli.err = tc.Read(b[:])
		cli.state = tc.ConnectionState()
	}
	tc.Close()
	srv = <-done
	return srv, cli
}
