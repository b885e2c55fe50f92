package tls

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"
)

// OCSP timing. A staple is refreshed halfway between its thisUpdate and
// nextUpdate (as certmagic and nginx do, well before clients would reject
// it); a failed fetch is retried with exponential backoff from
// ocspRetryMin to ocspRetryMax.
const (
	ocspFetchTimeout = 10 * time.Second
	ocspRetryMin     = time.Minute
	ocspRetryMax     = time.Hour
	ocspNoNextUpdate = time.Hour // lifetime assumed when a response has no nextUpdate
	ocspMaxResponse  = 1 << 20
	ocspLoadWait     = 2 * time.Second
)

// Stapler staples OCSP responses to the certificates ServerConfigWith
// loads from files: every certificate whose leaf names an OCSP responder
// (AIA) and whose cert_file also holds the issuer certificate.
//
// The first fetch starts when the certificate is loaded, and
// ServerConfigWith waits for it a short while (two seconds at most), so a
// healthy responder's staple is there from the first handshake. After
// that, a handshake that finds the staple due for refresh (halfway to its
// nextUpdate) starts one background fetch; the handshake itself never
// waits for the network and never fails for OCSP trouble. A failed fetch
// is logged and retried with backoff (1 minute doubling to 1 hour) while
// the old staple is served until its nextUpdate; after that the
// certificate is served without a staple. Because refreshes are driven by
// handshakes, a configuration that no longer serves anything (replaced by
// a reload) stops fetching by itself: there is no goroutine to stop per
// configuration.
//
// Responses are verified against the issuer (ocsp.ParseResponseForCert)
// and must be current. A "revoked" response is stapled (it is the truth,
// and clients will refuse the certificate) and logged as an error;
// "unknown" is not stapled.
//
// One Stapler serves the whole process. It is safe for concurrent use.
type Stapler struct {
	logger *slog.Logger
	client *http.Client
	now    func() time.Time // time source; tests replace it

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex // guards stop, wg.Add, carried and states
	wg     sync.WaitGroup
	stop   bool

	// carried are staples the previous process served (hot restart),
	// tried before a certificate's first fetch.
	carried [][]byte
	// states are the certificates being stapled, for Export.
	states []*stapled
}

// Carry gives the staples the previous process served (see Export): a
// certificate loaded afterwards starts with the one that answers for it,
// if still current, and fetches when it is due rather than at once, so a
// restart neither waits for the responder nor loses staples while it is
// down. Call it before loading certificates.
func (s *Stapler) Carry(staples [][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.carried = staples
}

// Export returns the current staples, for the next process's Carry.
func (s *Stapler) Export() [][]byte {
	s.mu.Lock()
	states := s.states
	s.mu.Unlock()
	now := s.now().UnixNano()
	var out [][]byte
	for _, o := range states {
		if st := o.cur.Load(); st != nil && now < st.expires {
			out = append(out, st.cert.OCSPStaple)
		}
	}
	return out
}

// NewStapler returns a Stapler that logs to logger (nil: discard) and
// fetches over HTTP with the environment's proxy settings.
func NewStapler(logger *slog.Logger) *Stapler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Stapler{
		logger: logger,
		client: &http.Client{
			Timeout:   ocspFetchTimeout,
			Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute},
		},
		now:    time.Now,
		ctx:    ctx,
		cancel: cancel,
	}
}

// Stop cancels the fetches in flight and waits for them to end. Staples
// already fetched keep being served; none are refreshed afterwards.
func (s *Stapler) Stop() {
	s.mu.Lock()
	s.stop = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.client.CloseIdleConnections()
}

// goAdd reserves a background fetch; false once stopped.
func (s *Stapler) goAdd() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop {
		return false
	}
	s.wg.Add(1)
	return true
}

// add returns the stapling state for c, or nil when c cannot be stapled
// (no responder, or no issuer in its chain). It starts the first fetch.
func (s *Stapler) add(c *tls.Certificate) *stapled {
	leaf := c.Leaf
	if leaf == nil || len(leaf.OCSPServer) == 0 {
		return nil
	}
	if len(c.Certificate) < 2 {
		s.logger.Warn("OCSP stapling off for a certificate: its file holds no issuer certificate to build the OCSP request with; append the intermediate to cert_file",
			"subject", leaf.Subject.String(), "names", leaf.DNSNames, "responder", leaf.OCSPServer[0])
		return nil
	}
	issuer, err := x509.ParseCertificate(c.Certificate[1])
	if err != nil {
		s.logger.Warn("OCSP stapling off for a certificate: its issuer certificate does not parse",
			"subject", leaf.Subject.String(), "error", err)
		return nil
	}
	o := &stapled{st: s, base: c, leaf: leaf, issuer: issuer, first: make(chan struct{})}
	s.mu.Lock()
	s.states = append(s.states, o)
	carried := s.carried
	s.mu.Unlock()
	for _, der := range carried {
		resp, err := ocsp.ParseResponseForCert(der, leaf, issuer)
		if err != nil || o.check(resp) != nil {
			continue
		}
		o.install(resp, der)
		o.firstOnce.Do(func() { close(o.first) })
		return o // the next fetch is due at the staple's refresh time
	}
	o.kick()
	return o
}

// stapled is one certificate's OCSP state.
type stapled struct {
	st           *Stapler
	base         *tls.Certificate // without staple
	leaf, issuer *x509.Certificate
	first        chan struct{} // closed after the first fetch attempt
	firstOnce    sync.Once

	cur      atomic.Pointer[staple]
	nextTry  atomic.Int64 // unix nanoseconds; a handshake after it starts a fetch
	busy     atomic.Bool  // a fetch is running
	failures int          // consecutive failures; touched only by the fetch holding busy
}

