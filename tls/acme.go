package tls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"

	"github.com/edgeproxy/edge/edge/config"
)

// ACMETLS1Protocol is the ALPN protocol of the TLS-ALPN-01 challenge
// (RFC 8737). A connection that negotiated it carries no HTTP: the CA
// only looks at the certificate and closes. Callers should close such a
// connection right after the handshake.
const ACMETLS1Protocol = acmez.ACMETLS1Protocol

// DefaultACMEDirectory is the directory used when acme.directory is not
// set: Let's Encrypt's production CA.
const DefaultACMEDirectory = certmagic.LetsEncryptProductionCA

// acmeChallengePrefix is the path of HTTP-01 challenge requests.
const acmeChallengePrefix = "/.well-known/acme-challenge/"

// askTimeout bounds one on_demand_ask request.
const askTimeout = 10 * time.Second

var (
	errACMENotStarted = errors.New("ACME manager not started: no ACME certificates yet")
	errNotManaged     = errors.New("name not managed by ACME")
	errNoACMEDefault  = errors.New("no certificate available yet: ACME has obtained none of the listener's domains")
)

// ACMEOptions are the settings of an ACME manager that come from outside
// its config section.
type ACMEOptions struct {
	// Logger receives certmagic's log and the manager's own: certificates
	// obtained (Info), failures with the CA's problem detail (Error).
	// Nil discards.
	Logger *slog.Logger
	// HTTPPort and TLSPort are the ports on which edge answers the CA's
	// HTTP-01 requests (the plain-HTTP listener that calls HTTPChallenge)
	// and TLS-ALPN-01 handshakes (the TLS listener served with this
	// manager). Zero means 80 and 443, the ports public CAs use. certmagic
	// checks them before each challenge: when edge holds the port it
	// relies on edge to answer; when nothing listens there it binds the
	// port itself for the duration of the challenge.
	HTTPPort, TLSPort int
	// OnResult, when set, is told of every issuance or renewal attempt's
	// end (for stats): whether a certificate was obtained, and whether it
	// was a renewal.
	OnResult func(obtained, renewal bool)
}

// ACME obtains and renews the certificates of one listener's tls.acme
// section through certmagic: the listed domains eagerly, in the
// background; other names on demand, during the handshake, when the
// on_demand_ask endpoint allows them.
//
// NewACME only checks the section and prepares; nothing touches the
// network or the disk before Start. After Start, GetCertificate (through
// ServerConfigWith) serves the managed certificates, the TLS listener
// answers TLS-ALPN-01 challenges and HTTPChallenge answers HTTP-01 ones.
// Stop ends issuance and renewal; certificates already obtained keep
// being served, so a draining listener keeps working.
//
// Certificates, keys, the ACME account and locks live in the storage
// directory (certmagic's file layout). Processes sharing it coordinate
// through its lock files, and a challenge started by one can be answered
// by another (a hot-restart parent and child, or several edges behind a
// load balancer).
type ACME struct {
	path      string // field path, such as listeners[0].tls.acme
	logger    *slog.Logger
	directory string
	email     string
	roots     *x509.CertPool // nil: system roots
	domains   []string       // normalized, config order
	managed   map[string]struct{}
	ask       *url.URL // nil: no on-demand issuance
	askName   string   // ask without its query (which may hold a token), for messages
	storage   string
	httpPort  int
	tlsPort   int

	// Challenge types certmagic may use; tests pin one.
	disableHTTP01, disableTLSALPN01 bool

	askClient    *http.Client
	challengeTLS *tls.Config // served to TLS-ALPN-01 handshakes
	onResult     func(obtained, renewal bool)

	mu       sync.Mutex // guards started, stopped, cancel
	started  bool
	stopped  bool
	cancel   context.CancelFunc
	stopOnce sync.Once
	wg       sync.WaitGroup
	run      atomic.Pointer[acmeRun]
}

// acmeRun is what Start builds: certmagic's cache and configs.
type acmeRun struct {
	cache    *certmagic.Cache
	managed  *certmagic.Config     // the domains list; obtains eagerly
	issuer   *certmagic.ACMEIssuer // managed's issuer (HTTP-01 answers)
	onDemand *certmagic.Config     // other names, gated by on_demand_ask; nil without it
}

