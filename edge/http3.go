package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// This file serves HTTP/3 with quic-go on the UDP twin of a TLS listener
// whose protocols include http3: a quic.Transport on a UDP socket bound to
// the TCP listener's host and port, quic-go's http3.Server on top, and the
// net/http adapter of nethttp.go as the handler, so requests
// reach the forwarding core as message.Requests with ProtoMajor 3.
//
// The socket is opened through Options.ListenPacket and owned by edge, not
// by quic-go: hot restart passes an inherited one (wrapped so that packets
// of the previous generation's connections go back to it). The Transport
// is built here (not by http3.Server.Serve) so that its connection IDs and
// stateless reset and address token keys come from Options.QUIC.
//
// Non-goals for now: 0-RTT (early data is replayable and the core forwards
// any method, so it is off), HTTP/3 datagrams, CONNECT and extended
// CONNECT (WebSocket over HTTP/3; answered 501 like CONNECT on HTTP/1.1),
// moving QUIC connections to a new process on hot restart (they drain
// with GOAWAY on the old one).

// altSvcMaxAge is the ma parameter of the Alt-Svc field: how long, in
// seconds, a client may remember that HTTP/3 is offered.
const altSvcMaxAge = 86400

// h3HandoffGrace is how long a draining process that handed its QUIC socket
// to a hot restart child keeps accepting the connections whose handshakes
// were under way.
const h3HandoffGrace = time.Second

// h3server serves one listener's HTTP/3.
type h3server struct {
	l        *listenerRuntime
	srv      *http3.Server
	tlsConf  *tls.Config
	quicConf *quic.Config

	// headTimeout bounds the probe for a request body that is not
	// announced (see ServeHTTP).
	headTimeout time.Duration

	// quicOpts are the Transport settings shared across hot restarts.
	quicOpts QUICOptions

	pc net.PacketConn
	tr *quic.Transport
	ln *quic.Listener

	closeOnce sync.Once
}

// h3ConnKey is the context key of an h3conn in a QUIC connection's context.
type h3ConnKey struct{}

// h3conn is what the stats hooks know of one QUIC connection.
type h3conn struct {
	handshook atomic.Bool
}

// newH3Server builds l's HTTP/3 server from its config and TLS config;
// nothing is bound until listen.
func newH3Server(l *listenerRuntime, qo QUICOptions) *h3server {
	lc := l.cfg
	h := &h3server{l: l, headTimeout: lc.Timeouts.RequestHeaders.D(), quicOpts: qo}

	// quic-go clones the config again and enforces TLS 1.3 itself, also on
	// configs from GetConfigForClient; ConfigureTLSConfig makes those
	// negotiate h3 too. Session tickets stay shared with TCP: WrapSession
	// and UnwrapSession (rotating keys) are carried over by the clone.
	tc := http3.ConfigureTLSConfig(l.tlsConfig)
	tc.MinVersion = tls.VersionTLS13
	h.tlsConf = tc

	h.quicConf = &quic.Config{
		HandshakeIdleTimeout: lc.Timeouts.RequestHeaders.D(),
		MaxIncomingStreams:   int64(lc.Limits.MaxConcurrentStreams),
		Allow0RTT:            false,
	}
	if idle := lc.Timeouts.Idle.D(); idle > 0 {
		h.quicConf.MaxIdleTimeout = idle
	}
	h.srv = &http3.Server{
		Handler:        h,
		MaxHeaderBytes: int(lc.Limits.MaxRequestHeaderBytes),
		IdleTimeout:    lc.Timeouts.Idle.D(),
		ConnContext:    h.connHandshook,
		Logger:         l.logger.With("listener", l.name, "protocol", "http3"),
	}
	return h
}

