package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/edgeproxy/edge/edge/accesslog"
	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/edge/stats"
	"github.com/edgeproxy/edge/router"
	edgetls "github.com/edgeproxy/edge/tls"
	"github.com/edgeproxy/edge/upstream"
)

// Options configure a Server.
type Options struct {
	// Config is the validated configuration to serve.
	Config *config.Config
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
	// Stats holds counters; nil means a fresh in-memory store.
	Stats *stats.Store
	// Listen opens a listening socket; nil means net.Listen. Hot restart
	// passes a function that returns inherited sockets.
	Listen func(network, addr string) (net.Listener, error)
	// ListenPacket opens the UDP socket of a listener that serves HTTP/3
	// (bound to the TCP listener's host and port); nil means
	// net.ListenPacket. Hot restart passes a function that returns
	// inherited sockets. edge closes the socket when it stops.
	ListenPacket func(network, addr string) (net.PacketConn, error)
	// Version is reported by the admin API.
	Version string
	// TicketKeys encrypt TLS session tickets; nil means fresh keys. Hot
	// restart passes the parent's so that sessions resume across it.
	TicketKeys *edgetls.TicketKeys
	// DrainTime is how long a drain lets connections finish on their own
	// (--drain-time; 0 means DefaultDrainTime). When it ends, idle and
	// upgraded (WebSocket) connections are closed.
	DrainTime time.Duration
	// ShutdownTime is when a drain closes whatever remains, counted from
	// its start (--parent-shutdown-time; 0 means DefaultShutdownTime). It
	// is never shorter than DrainTime.
	ShutdownTime time.Duration
	// Epoch is the hot restart generation (0 for the first process),
	// reported by the admin API and the server_hot_restart_epoch gauge.
	Epoch int
	// LogLevel, when set, is the level of Logger's handler, so that the
	// admin API can change it at run time.
	LogLevel *slog.LevelVar
	// OCSPStaples are the staples the previous process served (hot
	// restart; see Server.OCSPStaples), served again until they are due
	// for refresh.
	OCSPStaples [][]byte
	// QUIC sets what HTTP/3 listeners' QUIC transports share with other
	// generations across a hot restart; zero means quic-go's defaults.
	QUIC QUICOptions

	// validating: compile only (edge validate): no OCSP fetches.
	validating bool
}

// Default drain timers, as Envoy's --drain-time-s and
// --parent-shutdown-time-s.
const (
	DefaultDrainTime    = 600 * time.Second
	DefaultShutdownTime = 900 * time.Second
)

// QUICOptions make QUIC connections outlive a change of process: IDs that
// name the generation that issued them (so that the next one can forward
// their packets back) and keys every generation shares.
type QUICOptions struct {
	// ConnectionIDGenerator issues this process's connection IDs.
	ConnectionIDGenerator quic.ConnectionIDGenerator
	// StatelessResetKey derives stateless reset tokens.
	StatelessResetKey *quic.StatelessResetKey
	// TokenGeneratorKey encrypts address validation tokens.
	TokenGeneratorKey *quic.TokenGeneratorKey
}

// Handoff passes an idle cleartext HTTP/1.1 connection of the named
// listener to another process (the hot restart child), which serves its next
// request. It reports whether the connection was passed; either way the
// caller then closes its own descriptor.
type Handoff func(listener string, c net.Conn) bool

// Server is a running edge: listeners, the forwarding core, clusters and
// the admin server, all built from one config.
type Server struct {
	cfg      *config.Config
	logger   *slog.Logger
	stats    *stats.Store
	listen   func(network, addr string) (net.Listener, error)
	version  string
	started  time.Time
	clusters *upstream.Set

	// listenPacket opens HTTP/3 listeners' UDP sockets.
	listenPacket func(network, addr string) (net.PacketConn, error)

	listeners []*listenerRuntime
	admin     *adminServer

	tickets *edgetls.TicketKeys
	stapler *edgetls.Stapler // nil while validating
	acme    []*edgetls.ACME

	drainTime, shutdownTime time.Duration
	epoch                   int
	logLevel                *slog.LevelVar
	quic                    QUICOptions

	// healthFailed makes /ready answer 503 (admin /healthcheck/fail) while
	// traffic still flows.
	healthFailed atomic.Bool

	mu    sync.Mutex
	addrs map[string]net.Addr
	ready chan struct{}

	// endNowCtx is canceled by EndNow.
	endNowCtx context.Context
	endNow    context.CancelFunc

	drainOnce    sync.Once
	drainStarted chan struct{} // closed when a drain starts
	drained      chan struct{} // closed when every listener has drained
	quit         chan struct{} // closed by Quit
	quitOnce     sync.Once
}