// NewACME checks the acme section a (path is its field path, such as
// "listeners[0].tls.acme") and returns an unstarted manager. Every problem
// is reported, as a config.Errors naming the field: a directory that is
// not an https URL, an unreadable ca_root_file, a wildcard, IP or
// malformed domain, an on_demand_ask that is not an http(s) URL.
//
// Relative paths resolve against the config file's directory. Without
// storage, certificates go to $XDG_DATA_HOME/edge/acme, else
// $HOME/.local/share/edge/acme, else acme/ next to the config file.
func NewACME(cfg *config.Config, path string, a *config.ACME, opts ACMEOptions) (*ACME, error) {
	if a == nil {
		return nil, cfg.Errorf(config.Pos{}, path, "missing: no acme section")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &ACME{
		path:      path,
		logger:    logger.With("acme", path),
		onResult:  opts.OnResult,
		directory: a.Directory,
		email:     a.Email,
		managed:   make(map[string]struct{}, len(a.Domains)),
		httpPort:  opts.HTTPPort,
		tlsPort:   opts.TLSPort,
		askClient: &http.Client{
			Timeout:   askTimeout,
			Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // a redirect is an answer, not a 2xx
			},
		},
	}
	var errs config.Errors
	bad := func(key, format string, args ...any) {
		errs = append(errs, cfg.Errorf(a.KeyPos(key), path+"."+key, format, args...))
	}

	if m.directory == "" {
		m.directory = DefaultACMEDirectory
	} else if u, err := url.Parse(m.directory); err != nil || u.Scheme != "https" || u.Host == "" {
		bad("directory", "%q is not an https URL: name the CA's ACME directory, such as %s", a.Directory, DefaultACMEDirectory)
	}
	if a.Email != "" && (!strings.Contains(a.Email, "@") || strings.ContainsAny(a.Email, " \t\r\n<>,;:")) {
		bad("email", "%q is not an email address", a.Email)
	}
	if a.CARootFile != "" {
		pool, err := loadCAPool(cfg, &a.Meta, "ca_root_file", path, a.CARootFile)
		if err != nil {
			errs = append(errs, err)
		}
		m.roots = pool
	}
	for i, d := range a.Domains {
		n := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		dp := fmt.Sprintf("%s.domains[%d]", path, i)
		bad := func(format string, args ...any) {
			errs = append(errs, cfg.Errorf(a.KeyPos("domains"), dp, format, args...))
		}
		switch {
		case n == "":
			bad("empty domain")
		case strings.Contains(n, "*"):
			bad("%q: wildcard certificates need the DNS-01 challenge, which edge does not do; list the names, or use on_demand_ask", d)
		case net.ParseIP(n) != nil:
			bad("%q is an IP address: clients do not send IP addresses in SNI, so list DNS names", d)
		case len(n) > maxServerName || !certmagic.SubjectQualifiesForCert(n) || strings.Contains(n, ".."):
			bad("%q is not a valid DNS name", d)
		default:
			if _, dup := m.managed[n]; dup {
				bad("%q is listed twice", d)
				continue
			}
			m.managed[n] = struct{}{}
			m.domains = append(m.domains, n)
		}
	}
	if a.OnDemandAsk != "" {
		u, err := url.Parse(a.OnDemandAsk)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("on_demand_ask", "%q is not an http(s) URL: name the endpoint that answers 2xx for ?domain=NAME when a certificate may be obtained", a.OnDemandAsk)
		} else {
			m.ask = u
			m.askName = u.Scheme + "://" + u.Host + u.Path
		}
	}
	if len(a.Domains) == 0 && a.OnDemandAsk == "" {
		bad("domains", "list the domains to obtain certificates for, or set on_demand_ask")
	}
	switch {
	case a.Storage != "":
		m.storage = cfg.Resolve(a.Storage)
	default:
		m.storage = defaultACMEStorage(cfg)
	}
	for _, p := range []struct {
		key  string
		port int
	}{{"HTTPPort", opts.HTTPPort}, {"TLSPort", opts.TLSPort}} {
		if p.port < 0 || p.port > 65535 {
			errs = append(errs, cfg.Errorf(a.Pos(), path, "internal: ACMEOptions.%s %d is not a port", p.key, p.port))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	m.challengeTLS = &tls.Config{
		GetCertificate:         m.challengeCertificate,
		NextProtos:             []string{ACMETLS1Protocol},
		MinVersion:             tls.VersionTLS12,
		SessionTicketsDisabled: true,
	}
	return m, nil
}

// defaultACMEStorage is where certificates go without acme.storage.
func defaultACMEStorage(cfg *config.Config) string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "edge", "acme")
	}
	if h := os.Getenv("HOME"); h != "" && filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "share", "edge", "acme")
	}
	return cfg.Resolve("acme")
}

// Storage returns the directory certificates are kept in.
func (m *ACME) Storage() string { return m.storage }

// Domains returns the managed domains, normalized (lower case, no
// trailing dot), in config order.
func (m *ACME) Domains() []string { return append([]string(nil), m.domains...) }