// listen opens the UDP socket on the host of address (the configured one)
// and the port of tcpAddr (the bound TCP listener's, which differs from
// address when it asks for port 0), and starts QUIC on it.
func (h *h3server) listen(listenPacket func(network, addr string) (net.PacketConn, error), address string, tcpAddr net.Addr) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("address %q: %w", address, err)
	}
	_, port, err := net.SplitHostPort(tcpAddr.String())
	if err != nil {
		return fmt.Errorf("bound address %q: %w", tcpAddr, err)
	}
	pc, err := listenPacket("udp", net.JoinHostPort(host, port))
	if err != nil {
		return err
	}
	return h.listenOn(pc)
}

// listenOn starts QUIC on pc, which h owns from now on.
func (h *h3server) listenOn(pc net.PacketConn) error {
	_, port, err := net.SplitHostPort(pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return fmt.Errorf("udp address %q: %w", pc.LocalAddr(), err)
	}
	h.pc = pc
	h.tr = &quic.Transport{
		Conn:                  pc,
		ConnContext:           h.connOpened,
		ConnectionIDGenerator: h.quicOpts.ConnectionIDGenerator,
		StatelessResetKey:     h.quicOpts.StatelessResetKey,
		TokenGeneratorKey:     h.quicOpts.TokenGeneratorKey,
	}
	// Listen, not ListenEarly: with 0-RTT off, connections are handed
	// over once the handshake is complete, which the stats rely on.
	ln, err := h.tr.Listen(h.tlsConf, h.quicConf)
	if err != nil {
		h.close()
		return fmt.Errorf("quic listen: %w", err)
	}
	h.ln = ln
	h.l.altSvc = `h3=":` + port + `"; ma=` + strconv.Itoa(altSvcMaxAge)
	return nil
}

// serve accepts QUIC connections until shutdown (then it returns nil) or
// the socket fails for good.
func (h *h3server) serve() error {
	err := h.srv.ServeListener(h.ln)
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, quic.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("listener %q: http3: %w", h.l.name, err)
}

// shutdown stops accepting connections, sends GOAWAY on every open one and
// waits for their requests to finish (clients close a connection once it
// has none left); when ctx is done it closes whatever remains. Then it
// closes the UDP socket.
func (h *h3server) shutdown(ctx context.Context, grace time.Duration) {
	if grace > 0 {
		// A hot restart child reads the shared socket now, and forwards
		// here only packets of this process's connections: handshakes
		// under way get grace to complete and be served (closing the
		// listener would refuse them), then GOAWAY like the rest.
		select {
		case <-time.After(grace):
		case <-ctx.Done():
		}
	}
	if h.ln != nil {
		// No new connections; handshakes under way and open
		// connections go on on the Transport.
		h.ln.Close()
	}
	if err := h.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		h.l.logger.Warn("http3 shutdown", "listener", h.l.name, "err", err)
	}
	h.close()
}

// close closes the Transport (every remaining connection) and the socket.
func (h *h3server) close() {
	h.closeOnce.Do(func() {
		if h.tr != nil {
			h.tr.Close()
		}
		if h.pc != nil {
			h.pc.Close()
		}
	})
}

// connOpened counts a new QUIC connection (Transport.ConnContext, before
// the handshake) and arranges for its end to be counted: the context is
// canceled when the connection closes or its handshake fails.
func (h *h3server) connOpened(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
	st := h.l.stats
	st.cxTotal.Inc()
	st.cxActive.Inc()
	c := new(h3conn)
	context.AfterFunc(ctx, func() {
		st.cxActive.Dec()
		if !c.handshook.Load() {
			st.tlsHandshakeError.Inc()
		}
	})
	return context.WithValue(ctx, h3ConnKey{}, c), nil
}

// connHandshook counts a completed handshake (http3.Server.ConnContext,
// called when the listener hands a connection over).
func (h *h3server) connHandshook(ctx context.Context, qc *quic.Conn) context.Context {
	if c, ok := qc.Context().Value(h3ConnKey{}).(*h3conn); ok {
		c.handshook.Store(true)
	}
	st := h.l.stats
	st.tlsHandshake.Inc()
	if qc.ConnectionState().TLS.DidResume {
		st.tlsSessionReused.Inc()
	}
	return ctx
}