// listenerRuntime is one listener's compiled state: everything a request
// on it reads, resolved at compile time.
type listenerRuntime struct {
	name        string
	cfg         *config.Listener
	table       *router.Table
	clusters    []*clusterRuntime // indexed as the router's cluster indexes
	trustedHops int
	// peerMustVerify: the listener verifies client certificates, so only a
	// verified peer is a trusted hop.
	peerMustVerify bool
	// acme are the ACME managers whose HTTP-01 challenges this (plain
	// HTTP) listener answers.
	acme       []*edgetls.ACME
	maxHeaders int
	tlsConfig  *tls.Config
	accessLog  *accesslog.Logger
	logger     *slog.Logger
	stats      listenerStats
	down       *downstream // accepted connections (listen.go)
	// h3 serves HTTP/3 on the UDP twin of the TCP socket (http3.go); nil
	// when the listener does not offer it.
	h3 *h3server
	// altSvc is the Alt-Svc field value HTTP/1.1 and HTTP/2 responses
	// carry when the listener also serves HTTP/3 (h3=":PORT"; ma=86400),
	// set once the UDP socket is bound, before any request; "" otherwise.
	altSvc string
}

type listenerStats struct {
	cxTotal  stats.Counter
	cxActive stats.Gauge
	// Idle HTTP/1.1 connections handed to (adopted from) another process
	// during a hot restart drain.
	cxHandedOff, cxAdopted stats.Counter
	// TLS handshakes completed (resumed ones included), resumed, and failed.
	tlsHandshake, tlsSessionReused, tlsHandshakeError stats.Counter
	rqTotal                                           stats.Counter
	rqActive                                          stats.Gauge
	rqClass                                           [5]stats.Counter // 1xx..5xx
	rqTime                                            stats.Histogram  // downstream_rq_time
}

// New compiles cfg into a Server without opening any socket. Errors are
// config errors that name the place in the file.
func New(o Options) (*Server, error) {
	s := &Server{
		cfg:     o.Config,
		logger:  o.Logger,
		stats:   o.Stats,
		listen:  o.Listen,
		version: o.Version,
		addrs:   map[string]net.Addr{},
		ready:   make(chan struct{}),

		drainTime:    o.DrainTime,
		shutdownTime: o.ShutdownTime,
		epoch:        o.Epoch,
		logLevel:     o.LogLevel,
		quic:         o.QUIC,
		drainStarted: make(chan struct{}),
		drained:      make(chan struct{}),
		quit:         make(chan struct{}),
	}
	if s.drainTime <= 0 {
		s.drainTime = DefaultDrainTime
	}
	if s.shutdownTime <= 0 {
		s.shutdownTime = DefaultShutdownTime
	}
	s.shutdownTime = max(s.shutdownTime, s.drainTime)
	s.endNowCtx, s.endNow = context.WithCancel(context.Background())
	s.listenPacket = o.ListenPacket
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.stats == nil {
		s.stats = stats.NewStore(stats.DefaultSlots)
	}
	if s.listen == nil {
		s.listen = net.Listen
	}
	if s.listenPacket == nil {
		s.listenPacket = net.ListenPacket
	}
	s.tickets = o.TicketKeys
	if s.tickets == nil {
		k, err := edgetls.NewTicketKeys(0, 0)
		if err != nil {
			return nil, fmt.Errorf("session ticket keys: %w", err)
		}
		s.tickets = k
	}
	if !o.validating {
		s.stapler = edgetls.NewStapler(s.logger)
		s.stapler.Carry(o.OCSPStaples)
	}
	if err := s.compile(); err != nil {
		if s.stapler != nil {
			s.stapler.Stop()
		}
		return nil, err
	}
	return s, nil
}

// Validate compiles cfg as New does (reading certificate files and
// compiling routes) and reports every error, without serving.
func Validate(cfg *config.Config) error {
	s, err := New(Options{Config: cfg, validating: true})
	if err != nil {
		return err
	}
	s.clusters.Close()
	for _, l := range s.listeners {
		if l.accessLog != nil {
			l.accessLog.Close()
		}
	}
	return nil
}