// Start begins managing the certificates in the background and returns
// at once: each domain's certificate is loaded from storage, or obtained
// from the CA, and renewed before it expires. A failure is logged with the
// CA's reason and retried with backoff (certmagic's schedule: 1, 2, 2, 5,
// 10 minutes, growing to 6 hours, for up to 30 days); the listener serves
// its other certificates meanwhile. ctx ends the work like Stop. Start
// after Stop, or a second Start, does nothing.
func (m *ACME) Start(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started || m.stopped {
		return
	}
	m.started = true
	ctx, m.cancel = context.WithCancel(ctx)

	zl := newZapLogger(m.logger)
	storage := &certmagic.FileStorage{Path: m.storage}
	run := &acmeRun{}
	run.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: m.configForCert,
		Logger:           zl,
	})
	newConfig := func(od *certmagic.OnDemandConfig) (*certmagic.Config, *certmagic.ACMEIssuer) {
		c := certmagic.New(run.cache, certmagic.Config{
			Storage:        storage,
			Logger:         zl,
			OnDemand:       od,
			OnEvent:        m.onEvent,
			ShouldEmitFunc: func(event string) bool { return event == "cert_obtained" || event == "cert_failed" },
		})
		iss := certmagic.NewACMEIssuer(c, certmagic.ACMEIssuer{
			CA:                      m.directory,
			Email:                   m.email,
			Agreed:                  true, // configuring acme is agreeing to the CA's terms
			TrustedRoots:            m.roots,
			AltHTTPPort:             m.httpPort,
			AltTLSALPNPort:          m.tlsPort,
			DisableHTTPChallenge:    m.disableHTTP01,
			DisableTLSALPNChallenge: m.disableTLSALPN01,
			Logger:                  zl,
		})
		c.Issuers = []certmagic.Issuer{iss}
		return c, iss
	}
	run.managed, run.issuer = newConfig(nil)
	if m.ask != nil {
		run.onDemand, _ = newConfig(&certmagic.OnDemandConfig{DecisionFunc: m.decide})
	}
	m.run.Store(run)
	m.logger.Info("ACME manager started", "directory", m.directory, "domains", m.domains,
		"on_demand", m.ask != nil, "storage", m.storage)
	for _, d := range m.domains {
		m.wg.Go(func() { m.manage(ctx, run.managed, d) })
	}
}

// Stop ends issuance and renewal and waits for the background work to
// return. Certificates already obtained keep being served. Stop is safe
// to call more than once, and without Start.
func (m *ACME) Stop() {
	m.mu.Lock()
	m.stopped = true
	cancel := m.cancel
	m.mu.Unlock()
	if cancel == nil {
		return
	}
	m.stopOnce.Do(func() {
		cancel()
		m.wg.Wait()
		if run := m.run.Load(); run != nil {
			run.cache.Stop()
		}
		m.askClient.CloseIdleConnections()
	})
}

// manage gets name's certificate into the cache: from storage, or from
// the CA (retrying with backoff until ctx ends), then renews it if due.
// From then on certmagic's cache maintenance renews it.
func (m *ACME) manage(ctx context.Context, cfg *certmagic.Config, name string) {
	// A no-op when storage has the certificate already.
	if err := cfg.ObtainCertAsync(ctx, name); err != nil {
		if ctx.Err() == nil {
			m.logger.Error("ACME: giving up obtaining a certificate", "domain", name, "error", err)
		}
		return
	}
	if err := cfg.ManageSync(ctx, []string{name}); err != nil && ctx.Err() == nil {
		m.logger.Error("ACME: loading or renewing a certificate failed; renewal is retried by maintenance", "domain", name, "error", err)
	}
}

// configForCert tells certmagic's cache which config maintains c.
func (m *ACME) configForCert(c certmagic.Certificate) (*certmagic.Config, error) {
	run := m.run.Load()
	if run == nil {
		return nil, errACMENotStarted
	}
	if run.onDemand != nil {
		for _, n := range c.Names {
			if _, ok := m.managed[n]; !ok {
				return run.onDemand, nil
			}
		}
	}
	return run.managed, nil
}

// onEvent logs certmagic's outcome events in edge's terms.
func (m *ACME) onEvent(ctx context.Context, event string, data map[string]any) error {
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtained":
		m.logger.Info("ACME certificate obtained", "domain", data["identifier"], "renewal", data["renewal"],
			"issuer", data["issuer"])
		if m.onResult != nil {
			m.onResult(true, renewal)
		}
	case "cert_failed":
		if m.onResult != nil {
			m.onResult(false, renewal)
		}
		err, _ := data["error"].(error)
		args := []any{"domain", data["identifier"], "renewal", data["renewal"], "error", err}
		if p, ok := problem(err); ok {
			args = append(args, "ca_problem", p.Type, "reason", p.Detail)
		}
		if n, ok := ctx.Value(certmagic.AttemptsCtxKey).(*int); ok {
			args = append(args, "attempt", *n+1)
		}
		m.logger.Error("ACME certificate not obtained; retrying with backoff", args...)
	}
	return nil
}

