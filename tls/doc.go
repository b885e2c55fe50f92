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
//   - ServerConfigWith turns a listener's tls section into a *tls.Config.
//     Its certificate files are loaded and compiled into a Store, an
//     immutable exact-name map plus a one-label wildcard map, that
//     GetCertificate consults per handshake without allocating. The first
//     certificate is the default for clients without SNI or with an
//     unknown name. Client certificates (mTLS) are verified against a CA
//     bundle, then against allowed_sans and pinned_sha256 in
//     VerifyConnection. ServerConfig is the same without options.
//   - ClientConfig turns a cluster's tls section into the *tls.Config the
//     upstream pools dial with: CA bundle or system roots, optional client
//     certificate, server name, ALPN.
//
// Three process-level helpers are passed to ServerConfigWith in
// ServerOptions; each is safe for concurrent use and outlives snapshots:
//
//   - ACME (one per listener's tls.acme section) obtains and renews
//     certificates through certmagic: the listed domains eagerly in the
//     background after Start, other names during the handshake when the
//     on_demand_ask endpoint answers 2xx for ?domain=NAME. Selection order
//     per handshake: a TLS-ALPN-01 validation (acme-tls/1 the only ALPN
//     offered) gets a separate challenge config through
//     GetConfigForClient; then a certificate file matching the SNI; then
//     ACME (managed domain, or on demand); then the default (the first
//     file, or without files the first managed domain that has a
//     certificate). HTTP-01 is answered by HTTPChallenge, which the
//     plain-HTTP listener calls before routing. Failures are logged with
//     the CA's problem detail and retried with certmagic's backoff while
//     the listener serves what it has. NewACME has no side effects; Start
//     begins the work; Stop ends it (certificates obtained keep being
//     served).
//   - TicketKeys encrypts session tickets with a current key plus the
//     previous ones (by default: rotate every 12 h, keep 2), through
//     WrapSession/UnwrapSession, so rotation touches no tls.Config.
//     Export/Import carry the keys to a hot-restarted child, so clients
//     resume across the restart.
//   - Stapler staples OCSP responses to certificate files whose leaf names
//     a responder and whose file holds the issuer: fetched at load
//     (ServerConfigWith waits up to 2 s), refreshed halfway to nextUpdate
//     by a background fetch that a handshake starts, retried with backoff
//     on failure, dropped once expired.
//
// A reload builds new configs and a new Store; nothing here is mutated
// after it is returned (staples and ticket keys are swapped atomically
// behind it), so the results may be shared by any number of goroutines
// and swapped atomically by the caller. Certificate files are read when a
// config is built, so a reload or a hot restart (whose child builds its
// configs from scratch) picks up renewed files; nothing watches the files
// in between.
//
// # Invariants
//
//   - TLS 1.2 is the floor; listeners may raise it to 1.3. TLS 1.2 offers
//     only ECDHE key exchange with AEAD ciphers (AES-GCM, ChaCha20-Poly1305).
//   - Key exchange groups are set explicitly: X25519MLKEM768 and
//     SecP256r1MLKEM768 (hybrid post-quantum, Go's defaults), X25519, P-256.
//     Go orders them itself.
//   - Every config error is a *config.Error (gathered in a config.Errors)
//     naming the field path, such as
//     listeners[0].tls.certificates[1].key_file or
//     listeners[0].tls.acme.domains[2], the resolved file name and what is
//     wrong: unreadable, not PEM, encrypted key, key not matching the
//     certificate, no certificates in a CA file, wildcard or IP ACME
//     domain, non-https directory. All problems are reported, not just
//     the first.
//   - A private key must match the first certificate of its chain; the
//     chain is served as written in the file.
//   - allowed_sans and pinned_sha256 are both enforced when both are set
//     (as Envoy does), on resumed sessions too.
//   - OCSP and ACME trouble never fails a handshake that a certificate
//     could serve; GetCertificate does not wait on the network except for
//     an on-demand issuance the ask endpoint allowed.
//   - acme-tls/1 is never in a listener's NextProtos: only the challenge
//     config negotiates it, and it serves nothing but the challenge
//     certificate. Callers close a connection that negotiated
//     ACMETLS1Protocol.
//
// # Non-goals (for now)
//
//   - No DNS-01 challenge, hence no wildcard ACME certificates; no
//     External Account Binding; no rate limit on on_demand_ask requests
//     beyond certmagic's de-duplication of concurrent issuance for a name.
//   - ACME storage is certmagic's file layout on local disk (default
//     $XDG_DATA_HOME/edge/acme, else ~/.local/share/edge/acme, else acme/
//     next to the config file); no shared storage backends.
//   - OCSP staples are not persisted on disk or handed across a hot restart
//     (the child fetches again at load).
//   - No certificate reload from disk without a config reload, no partial
//     wildcards ("w*.example.com"), no IP-address SNI.
package tls