func (s *Server) compile() error {
	cfg := s.cfg
	var errs config.Errors
	addErr := func(err error) {
		var ces config.Errors
		var ce *config.Error
		switch {
		case errors.As(err, &ces):
			errs = append(errs, ces...)
		case errors.As(err, &ce):
			errs = append(errs, ce)
		default:
			errs = append(errs, &config.Error{File: cfg.File, Msg: err.Error()})
		}
	}
	set, err := upstream.NewSet(cfg, upstream.Options{Logger: s.logger, Stats: s.stats})
	if err != nil {
		return err
	}
	s.clusters = set
	index := set.Index()
	clusters := make([]*clusterRuntime, len(set.Clusters()))
	for i, c := range set.Clusters() {
		clusters[i] = newClusterRuntime(s.stats, c)
	}
	tables := map[string]*router.Table{}
	for i := range cfg.RouteConfigs {
		rc := &cfg.RouteConfigs[i]
		t, err := router.Compile(cfg, rc, fmt.Sprintf("route_configs[%d]", i), index)
		if err != nil {
			addErr(err)
			continue
		}
		tables[rc.Name] = t
	}
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		path := fmt.Sprintf("listeners[%d]", i)
		l := &listenerRuntime{
			name:           lc.Name,
			cfg:            lc,
			table:          tables[lc.RouteConfig],
			clusters:       clusters,
			trustedHops:    lc.XFFTrustedHops,
			peerMustVerify: lc.TLS != nil && lc.TLS.ClientAuth != nil && lc.TLS.ClientAuth.Mode != "none",
			maxHeaders:     lc.Limits.MaxRequestHeaders,
			logger:         s.logger,
		}
		if lc.TLS != nil {
			opts := edgetls.ServerOptions{TicketKeys: s.tickets, Stapler: s.stapler}
			if lc.TLS.ACME != nil {
				m, err := edgetls.NewACME(cfg, path+".tls.acme", lc.TLS.ACME, edgetls.ACMEOptions{
					Logger: s.logger, HTTPPort: plainHTTPPort(cfg), TLSPort: addressPort(lc.Address),
					OnResult: acmeStats(s.stats, lc.Name),
				})
				if err != nil {
					addErr(err)
				} else {
					opts.ACME = m
					s.acme = append(s.acme, m)
				}
			}
			tc, err := edgetls.ServerConfigWith(cfg, path+".tls", lc.TLS, alpn(lc.Protocols), opts)
			if err != nil {
				addErr(err)
			}
			l.tlsConfig = tc
		}
		if lc.AccessLog != nil {
			al, err := accesslog.New(lc.AccessLog, cfg.Resolve)
			if err != nil {
				addErr(cfg.Errorf(lc.AccessLog.Pos(), path+".access_log", "%v", err))
			}
			l.accessLog = al
		}
		lbl := stats.Label{Name: "listener", Value: lc.Name}
		l.stats.cxTotal = s.stats.Counter("edge_listener_downstream_cx_total", "Downstream connections accepted.", lbl)
		l.stats.cxActive = s.stats.Gauge("edge_listener_downstream_cx_active", "Downstream connections open.", lbl)
		l.stats.cxHandedOff = s.stats.Counter("edge_listener_downstream_cx_handed_off", "Idle connections passed to the next process during a hot restart drain.", lbl)
		l.stats.cxAdopted = s.stats.Counter("edge_listener_downstream_cx_adopted", "Idle connections taken over from the previous process during a hot restart.", lbl)
		if lc.TLS != nil {
			l.stats.tlsHandshake = s.stats.Counter("edge_listener_downstream_tls_handshake_total", "TLS handshakes completed, resumed ones included.", lbl)
			l.stats.tlsSessionReused = s.stats.Counter("edge_listener_downstream_tls_session_reused", "TLS handshakes that resumed a session.", lbl)
			l.stats.tlsHandshakeError = s.stats.Counter("edge_listener_downstream_tls_handshake_error", "TLS handshakes that failed.", lbl)
		}
		l.stats.rqTotal = s.stats.Counter("edge_http_downstream_rq_total", "Downstream requests.", lbl)
		l.stats.rqActive = s.stats.Gauge("edge_http_downstream_rq_active", "Downstream requests in progress.", lbl)
		for k := range l.stats.rqClass {
			l.stats.rqClass[k] = s.stats.Counter("edge_http_downstream_rq_xx", "Downstream responses by status class.",
				lbl, stats.Label{Name: "response_code_class", Value: fmt.Sprintf("%dxx", k+1)})
		}
		l.stats.rqTime = s.stats.Histogram("edge_http_downstream_rq_time", "Milliseconds from a request's head parsed to the last byte of its response written.", stats.DefaultBounds(), lbl)
		l.down = newDownstream(l)
		if l.tlsConfig != nil && slices.Contains(lc.Protocols, "http3") {
			l.h3 = newH3Server(l, s.quic)
		}
		s.listeners = append(s.listeners, l)
	}
	for _, l := range s.listeners {
		if l.tlsConfig == nil {
			l.acme = s.acme // plain-HTTP listeners answer HTTP-01 challenges
		}
	}
	if len(errs) > 0 {
		set.Close()
		return errs
	}
	if cfg.Admin.Address != "" {
		s.admin = newAdminServer(s)
	}
	return nil
}

