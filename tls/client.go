package tls

import (
	"crypto/tls"
	"crypto/x509"

	"github.com/edgeproxy/edge/edge/config"
)

// ClientConfig builds the *tls.Config edge uses toward a cluster's
// endpoints, described by t (path is its field path, such as
// "clusters[2].tls", used in errors).
//
// RootCAs come from t.CAFile (the system roots when it is empty); a client
// certificate for mTLS from t.CertFile and t.KeyFile; ServerName from
// t.ServerName (when empty the caller sets it per host, e.g. on a Clone);
// MinVersion is TLS 1.2; NextProtos is nextProtos as given;
// InsecureSkipVerify only when t says so. A nil t yields a config with the
// system roots and no client certificate.
//
// The error, if any, is a config.Errors of *config.Error values that name the file, the field and what is
// wrong with it (unreadable, not PEM, key does not match the certificate, no
// certificates in the CA file).
func ClientConfig(cfg *config.Config, path string, t *config.UpstreamTLS, nextProtos []string) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: append([]string(nil), nextProtos...),
	}
	if t == nil {
		return tc, nil
	}
	tc.ServerName = t.ServerName
	tc.InsecureSkipVerify = t.InsecureSkipVerify
	var errs config.Errors
	if t.CAFile != "" {
		pool, err := loadCAPool(cfg, &t.Meta, "ca_file", path, t.CAFile)
		if err != nil {
			errs = append(errs, err)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := loadKeyPair(cfg, &t.Meta, path, t.CertFile, t.KeyFile)
		if err != nil {
			errs = append(errs, err...)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return tc, nil
}

// loadCAPool reads a PEM bundle of CA certificates. key is the field name
// (ca_file) under path that named file.
func loadCAPool(cfg *config.Config, m *config.Meta, key, path, file string) (*x509.CertPool, *config.Error) {
	abs := cfg.Resolve(file)
	data, err := readFile(abs)
	if err != nil {
		return nil, cfg.Errorf(m.KeyPos(key), path+"."+key, "cannot read CA file %s: %v", abs, unwrapPathError(err))
	}
	certs, err := parseCertsPEM(data)
	if err != nil {
		return nil, cfg.Errorf(m.KeyPos(key), path+"."+key, "CA file %s: %v", abs, err)
	}
	if len(certs) == 0 {
		return nil, cfg.Errorf(m.KeyPos(key), path+"."+key, "CA file %s: no certificates in CA file: want PEM \"CERTIFICATE\" blocks", abs)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}
