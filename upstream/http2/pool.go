package http2

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/edgeproxy/edge/edge/message"
)

// DefaultConnectTimeout bounds TCP connect plus TLS handshake when
// Options.ConnectTimeout is zero.
const DefaultConnectTimeout = 5 * time.Second

// ErrClosed is the error (wrapped in an *Error of kind ConnectFailure)
// RoundTrip returns once the pool is closed.
var ErrClosed = errors.New("http2 pool closed")

// Options configures a Pool. Only Addr is required.
type Options struct {
	// Addr is the upstream endpoint, host:port. It is passed to Dial and,
	// when TLS.ServerName is empty, its host becomes the SNI name.
	Addr string
	// TLS, if not nil, makes the pool speak TLS and require the peer to
	// choose h2 by ALPN ("h2" is put into NextProtos if missing). Nil
	// means cleartext HTTP/2 with prior knowledge (h2c, no Upgrade dance).
	TLS *tls.Config
	// ConnectTimeout bounds TCP connect plus TLS handshake; zero means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// ConnectionsPerHost is how many connections the pool keeps at most;
	// zero or less means 1. See the package documentation for when
	// another one is opened.
	ConnectionsPerHost int
	// KeepaliveInterval: when nothing has been read from a connection for
	// this long, a PING is sent. Zero disables keepalive PINGs.
	KeepaliveInterval time.Duration
	// KeepaliveTimeout: a connection whose PING is not answered within
	// this long is closed. Zero means 15s.
	KeepaliveTimeout time.Duration
	// OnConnOpen, OnConnClose and OnConnectFail, if not nil, are called
	// when a connection joins the pool, when a pooled connection's socket
	// closes, and when a dial, handshake or ALPN check fails. They run
	// with the pool's lock held, so each open is seen before its close:
	// keep them short (a counter increment) and do not call the pool.
	OnConnOpen, OnConnClose, OnConnectFail func()
	// Dial opens the TCP connection; nil means a net.Dialer. The context
	// carries the connect timeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Limit, if not nil, bounds this pool's connections together with
	// other pools' (package upstream's max_connections circuit breaker).
	// Nil means only ConnectionsPerHost bounds them.
	Limit Limit
}

// Limit bounds the connections of a group of pools together. A pool dials
// an additional connection only if TryOpen allows it; otherwise its
// requests share the connections it has (streams multiplex, so nothing
// waits for the limit). A pool with no connection, live or being dialed,
// always dials one (ForceOpen), as Envoy does. Each reserved room is given
// back with Closed exactly once: when the dial fails or the connection's
// socket closes. The methods are called with the pool's lock held: they
// must be quick and must not call the pool.
type Limit interface {
	// TryOpen reserves room for one more connection and reports whether
	// the group was below its limit.
	TryOpen() bool
	// ForceOpen reserves room for one connection beyond the limit.
	ForceOpen()
	// Closed gives back the room of a connection.
	Closed()
}

// Pool is a set of HTTP/2 connections to one upstream endpoint. It is safe
// for concurrent use.
type Pool struct {
	o      Options
	t      *http2.Transport
	tls    *tls.Config
	scheme string
	max    int

	// live holds the connections new streams may go to, as an immutable
	// slice replaced under mu, so that picking reads it without locking.
	live    atomic.Pointer[[]*conn]
	dialing atomic.Int32 // len(pending), for the lock-free path

	mu      sync.Mutex
	all     map[*conn]struct{} // open connections, live or draining
	pending []*pendingDial     // dials in progress
	closed  bool
	done    chan struct{} // closed by Close

	// ctx bounds dials and drains; cancel ends them on Close.
	ctx    context.Context
	cancel context.CancelFunc
}

// pendingDial is a dial in progress that requests wait on. c and err are
// written before done is closed.
type pendingDial struct {
	done    chan struct{}
	c       *conn
	err     error
	waiters int // guarded by Pool.mu
}