// ServeHTTP adapts quic-go's request for the listener's net/http adapter
// (listenerRuntime.ServeHTTP) in two ways HTTP/3 needs:
//
//   - A request without content-length has ContentLength -1 even when the
//     client ended the stream with the headers: quic-go cannot tell
//     without reading. For methods that normally carry no body (GET, HEAD,
//     DELETE, OPTIONS, TRACE) one byte is read first, within
//     timeouts.request_headers, so that such a request goes upstream
//     without a (chunked, empty) body. Other methods are streamed as they
//     are: a client may wait for the response before sending its body.
//   - quic-go sends no 100 Continue; the core drops expect and sends the
//     body upstream at once, so 100 Continue is sent here at once.
func (h *h3server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		// quic-go announces extended CONNECT in its SETTINGS; the core
		// tunnels only HTTP/1.1 upgrades.
		localError(w, http.StatusNotImplemented, "CONNECT is not supported")
		return
	}
	if r.ContentLength < 0 && bodyUnexpected(r.Method) {
		if !h.probeBody(w, r) {
			return
		}
	}
	if r.ContentLength != 0 && hasContinue(r.Header["Expect"]) {
		w.WriteHeader(http.StatusContinue)
	}
	h.l.ServeHTTP(w, r)
}

// probeBody reads the first byte of r's body and sets r.ContentLength to 0
// (no body) or leaves it -1 with the byte put back. It answers 408 and
// reports false if no byte and no end came in time.
func (h *h3server) probeBody(w http.ResponseWriter, r *http.Request) bool {
	d, _ := w.(interface{ SetReadDeadline(time.Time) error })
	if d != nil && h.headTimeout > 0 {
		d.SetReadDeadline(time.Now().Add(h.headTimeout))
	}
	var b [1]byte
	var n int
	var err error
	for n == 0 && err == nil { // an empty DATA frame reads as (0, nil)
		n, err = r.Body.Read(b[:])
	}
	if d != nil && h.headTimeout > 0 {
		d.SetReadDeadline(time.Time{})
	}
	switch {
	case n == 0 && err == io.EOF:
		r.Body, r.ContentLength = http.NoBody, 0
	case n > 0 && err == io.EOF:
		r.Body, r.ContentLength = io.NopCloser(strings.NewReader(string(b[:1]))), 1
	case n > 0:
		r.Body = &prefixedBody{first: b[0], rest: r.Body}
	default:
		h.l.logger.Debug("http3 request body not readable", "listener", h.l.name, "remote", r.RemoteAddr, "err", err)
		localError(w, http.StatusRequestTimeout, "request body timeout")
		return false
	}
	return true
}

// localError answers a request that never reaches the forwarding core
// (so it is not in the access log or the request stats).
func localError(w http.ResponseWriter, status int, msg string) {
	w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}

func bodyUnexpected(method string) bool {
	switch method {
	case "GET", "HEAD", "DELETE", "OPTIONS", "TRACE":
		return true
	}
	return false
}

func hasContinue(vs []string) bool {
	for _, v := range vs {
		if strings.EqualFold(strings.TrimSpace(v), "100-continue") {
			return true
		}
	}
	return false
}

// prefixedBody is a request body whose first byte was already read.
type prefixedBody struct {
	first byte
	done  bool
	rest  io.ReadCloser
}

func (p *prefixedBody) Read(b []byte) (int, error) {
	if !p.done {
		if len(b) == 0 {
			return 0, nil
		}
		b[0], p.done = p.first, true
		return 1, nil
	}
	return p.rest.Read(b)
}

func (p *prefixedBody) Close() error { return p.rest.Close() }

var _ http.Handler = (*h3server)(nil)
