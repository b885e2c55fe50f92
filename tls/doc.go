// Package tls builds the crypto/tls configurations edge serves and dials
// with. Callers also import crypto/tls, so they import this package as
// edgetls:
//
//	import (
//		"crypto/tls"
//		edgetls "github.com/edgeproxy/edge/tls"
//	)
//
// # Model
//
// Both directions are compiled from config once, when a snapshot is built:
//
//   - ServerConfig turns a listener's tls section into a *tls.Config. Its
//     certificates are loaded and compiled into a Store, an immutable
//     exact-name map plus a one-label wildcard map, that GetCertificate
//     consults per handshake without allocating. The first certificate is
//     the default for clients without SNI or with an unknown name. Client
//     certificates (mTLS) are verified against a CA bundle, then against
//     allowed_sans and pinned_sha256 in VerifyConnection.
//   - ClientConfig turns a cluster's tls section into the *tls.Config the
//     upstream pools dial with: CA bundle or system roots, optional client
//     certificate, server name, ALPN.
//
// A reload builds new configs and a new Store; nothing here is mutated
// after it is returned, so the results may be shared by any number of
// goroutines and swapped atomically by the caller.
//
// # Invariants
//
//   - TLS 1.2 is the floor; listeners may raise it to 1.3. TLS 1.2 offers
//     only ECDHE key exchange with AEAD ciphers (AES-GCM, ChaCha20-Poly1305).
//   - Key exchange groups are set explicitly: X25519MLKEM768 and
//     SecP256r1MLKEM768 (hybrid post-quantum, Go's defaults), X25519, P-256.
//     Go orders them itself.
//   - Every error from loading files is a *config.Error (gathered in a
//     config.Errors) naming the field path, such as
//     listeners[0].tls.certificates[1].key_file, the resolved file name and
//     what is wrong: unreadable, not PEM, encrypted key, key not matching
//     the certificate, no certificates in a CA file. All problems are
//     reported, not just the first.
//   - A private key must match the first certificate of its chain; the
//     chain is served as written in the file.
//   - allowed_sans and pinned_sha256 are both enforced when both are set
//     (as Envoy does), on resumed sessions too.
//
// # Non-goals (for now)
//
//   - ACME (certmagic) is a later addition; a listener with acme is
//     refused with a config error rather than silently served without it.
//   - Session ticket keys are Go's: generated per process and rotated
//     automatically. They are not shared across a hot restart, so clients
//     resuming across one do a full handshake.
//   - No OCSP stapling, no certificate reload from disk without a config
//     reload, no partial wildcards ("w*.example.com"), no IP-address SNI.
package tls