// acmeStats counts a listener's ACME results: certificates obtained,
// renewed, and attempts that failed (certmagic retries them).
func acmeStats(st *stats.Store, listener string) func(obtained, renewal bool) {
	lbl := stats.Label{Name: "listener", Value: listener}
	obtained := st.Counter("edge_acme_certificates_obtained_total", "ACME certificates obtained (renewals excluded).", lbl)
	renewed := st.Counter("edge_acme_certificates_renewed_total", "ACME certificates renewed.", lbl)
	failed := st.Counter("edge_acme_failures_total", "ACME issuance or renewal attempts that failed (retried with backoff).", lbl)
	return func(ok, renewal bool) {
		switch {
		case !ok:
			failed.Inc()
		case renewal:
			renewed.Inc()
		default:
			obtained.Inc()
		}
	}
}

// alpn lists the ALPN protocols a TLS listener offers, best first.
func alpn(protocols []string) []string {
	var out []string
	for _, p := range protocols {
		if p == "http2" {
			out = append(out, "h2")
		}
	}
	for _, p := range protocols {
		if p == "http1" {
			out = append(out, "http/1.1")
		}
	}
	return out
}

// Run opens every listener and serves until ctx is done or Quit is called,
// then drains (see Drain) and stops.
func (s *Server) Run(ctx context.Context) error {
	s.started = time.Now()
	if err := s.clusters.Start(ctx); err != nil {
		// A DNS name that does not resolve yet is not fatal: its cluster
		// answers 503 (no healthy upstream) until a refresh succeeds.
		s.logger.Warn("cluster warm-up incomplete", "err", err)
	}
	var lns []net.Listener
	var h3s []*h3server
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
		for _, h := range h3s {
			h.close()
		}
	}
	for _, l := range s.listeners {
		ln, err := s.listen("tcp", l.cfg.Address)
		if err != nil {
			closeAll()
			return fmt.Errorf("listener %q: %w", l.name, err)
		}
		lns = append(lns, ln)
		s.setAddr(l.name, ln.Addr())
		if l.h3 != nil {
			if err := l.h3.listen(s.listenPacket, l.cfg.Address, ln.Addr()); err != nil {
				closeAll()
				return fmt.Errorf("listener %q: http3: %w", l.name, err)
			}
			h3s = append(h3s, l.h3)
		}
	}
	var adminLn net.Listener
	if s.admin != nil {
		ln, err := s.listen("tcp", s.cfg.Admin.Address)
		if err != nil {
			closeAll()
			return fmt.Errorf("admin: %w", err)
		}
		adminLn = ln
		s.setAddr("admin", ln.Addr())
	}

	errc := make(chan error, len(lns)+len(h3s)+1)
	for i, l := range s.listeners {
		l.down.listen(lns[i])
		go func() { sendErr(errc, l.down.serve()) }()
		s.logger.Info("listening", "listener", l.name, "address", lns[i].Addr().String(), "tls", l.tlsConfig != nil, "protocols", l.cfg.Protocols)
		if l.h3 != nil {
			go func() { sendErr(errc, l.h3.serve()) }()
			s.logger.Info("listening", "listener", l.name, "address", l.h3.pc.LocalAddr().String(), "network", "udp", "protocols", []string{"http3"})
		}
	}
	if adminLn != nil {
		go func() { sendErr(errc, serveErr(s.admin.srv.Serve(adminLn))) }()
		s.logger.Info("admin listening", "address", adminLn.Addr().String())
	}
	for _, m := range s.acme {
		m.Start(ctx)
	}
	close(s.ready)

	var err error
	select {
	case <-ctx.Done():
	case <-s.quit:
	case err = <-errc:
	}
	s.Drain(nil)
	<-s.drained
	s.stop()
	return err
}

// sendErr reports a serving failure to Run; a server that ended because
// it was told to (drain, StopAdmin) reports nothing.
func sendErr(errc chan<- error, err error) {
	if err != nil {
		errc <- err
	}
}

