package tls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/edgeproxy/edge/edge/config"
)

// maxPEMFile bounds what we read from a certificate, key or CA file: a
// bundle of a few hundred CAs is well under a megabyte, and a bigger file is
// almost certainly the wrong one.
const maxPEMFile = 16 << 20

func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, errors.New("is a directory")
	}
	if st.Size() > maxPEMFile {
		return nil, fmt.Errorf("file is %d bytes, more than the %d a PEM file may have", st.Size(), maxPEMFile)
	}
	return os.ReadFile(name)
}

// parseCertsPEM returns every CERTIFICATE block in data, parsed. It fails if
// data holds no PEM block at all, or if a CERTIFICATE block does not parse.
// Blocks of other types are skipped, so a bundle with comments or a key in
// it still loads.
func parseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	blocks := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		blocks++
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d does not parse: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if blocks == 0 {
		return nil, errors.New("not PEM: no \"-----BEGIN ...\" block found")
	}
	return certs, nil
}

// parseKeyPEM returns the first private key in data (PKCS#8, PKCS#1 RSA or
// SEC 1 EC).
func parseKeyPEM(data []byte) (crypto.Signer, error) {
	blocks := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		blocks++
		if b.Type != "PRIVATE KEY" && !strings.HasSuffix(b.Type, " PRIVATE KEY") {
			continue
		}
		if _, ok := b.Headers["DEK-Info"]; ok || b.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("the private key is encrypted: edge needs an unencrypted key (protect the file with permissions)")
		}
		var key any
		var err error
		switch b.Type {
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		}
		if err != nil {
			return nil, fmt.Errorf("%s block does not parse: %w", b.Type, err)
		}
		switch k := key.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			return k.(crypto.Signer), nil
		default:
			return nil, fmt.Errorf("unsupported private key type %T: use RSA, ECDSA or Ed25519", key)
		}
	}
	if blocks == 0 {
		return nil, errors.New("not PEM: no \"-----BEGIN ... PRIVATE KEY-----\" block found")
	}
	return nil, errors.New("no PRIVATE KEY block in the file")
}

// loadKeyPair loads a certificate chain and its private key, checking that
// the key belongs to the chain's first certificate. m holds cert_file and
// key_file; path is m's field path. Each error names the
// field and the file.
func loadKeyPair(cfg *config.Config, m *config.Meta, path, certFile, keyFile string) (tls.Certificate, config.Errors) {
	var errs config.Errors
	certErr := func(format string, args ...any) {
		errs = append(errs, cfg.Errorf(m.KeyPos("cert_file"), path+".cert_file", format, args...))
	}
	keyErr := func(format string, args ...any) {
		errs = append(errs, cfg.Errorf(m.KeyPos("key_file"), path+".key_file", format, args...))
	}
	if certFile == "" {
		certErr("missing: name a PEM certificate file")
	}
	if keyFile == "" {
		keyErr("missing: name the certificate's PEM private key file")
	}
	if len(errs) > 0 {
		return tls.Certificate{}, errs
	}
	certPath, keyPath := cfg.Resolve(certFile), cfg.Resolve(keyFile)

	var chain []*x509.Certificate
	if data, err := readFile(certPath); err != nil {
		certErr("cannot read certificate file %s: %v", certPath, unwrapPathError(err))
	} else if chain, err = parseCertsPEM(data); err != nil {
		certErr("certificate file %s: %v", certPath, err)
	} else if len(chain) == 0 {
		certErr("certificate file %s: no CERTIFICATE block in the file", certPath)
	}
	var key crypto.Signer
	if data, err := readFile(keyPath); err != nil {
		keyErr("cannot read key file %s: %v", keyPath, unwrapPathError(err))
	} else if key, err = parseKeyPEM(data); err != nil {
		keyErr("key file %s: %v", keyPath, err)
	}
	if len(errs) > 0 {
		return tls.Certificate{}, errs
	}
	leaf := chain[0]
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		keyErr("key file %s: the private key does not match the certificate in %s (first certificate, subject %q)",
			keyPath, certPath, leaf.Subject.String())
		return tls.Certificate{}, errs
	}
	c := tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c, nil
}

// unwrapPathError drops the *fs.PathError's repetition of the file name,
// which the message around it already carries.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