// staple is a fetched response and the certificate that carries it.
type staple struct {
	cert    *tls.Certificate
	resp    *ocsp.Response
	expires int64 // unix nanoseconds: nextUpdate
}

// certificate returns the certificate to serve now: with the staple while
// it is current, without it otherwise. It may start a background refresh.
func (o *stapled) certificate() *tls.Certificate {
	now := o.st.now().UnixNano()
	if now >= o.nextTry.Load() {
		o.kick()
	}
	if s := o.cur.Load(); s != nil && now < s.expires {
		return s.cert
	}
	return o.base
}

// kick starts a fetch unless one is running or the Stapler is stopped.
func (o *stapled) kick() {
	if !o.busy.CompareAndSwap(false, true) {
		return
	}
	if !o.st.goAdd() {
		o.busy.Store(false)
		o.firstOnce.Do(func() { close(o.first) })
		return
	}
	go func() {
		defer o.st.wg.Done()
		o.refresh()
		o.busy.Store(false)
		o.firstOnce.Do(func() { close(o.first) })
	}()
}

// refresh fetches a response and installs it, or schedules a retry.
func (o *stapled) refresh() {
	resp, der, url, err := o.fetch()
	now := o.st.now()
	log := o.st.logger.With("subject", o.leaf.Subject.String(), "names", o.leaf.DNSNames, "serial", o.leaf.SerialNumber.String())
	if err != nil {
		o.failures++
		wait := ocspRetryMin << min(o.failures-1, 6)
		wait = min(wait, ocspRetryMax)
		o.nextTry.Store(now.Add(wait).UnixNano())
		kept := "none"
		if s := o.cur.Load(); s != nil && now.UnixNano() < s.expires {
			kept = "the previous staple until " + time.Unix(0, s.expires).UTC().Format(time.RFC3339)
		}
		log.Warn("OCSP staple not refreshed; the handshake goes on without a new one",
			"responder", url, "error", err, "attempt", o.failures, "retry_in", wait, "serving", kept)
		return
	}
	o.failures = 0
	expires, refresh := o.install(resp, der)
	if resp.Status == ocsp.Revoked {
		log.Error("OCSP responder says the certificate is REVOKED; stapling the revocation (clients will refuse it): replace the certificate",
			"responder", url, "revoked_at", resp.RevokedAt, "reason", resp.RevocationReason)
		return
	}
	log.Debug("OCSP staple refreshed", "responder", url, "next_update", expires, "refresh_at", refresh)
}

// install serves der (resp) from now on and schedules its refresh halfway
// to its nextUpdate.
func (o *stapled) install(resp *ocsp.Response, der []byte) (expires, refresh time.Time) {
	now := o.st.now()
	expires = resp.NextUpdate
	if expires.IsZero() {
		expires = now.Add(ocspNoNextUpdate)
	}
	refresh = resp.ThisUpdate.Add(expires.Sub(resp.ThisUpdate) / 2)
	if floor := now.Add(ocspRetryMin); refresh.Before(floor) {
		refresh = floor
	}
	c := *o.base
	c.OCSPStaple = der
	o.cur.Store(&staple{cert: &c, resp: resp, expires: expires.UnixNano()})
	o.nextTry.Store(refresh.UnixNano())
	return expires, refresh
}

// check refuses a response that must not be stapled now: status unknown,
// from the future, or expired.
func (o *stapled) check(resp *ocsp.Response) error {
	now := o.st.now()
	switch {
	case resp.Status == ocsp.Unknown:
		return errors.New("responder does not know the certificate (status unknown)")
	case resp.ThisUpdate.After(now.Add(5 * time.Minute)):
		return fmt.Errorf("response is from the future (thisUpdate %s)", resp.ThisUpdate.UTC().Format(time.RFC3339))
	case !resp.NextUpdate.IsZero() && !now.Before(resp.NextUpdate):
		return fmt.Errorf("response has expired (nextUpdate %s)", resp.NextUpdate.UTC().Format(time.RFC3339))
	}
	return nil
}

// fetch asks the leaf's responders in turn and returns the first usable
// answer.
func (o *stapled) fetch() (*ocsp.Response, []byte, string, error) {
	req, err := ocsp.CreateRequest(o.leaf, o.issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return nil, nil, "", fmt.Errorf("building the OCSP request: %w", err)
	}
	var errs []error
	for _, url := range o.leaf.OCSPServer {
		resp, der, err := o.fetchFrom(url, req)
		if err == nil {
			return resp, der, url, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", url, err))
	}
	return nil, nil, o.leaf.OCSPServer[0], errors.Join(errs...)
}

func (o *stapled) fetchFrom(url string, req []byte) (*ocsp.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(o.st.ctx, ocspFetchTimeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(req))
	if err != nil {
		return nil, nil, err
	}
	hr.Header.Set("Content-Type", "application/ocsp-request")
	hr.Header.Set("Accept", "application/ocsp-response")
	res, err := o.st.client.Do(hr)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	der, err := io.ReadAll(io.LimitReader(res.Body, ocspMaxResponse+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the response: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("responder answered HTTP %d", res.StatusCode)
	}
	if len(der) > ocspMaxResponse {
		return nil, nil, fmt.Errorf("response larger than %d bytes", ocspMaxResponse)
	}
	resp, err := ocsp.ParseResponseForCert(der, o.leaf, o.issuer)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid response: %w", err)
	}
	if err := o.check(resp); err != nil {
		return nil, nil, err
	}
	return resp, der, nil
}

// waitFirst waits until every state in states has made its first fetch
// attempt, or until d has passed.
func waitFirst(states []*stapled, d time.Duration) {
	if len(states) == 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for _, o := range states {
		select {
		case <-o.first:
		case <-t.C:
			return
		}
	}
}