func serveErr(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Drain stops accepting on every listener and lets open connections end:
// HTTP/1.1 responses carry connection: close, HTTP/2 and HTTP/3 get
// GOAWAY, idle HTTP/1.1 connections are closed — or, when handoff is not
// nil, the cleartext ones are handed to another process instead, even after
// their current response. When DrainTime ends, idle and upgraded
// (WebSocket) connections are closed; at ShutdownTime, everything left.
// Drain returns at once; Drained tells when it is over. Only the first call
// has an effect. The admin API keeps serving.
func (s *Server) Drain(handoff Handoff) {
	s.drainOnce.Do(func() {
		close(s.drainStarted)
		s.logger.Info("draining listeners", "drain_time", s.drainTime, "shutdown_time", s.shutdownTime, "handoff", handoff != nil)
		go s.drain(handoff)
	})
}

func (s *Server) drain(handoff Handoff) {
	defer close(s.drained)
	soft, cancelSoft := context.WithTimeout(context.Background(), s.drainTime)
	defer cancelSoft()
	hard, cancelHard := context.WithTimeout(context.Background(), s.shutdownTime)
	defer cancelHard()
	stop := context.AfterFunc(s.endNowCtx, func() { cancelSoft(); cancelHard() })
	defer stop()
	var wg sync.WaitGroup
	for _, l := range s.listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var h3done chan struct{}
			if l.h3 != nil {
				h3done = make(chan struct{})
				grace := time.Duration(0)
				if handoff != nil {
					grace = h3HandoffGrace
				}
				go func() { defer close(h3done); l.h3.shutdown(hard, grace) }()
			}
			var h func(net.Conn) bool
			if handoff != nil {
				h = func(c net.Conn) bool { return handoff(l.name, c) }
			}
			l.down.shutdown(soft, hard, h)
			if h3done != nil {
				<-h3done
			}
		}()
	}
	wg.Wait()
}

// EndNow ends a drain at once, as if parent-shutdown-time had come: every
// connection is closed (HTTP/3 ones with CONNECTION_CLOSE, so that their
// clients do not wait for a reply). A drain not yet started starts so.
func (s *Server) EndNow() {
	s.endNow()
	s.Drain(nil)
}

// Draining is closed when a drain starts.
func (s *Server) Draining() <-chan struct{} { return s.drainStarted }

// Drained is closed when a drain has ended: every connection is gone.
func (s *Server) Drained() <-chan struct{} { return s.drained }

// Quit makes Run drain and return (admin /quitquitquit).
func (s *Server) Quit() { s.quitOnce.Do(func() { close(s.quit) }) }

// Adopt serves c, a connection another edge process handed over (see
// Handoff), as if the named listener had accepted it. It fails when the
// listener does not exist here or is draining; the caller then closes c.
func (s *Server) Adopt(listener string, c net.Conn) error {
	for _, l := range s.listeners {
		if l.name == listener {
			return l.down.adopt(c)
		}
	}
	return fmt.Errorf("no listener %q here", listener)
}

// StopAdmin closes the admin listener, so that a hot restart child's
// admin server answers alone.
func (s *Server) StopAdmin() {
	if s.admin != nil {
		s.admin.srv.Close()
	}
}

// stop releases what serving needed, after the drain.
func (s *Server) stop() {
	for _, l := range s.listeners {
		if l.accessLog != nil {
			l.accessLog.Close()
		}
	}
	if s.admin != nil {
		s.admin.srv.Close()
	}
	for _, m := range s.acme {
		m.Stop()
	}
	if s.stapler != nil {
		s.stapler.Stop()
	}
	s.clusters.Close()
}

func (s *Server) setAddr(name string, a net.Addr) {
	s.mu.Lock()
	s.addrs[name] = a
	s.mu.Unlock()
}

// Ready is closed once every listener is accepting.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the bound address of a listener by name ("admin" for the
// admin server), or nil before Run has bound it.
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[name]
}

// OCSPStaples returns the OCSP staples being served, for the next process
// (Options.OCSPStaples).
func (s *Server) OCSPStaples() [][]byte {
	if s.stapler == nil {
		return nil
	}
	return s.stapler.Export()
}

// Stats returns the server's stats store.
func (s *Server) Stats() *stats.Store { return s.stats }

// ReopenLogs reopens access log files (for logrotate; SIGUSR1).
func (s *Server) ReopenLogs() {
	for _, l := range s.listeners {
		if l.accessLog != nil {
			if err := l.accessLog.Reopen(); err != nil {
				s.logger.Error("reopening access log", "listener", l.name, "err", err)
			}
		}
	}
}

// plainHTTPPort is the port of the first listener without TLS, where
// HTTP-01 challenges are answered (0: none; the CA then uses port 80).
func plainHTTPPort(cfg *config.Config) int {
	for _, l := range cfg.Listeners {
		if l.TLS == nil {
			return addressPort(l.Address)
		}
	}
	return 0
}

func addressPort(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
