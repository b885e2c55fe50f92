package tls

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/edgeproxy/edge/edge/config"
)

// CertInfo describes one certificate a listener serves, for the admin API
// and the certificate expiry gauge. It holds no key material.
type CertInfo struct {
	// Names are what SNI selects the certificate by: its DNS SANs, or its
	// subject common name when it has none (see CertificateNames).
	Names []string
	// IPs are its IP address SANs.
	IPs             []string
	Subject, Issuer string
	Serial          string // hexadecimal
	NotBefore       time.Time
	NotAfter        time.Time
	Source          string // the certificate file, or "acme"
}

// DescribeCertificate returns the CertInfo of a leaf certificate.
func DescribeCertificate(leaf *x509.Certificate, source string) CertInfo {
	ci := CertInfo{
		Names:     CertificateNames(leaf.DNSNames, leaf.Subject.CommonName),
		Subject:   leaf.Subject.String(),
		Issuer:    leaf.Issuer.String(),
		NotBefore: leaf.NotBefore,
		NotAfter:  leaf.NotAfter,
		Source:    source,
	}
	if leaf.SerialNumber != nil {
		ci.Serial = leaf.SerialNumber.Text(16)
	}
	for _, ip := range leaf.IPAddresses {
		ci.IPs = append(ci.IPs, ip.String())
	}
	return ci
}

// CertificateFiles describes the first certificate (the leaf) of each of a
// listener tls section's certificate files, read now. ServerConfigWith
// reads the same files when it builds the listener's configuration, so
// called right after it, this describes what the listener serves. Paths
// resolve against the config file's directory; an unreadable file is an
// error naming it (the others are still returned).
func CertificateFiles(cfg *config.Config, l *config.ListenerTLS) ([]CertInfo, error) {
	if l == nil {
		return nil, nil
	}
	var out []CertInfo
	var errs []error
	for _, cf := range l.Certificates {
		path := cfg.Resolve(cf.CertFile)
		data, err := readFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("certificate file %s: %w", path, unwrapPathError(err)))
			continue
		}
		chain, err := parseCertsPEM(data)
		if err == nil && len(chain) == 0 {
			err = fmt.Errorf("no CERTIFICATE block in the file")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("certificate file %s: %w", path, err))
			continue
		}
		out = append(out, DescribeCertificate(chain[0], path))
	}
	return out, errors.Join(errs...)
}

// Certificates describes the certificates m holds now for its listed
// domains, as they are served (renewals replace them). Before Start, and
// until a domain's certificate is obtained, there are none for it.
// Certificates obtained on demand for other names are not listed.
func (m *ACME) Certificates() []CertInfo {
	run := m.run.Load()
	if run == nil {
		return nil
	}
	var out []CertInfo
	seen := map[string]bool{}
	for _, d := range m.domains {
		for _, c := range run.cache.AllMatchingCertificates(d) {
			if c.Leaf == nil || seen[c.Hash()] {
				continue
			}
			seen[c.Hash()] = true
			out = append(out, DescribeCertificate(c.Leaf, "acme"))
		}
	}
	return out
}