// NewPool returns a pool for o.Addr. It dials nothing until the first
// RoundTrip.
func NewPool(o Options) *Pool {
	if o.ConnectionsPerHost < 1 {
		o.ConnectionsPerHost = 1
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.Dial == nil {
		var d net.Dialer
		o.Dial = d.DialContext
	}
	p := &Pool{
		o:      o,
		max:    o.ConnectionsPerHost,
		scheme: "http",
		all:    make(map[*conn]struct{}),
		done:   make(chan struct{}),
	}
	if o.TLS != nil {
		p.scheme = "https"
		p.tls = o.TLS.Clone()
		if !slices.Contains(p.tls.NextProtos, "h2") {
			p.tls.NextProtos = []string{"h2"}
		}
		if p.tls.ServerName == "" {
			if host, _, err := net.SplitHostPort(o.Addr); err == nil {
				p.tls.ServerName = host
			}
		}
	}
	p.t = &http2.Transport{
		// A proxy forwards the client's Accept-Encoding and the upstream's
		// encoding untouched.
		DisableCompression: true,
		AllowHTTP:          true,
		// At the peer's stream limit a request waits on its connection
		// rather than failing: the pool never opens more than
		// ConnectionsPerHost connections.
		StrictMaxConcurrentStreams: true,
		ReadIdleTimeout:            o.KeepaliveInterval,
		PingTimeout:                o.KeepaliveTimeout,
	}
	empty := []*conn{}
	p.live.Store(&empty)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// RoundTrip sends req on the least loaded connection and returns the
// response once its headers arrive. ctx governs the whole exchange,
// including reading the response body; the caller must close the body.
// The pool may read req.Body until RoundTrip returns an error or the
// response body is closed (or, if ctx is canceled, shortly after). Every
// error is an *Error.
//
// A request that a connection rejected before sending it (the connection
// had just received a GOAWAY) is sent again on another connection, as long
// as none of its body was read.
func (p *Pool) RoundTrip(ctx context.Context, req *message.Request) (*message.Response, error) {
	cancel := context.CancelFunc(nil)
	if !req.Deadline.IsZero() {
		// x/net honours only contexts; the cancel runs when the body ends.
		ctx, cancel = context.WithDeadline(ctx, req.Deadline)
	}
	resp, err := p.roundTrip(ctx, req, cancel)
	if err != nil && cancel != nil {
		cancel()
	}
	return resp, err
}

func (p *Pool) roundTrip(ctx context.Context, req *message.Request, cancel context.CancelFunc) (*message.Response, error) {
	hreq, body := p.newRequest(ctx, req)
	for attempt := 0; ; attempt++ {
		c, err := p.acquire(ctx)
		if err != nil {
			return nil, err
		}
		hresp, err := c.cc.RoundTrip(hreq)
		if err == nil {
			return newResponse(c, hresp, cancel), nil
		}
		c.release()
		if !c.cc.CanTakeNewRequest() {
			p.retire(c)
		}
		if unprocessed(err) && attempt < p.max && (body == nil || !body.touched()) {
			continue
		}
		return nil, classify(err, false)
	}
}

// acquire returns a connection with one stream counted and reserved on it.
// See the package documentation for the rule.
func (p *Pool) acquire(ctx context.Context) (*conn, error) {
	for {
		c, n, active := p.least()
		if c != nil && (active == 0 || n >= p.max) {
			if p.reserve(c) {
				return c, nil
			}
			continue
		}
		c, d, err := p.pickOrDial()
		if err != nil {
			return nil, err
		}
		if c != nil {
			if p.reserve(c) {
				return c, nil
			}
			continue
		}
		select {
		case <-d.done:
			if d.err == nil {
				// Pick again rather than take d.c: the waiters of the dial
				// that finished first then spread over every live
				// connection instead of piling onto this one.
				continue
			}
			if len(*p.live.Load()) == 0 {
				return nil, &Error{Kind: ConnectFailure, Err: d.err}
			}
		case <-p.done:
			return nil, &Error{Kind: ConnectFailure, Err: ErrClosed}
		case <-ctx.Done():
			p.mu.Lock()
			d.waiters--
			p.mu.Unlock()
			err := ctx.Err()
			k := Canceled
			if errors.Is(err, context.DeadlineExceeded) {
				k = Timeout
			}
			return nil, &Error{Kind: k, Err: fmt.Errorf("waiting for a connection to %s: %w", p.o.Addr, err)}
		}
	}
}

// least returns the live connection with the fewest active streams (the
// first such), the number of live connections and that connection's count.
func (p *Pool) least() (best *conn, n int, min int32) {
	live := *p.live.Load()
	for _, c := range live {
		if a := c.active.Load(); best == nil || a < min {
			best, min = c, a
		}
	}
	return best, len(live), min
}

// pickOrDial is acquire's locked path. It starts a dial if the rule allows
// one. Then it returns the least loaded live connection, or a dial in
// progress to wait for: the one with the fewest waiters, if it has fewer
// waiters than that connection has streams (or there is no live
// connection). So a burst spreads over every connection being opened
// instead of piling onto the first one up.
func (p *Pool) pickOrDial() (*conn, *pendingDial, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil, &Error{Kind: ConnectFailure, Err: ErrClosed}
	}
	c, n, active := p.least()
	if n+len(p.pending) < p.max && (c == nil || active > 0) && p.room(n+len(p.pending) == 0) {
		d := &pendingDial{done: make(chan struct{})}
		p.pending = append(p.pending, d)
		p.dialing.Store(int32(len(p.pending)))
		go p.dial(d)
	}
	var d *pendingDial
	for _, pd := range p.pending {
		if d == nil || pd.waiters < d.waiters {
			d = pd
		}
	}
	if c != nil && (d == nil || int(active) <= d.waiters) {
		return c, nil, nil
	}
	// Without a live connection a dial is pending: one was started above
	// unless dials already filled the limit.
	d.waiters++
	return nil, d, nil
}

// room reserves room in the limit for a new connection; empty says the
// pool has none, which it always gets. p.mu must be held.
func (p *Pool) room(empty bool) bool {
	switch {
	case p.o.Limit == nil || p.o.Limit.TryOpen():
		return true
	case empty:
		p.o.Limit.ForceOpen()
		return true
	}
	return false
}

// reserve counts a stream on c and reserves it in x/net. If c no longer
// takes requests (GOAWAY, closing), it is retired and reserve fails.
func (p *Pool) reserve(c *conn) bool {
	c.active.Add(1)
	if c.cc.ReserveNewRequest() {
		return true
	}
	c.active.Add(-1)
	p.retire(c)
	return false
}

// dial opens one connection and adds it to the pool, then wakes the
// requests waiting for it.
func (p *Pool) dial(d *pendingDial) {
	c, err := p.connect()
	p.mu.Lock()
	if i := slices.Index(p.pending, d); i >= 0 {
		p.pending = slices.Delete(p.pending, i, i+1)
	}
	p.dialing.Store(int32(len(p.pending)))
	switch {
	case p.closed:
		// Close canceled the dial, or it finished too late.
		err = ErrClosed
	case err != nil:
		if p.o.OnConnectFail != nil {
			p.o.OnConnectFail()
		}
	case c.closed:
		// The socket closed between the handshake and now.
		err = fmt.Errorf("connection to %s closed right after it opened", p.o.Addr)
		if p.o.OnConnectFail != nil {
			p.o.OnConnectFail()
		}
	default:
		c.opened = true
		p.all[c] = struct{}{}
		live := append(slices.Clone(*p.live.Load()), c)
		p.live.Store(&live)
		if p.o.OnConnOpen != nil {
			p.o.OnConnOpen()
		}
	}
	if err == nil {
		d.c = c
	} else if p.o.Limit != nil {
		p.o.Limit.Closed()
	}
	d.err = err
	p.mu.Unlock()
	close(d.done)
	if err != nil && c != nil {
		c.cc.Close()
	}
}

// connect dials, handshakes and starts an HTTP/2 client connection.
func (p *Pool) connect() (*conn, error) {
	ctx, cancel := context.WithTimeout(p.ctx, p.o.ConnectTimeout)
	defer cancel()
	raw, err := p.o.Dial(ctx, "tcp", p.o.Addr)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", p.o.Addr, err)
	}
	c := &conn{}
	var nc net.Conn = &notifyConn{Conn: raw, onClose: func() { p.closedConn(c) }}
	if p.tls != nil {
		tc := tls.Client(nc, p.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			if strings.Contains(err.Error(), "no application protocol") {
				return nil, fmt.Errorf("TLS handshake with %s: %w (it does not offer h2 by ALPN: does it serve HTTP/2 over TLS?)", p.o.Addr, err)
			}
			return nil, fmt.Errorf("TLS handshake with %s: %w", p.o.Addr, err)
		}
		if proto := tc.ConnectionState().NegotiatedProtocol; proto != "h2" {
			nc.Close()
			return nil, fmt.Errorf("%s did not negotiate h2 by ALPN (got %q): does it serve HTTP/2 over TLS?", p.o.Addr, proto)
		}
		nc = tc
	}
	cc, err := p.t.NewClientConn(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("starting HTTP/2 with %s: %w", p.o.Addr, err)
	}
	c.cc = cc
	return c, nil
}