// problem finds the CA's problem document in err.
func problem(err error) (acme.Problem, bool) {
	var p acme.Problem
	if errors.As(err, &p) {
		return p, true
	}
	var pp *acme.Problem
	if errors.As(err, &pp) && pp != nil {
		return *pp, true
	}
	return p, false
}

// decide asks on_demand_ask whether a certificate may be obtained for name.
func (m *ACME) decide(ctx context.Context, name string) error {
	if _, ok := m.managed[name]; ok {
		return nil
	}
	u := *m.ask
	q := u.Query()
	q.Set("domain", name)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("on_demand_ask: %w", err)
	}
	res, err := m.askClient.Do(req)
	if err != nil {
		m.logger.Warn("ACME on_demand_ask unreachable; refusing on-demand certificate", "domain", name, "ask", m.askName, "error", err)
		return fmt.Errorf("on_demand_ask %s: %w", m.askName, err)
	}
	io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
	res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		m.logger.Debug("ACME on_demand_ask refused a certificate", "domain", name, "status", res.StatusCode)
		return fmt.Errorf("on_demand_ask %s answered %d for %q: not allowed", m.askName, res.StatusCode, name)
	}
	m.logger.Info("ACME on_demand_ask allowed a certificate", "domain", name)
	return nil
}

// HTTPChallenge answers the CA's HTTP-01 request for host (the request's
// Host header; a port is ignored) and path: it returns the key
// authorization to send as a 200 text/plain body, and true, when path is
// /.well-known/acme-challenge/<token> of a challenge this process or
// another sharing the storage has under way for host. For any other
// request it returns false without allocating, so the plain-HTTP
// listener can call it first for every GET request and route the request
// normally when it says false.
func (m *ACME) HTTPChallenge(host, path string) (body string, ok bool) {
	if !strings.HasPrefix(path, acmeChallengePrefix) {
		return "", false
	}
	run := m.run.Load()
	if run == nil {
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostPort(host)+path, nil)
	if err != nil {
		return "", false
	}
	r.Host = host
	r.RequestURI = path
	w := &bodyRecorder{}
	if !run.issuer.HandleHTTPChallenge(w, r) {
		return "", false
	}
	return w.b.String(), true
}

// hostPort makes host usable in a URL (brackets for IPv6 without a port).
func hostPort(host string) string {
	if strings.Count(host, ":") > 1 && !strings.HasPrefix(host, "[") {
		return "[" + host + "]"
	}
	return host
}

// bodyRecorder is the http.ResponseWriter certmagic writes the key
// authorization to.
type bodyRecorder struct {
	h http.Header
	b strings.Builder
}

func (w *bodyRecorder) Header() http.Header {
	if w.h == nil {
		w.h = make(http.Header)
	}
	return w.h
}
func (w *bodyRecorder) Write(p []byte) (int, error) { return w.b.Write(p) }
func (w *bodyRecorder) WriteHeader(int)             {}

// isChallengeHello reports whether hello is a TLS-ALPN-01 validation:
// SNI set and acme-tls/1 the only protocol offered.
func isChallengeHello(hello *tls.ClientHelloInfo) bool {
	return hello.ServerName != "" && len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == ACMETLS1Protocol
}

// challengeCertificate serves the TLS-ALPN-01 certificate.
func (m *ACME) challengeCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	run := m.run.Load()
	if run == nil {
		return nil, errACMENotStarted
	}
	return run.managed.GetCertificate(hello)
}

// certificate returns the ACME certificate for hello's SNI: a managed
// domain's, or one obtained on demand. An error means none (yet): the
// caller falls back to a default.
func (m *ACME) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	run := m.run.Load()
	if run == nil {
		return nil, errACMENotStarted
	}
	name := strings.TrimSuffix(hello.ServerName, ".")
	if name == "" || len(name) > maxServerName {
		return nil, errNotManaged
	}
	var buf [maxServerName]byte
	if _, ok := m.managed[string(lower(buf[:0], name))]; ok {
		return run.managed.GetCertificate(hello)
	}
	if run.onDemand != nil {
		return run.onDemand.GetCertificate(hello)
	}
	return nil, errNotManaged
}

// defaultCertificate is the certificate of the first managed domain that
// has one, for a listener without certificate files.
func (m *ACME) defaultCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	run := m.run.Load()
	if run == nil {
		return nil, errACMENotStarted
	}
	for _, d := range m.domains {
		cs := run.cache.AllMatchingCertificates(d)
		for i := range cs {
			if hello.SupportsCertificate(&cs[i].Certificate) == nil && !cs[i].Expired() {
				return &cs[i].Certificate, nil
			}
		}
	}
	return nil, errNoACMEDefault
}

// lower appends name to b in ASCII lower case.
func lower(b []byte, name string) []byte {
	b = append(b, name...)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return b
}