// closedConn runs when a connection's socket closes.
func (p *Pool) closedConn(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.closed = true
	if !c.opened {
		return
	}
	delete(p.all, c)
	if !c.retired {
		c.retired = true
		p.removeLive(c)
	}
	if p.o.Limit != nil {
		p.o.Limit.Closed()
	}
	if p.o.OnConnClose != nil {
		p.o.OnConnClose()
	}
}

// retire takes c out of the live list, so that no new stream goes to it,
// and closes it once its streams finish.
func (p *Pool) retire(c *conn) {
	p.mu.Lock()
	if c.retired || !c.opened {
		p.mu.Unlock()
		return
	}
	c.retired = true
	p.removeLive(c)
	closed := c.closed
	p.mu.Unlock()
	if !closed {
		go func() {
			// Shutdown waits for the streams, then closes; it returns early
			// when the pool closes.
			if c.cc.Shutdown(p.ctx) != nil {
				c.cc.Close()
			}
		}()
	}
}

// removeLive drops c from the live list. p.mu must be held.
func (p *Pool) removeLive(c *conn) {
	live := *p.live.Load()
	i := slices.Index(live, c)
	if i < 0 {
		return
	}
	next := slices.Delete(slices.Clone(live), i, i+1)
	p.live.Store(&next)
}

// Close closes every connection at once, failing requests in flight, and
// makes later RoundTrips fail with ErrClosed. It does not wait for the
// sockets' close callbacks.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	conns := make([]*conn, 0, len(p.all))
	for c := range p.all {
		conns = append(conns, c)
	}
	empty := []*conn{}
	p.live.Store(&empty)
	p.mu.Unlock()
	close(p.done)
	p.cancel()
	for _, c := range conns {
		c.cc.Close()
	}
}

// Stats reports the open connections (live and draining) and the streams
// active on them.
func (p *Pool) Stats() (conns, activeStreams int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.all {
		conns++
		activeStreams += int(c.active.Load())
	}
	return conns, activeStreams
}
