package http1

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeproxy/edge/edge/message"
)

// Defaults for the response head limits.
const (
	// DefaultMaxHeaderBytes bounds a response head (status line and fields)
	// and, separately, a trailer section.
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultMaxHeaderFields bounds the number of fields in a response head
	// or trailer section.
	DefaultMaxHeaderFields = 256
)

// maxInformational bounds the 1xx responses accepted before the final one.
const maxInformational = 100

// Options configure a Pool for one upstream endpoint.
type Options struct {
	// Addr is the host:port to dial. Required.
	Addr string
	// TLS, if not nil, makes the pool speak TLS. The caller sets
	// ServerName (empty means the host part of Addr), RootCAs and client
	// certificates; the pool sets NextProtos to http/1.1 on its own clone.
	// Nil means cleartext.
	TLS *tls.Config
	// ConnectTimeout bounds the dial plus TLS handshake. Zero means only
	// the round trip's context bounds it.
	ConnectTimeout time.Duration
	// MaxIdle is how many idle connections are kept for reuse. Zero means
	// none: every connection is closed after its response.
	MaxIdle int
	// IdleTimeout closes idle connections older than this instead of
	// reusing them. Zero means idle connections do not expire (they are
	// still checked for liveness before reuse).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a response head and a trailer section. Zero
	// means DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxHeaderFields bounds the fields in a response head and a trailer
	// section. Zero means DefaultMaxHeaderFields.
	MaxHeaderFields int

	// OnConnOpen, if not nil, is called when a connection is established
	// (after the TLS handshake, if any).
	OnConnOpen func()
	// OnConnClose, if not nil, is called when a connection is closed. Each
	// connection reported by OnConnOpen is reported here exactly once,
	// including upgraded connections (when the caller closes them).
	OnConnClose func()
	// OnConnectFail, if not nil, is called when a dial or TLS handshake
	// fails for a reason other than the round trip's context ending.
	OnConnectFail func()

	// Dial, if not nil, replaces net.Dialer.DialContext for making
	// connections. It is called with network "tcp" and Addr. The liveness
	// check of idle connections needs the socket: return a syscall.Conn
	// (such as *net.TCPConn) or a wrapper with a NetConn() net.Conn method.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// Limit, if not nil, bounds this pool's connections together with
	// other pools' and queues the requests that find none free (see
	// Limit). Nil means no bound.
	Limit Limit
}

// Pool is a pool of HTTP/1.1 connections to one upstream endpoint. It is
// safe for concurrent use.
type Pool struct {
	addr            string
	tls             *tls.Config
	connectTimeout  time.Duration
	maxIdle         int
	idleTimeout     time.Duration
	maxHeaderBytes  int
	maxHeaderFields int
	onOpen          func()
	onClose         func()
	onConnectFail   func()
	dial            func(ctx context.Context, network, addr string) (net.Conn, error)
	dialer          net.Dialer
	limit           Limit

	open     atomic.Int64 // established and not yet closed
	held     atomic.Int64 // being dialed or open: room taken from limit
	nidle    atomic.Int64 // len(idle)
	isClosed atomic.Bool  // fast-path copy of closed

	mu         sync.Mutex
	idle       []*conn // LIFO: idle[len-1] is the most recently used
	closed     bool
	sweep      *time.Timer // closes expired idle connections when traffic stops
	sweepArmed bool
	waiters    []*waiter // requests waiting for a connection (with a limit), oldest first

	rts sync.Pool // *roundTrip
}

// NewPool returns a Pool for o.Addr. It dials nothing until the first
// round trip.
func NewPool(o Options) *Pool {
	p := &Pool{
		addr:            o.Addr,
		connectTimeout:  o.ConnectTimeout,
		maxIdle:         o.MaxIdle,
		idleTimeout:     o.IdleTimeout,
		maxHeaderBytes:  o.MaxHeaderBytes,
		maxHeaderFields: o.MaxHeaderFields,
		onOpen:          o.OnConnOpen,
		onClose:         o.OnConnClose,
		onConnectFail:   o.OnConnectFail,
		dial:            o.Dial,
		limit:           o.Limit,
	}
	if p.maxHeaderBytes <= 0 {
		p.maxHeaderBytes = DefaultMaxHeaderBytes
	}
	if p.maxHeaderFields <= 0 {
		p.maxHeaderFields = DefaultMaxHeaderFields
	}
	if p.dial == nil {
		p.dial = p.dialer.DialContext
	}
	if o.TLS != nil {
		p.tls = o.TLS.Clone()
		p.tls.NextProtos = []string{"http/1.1"}
		if p.tls.ServerName == "" {
			if host, _, err := net.SplitHostPort(o.Addr); err == nil {
				p.tls.ServerName = host
			}
		}
	}
	p.rts.New = func() any { return new(roundTrip) }
	return p
}

// RoundTrip sends req on an idle pooled connection, or a new one, and
// returns the response with its head parsed; the body streams from the
// connection. The caller must Close resp.Body; see the package
// documentation for when the connection returns to the pool and for the
// ownership of resp (Release).
//
// ctx bounds the whole exchange, including reads of resp.Body after
// RoundTrip has returned. Every error is an *Error.
//
// If the request fails on a reused connection before any response byte
// arrived and before any request body byte was consumed, RoundTrip retries
// it once on a new connection (the keep-alive race: the server closed the
// idle connection while the request was on its way).
func (p *Pool) RoundTrip(ctx context.Context, req *message.Request) (*message.Response, error) {
	if p.isClosed.Load() {
		return nil, &Error{Kind: ConnectFailure, Err: ErrClosed}
	}
	if err := ctx.Err(); err != nil {
		return nil, &Error{Kind: ctxKind(err), Err: fmt.Errorf("round trip: %w", err)}
	}
	if err := checkRequest(req); err != nil {
		return nil, &Error{Kind: Protocol, Err: err}
	}
	rt := p.rts.Get().(*roundTrip)
	rt.reset(p)
	fresh := false
	for {
		c, e := p.conn(ctx, fresh)
		if e != nil {
			rt.clear()
			p.rts.Put(rt)
			return nil, e
		}
		reused := c.served > 0
		resp, e := rt.exchange(ctx, c, req)
		if e == nil {
			return resp, nil
		}
		if !fresh && reused && e.Kind == Reset && c.nread == 0 && !rt.bodyRead {
			fresh = true
			rt.reset(p)
			continue
		}
		rt.clear()
		p.rts.Put(rt)
		return nil, e
	}
}

// Release returns resp, which must come from p.RoundTrip, to the pool of
// per-request state, closing its Body first if needed. Calling it is
// optional (without it the garbage collector reclaims resp) but saves
// allocations. After Release, resp, its Body and its Header and Trailer
// storage must not be used; the strings read from them stay valid.
func (p *Pool) Release(resp *message.Response) {
	b, ok := resp.Body.(*body)
	if !ok || b.rt == nil || b.rt.p != p || &b.rt.resp != resp {
		return
	}
	rt := b.rt
	b.Close()
	rt.clear()
	p.rts.Put(rt)
}

// CloseIdle closes the idle connections now. In-flight ones are not
// affected.
func (p *Pool) CloseIdle() {
	p.mu.Lock()
	victims := p.idle
	p.idle = nil
	p.nidle.Store(0)
	p.mu.Unlock()
	for _, c := range victims {
		c.close()
	}
}

// Close closes the idle connections and makes later round trips fail with
// ErrClosed. Round trips in flight finish; their connections are closed
// when they end instead of returning to the pool.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	p.isClosed.Store(true)
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweepArmed = false
	}
	waiters := p.waiters
	p.waiters = nil
	p.mu.Unlock()
	for _, w := range waiters {
		w.ch <- nil
	}
	p.CloseIdle()
}

// Stats reports the connections in use (carrying a request, a response
// body being read, or upgraded and not yet closed) and the idle ones.
func (p *Pool) Stats() (active, idle int) {
	i := p.nidle.Load()
	a := p.open.Load() - i
	if a < 0 {
		a = 0
	}
	return int(a), int(i)
}

// conn returns a live idle connection (most recent first) or dials a new
// one; fresh forces a new one unless Options.Limit makes the request wait
// for a released connection.
func (p *Pool) conn(ctx context.Context, fresh bool) (*conn, *Error) {
	for {
		if !fresh {
			for {
				c := p.popIdle()
				if c == nil {
					break
				}
				if c.alive() {
					return c, nil
				}
				c.close()
			}
		}
		if p.limit == nil {
			p.held.Add(1)
			return p.dialConn(ctx)
		}
		c, dial, e := p.limitedConn(ctx)
		switch {
		case e != nil:
			return nil, e
		case dial:
			return p.dialConn(ctx)
		case c.alive():
			return c, nil
		}
		c.close()
	}
}

// popIdle takes the most recently used idle connection, or returns nil. If
// it has expired, so have all older ones: they are all closed.
func (p *Pool) popIdle() *conn {
	p.mu.Lock()
	n := len(p.idle)
	if n == 0 {
		p.mu.Unlock()
		return nil
	}
	c := p.idle[n-1]
	if p.idleTimeout > 0 && time.Since(c.idleAt) > p.idleTimeout {
		victims := p.idle
		p.idle = nil
		p.nidle.Store(0)
		p.mu.Unlock()
		for _, v := range victims {
			v.close()
		}
		return nil
	}
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	p.nidle.Store(int64(n - 1))
	p.mu.Unlock()
	return c
}

// putIdle pushes c on the idle stack, closing expired connections and, over
// MaxIdle, the least recently used one.
func (p *Pool) putIdle(c *conn) {
	now := time.Now()
	c.idleAt = now
	var buf [4]*conn
	victims := buf[:0]
	p.mu.Lock()
	if len(p.waiters) > 0 && !p.closed {
		// A request is waiting for a connection (Options.Limit): hand c
		// over instead of parking it.
		w := p.waiters[0]
		p.waiters = slices.Delete(p.waiters, 0, 1)
		p.mu.Unlock()
		w.ch <- c
		return
	}
	if p.closed || p.maxIdle <= 0 {
		p.mu.Unlock()
		c.close()
		return
	}
	evict := 0
	if p.idleTimeout > 0 {
		for evict < len(p.idle) && now.Sub(p.idle[evict].idleAt) > p.idleTimeout {
			evict++
		}
	}
	if over := len(p.idle) - evict + 1 - p.maxIdle; over > 0 {
		evict += over
	}
	if evict > 0 {
		victims = append(victims, p.idle[:evict]...)
		m := copy(p.idle, p.idle[evict:])
		clear(p.idle[m:])
		p.idle = p.idle[:m]
	}
	p.idle = append(p.idle, c)
	p.nidle.Store(int64(len(p.idle)))
	if p.idleTimeout > 0 && !p.sweepArmed {
		p.armSweep(p.idleTimeout)
	}
	p.mu.Unlock()
	for _, v := range victims {
		v.close()
	}
}

// armSweep schedules sweepIdle after d. p.mu must be held.
func (p *Pool) armSweep(d time.Duration) {
	p.sweepArmed = true
	if p.sweep == nil {
		p.sweep = time.AfterFunc(d, p.sweepIdle)
		return
	}
	p.sweep.Reset(d)
}

// sweepIdle closes expired idle connections, so that they do not linger
// when traffic stops, and re-arms itself while idle connections remain.
func (p *Pool) sweepIdle() {
	now := time.Now()
	p.mu.Lock()
	p.sweepArmed = false
	if p.closed {
		p.mu.Unlock()
		return
	}
	evict := 0
	for evict < len(p.idle) && now.Sub(p.idle[evict].idleAt) > p.idleTimeout {
		evict++
	}
	victims := append([]*conn(nil), p.idle[:evict]...)
	m := copy(p.idle, p.idle[evict:])
	clear(p.idle[m:])
	p.idle = p.idle[:m]
	p.nidle.Store(int64(m))
	if m > 0 {
		// The oldest remaining connection expires first; a little slack
		// lets one sweep take several.
		p.armSweep(p.idleTimeout - now.Sub(p.idle[0].idleAt) + p.idleTimeout/8 + time.Millisecond)
	}
	p.mu.Unlock()
	for _, v := range victims {
		v.close()
	}
}

// release ends c's current exchange: back to the idle stack if reusable,
// closed otherwise.
func (p *Pool) release(c *conn, reusable bool) {
	if !c.unwatch() {
		reusable = false
	}
	if reusable && c.br.Buffered() == 0 {
		p.putIdle(c)
		return
	}
	c.close()
}

// dialConn dials and, with TLS, handshakes a new connection. The caller
// has counted it in p.held (and taken room from p.limit); a failure gives
// that back.
func (p *Pool) dialConn(ctx context.Context) (*conn, *Error) {
	c, e := p.dialHeld(ctx)
	if e != nil {
		p.unhold()
	}
	return c, e
}

// unhold gives back the room of a connection that closed or was never
// made.
func (p *Pool) unhold() {
	p.held.Add(-1)
	if p.limit != nil {
		p.limit.Closed()
	}
}

func (p *Pool) dialHeld(ctx context.Context) (*conn, *Error) {
	if p.isClosed.Load() {
		return nil, &Error{Kind: ConnectFailure, Err: ErrClosed}
	}
	dctx := ctx
	if p.connectTimeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, p.connectTimeout)
		defer cancel()
	}
	nc, err := p.dial(dctx, "tcp", p.addr)
	if err != nil {
		return nil, p.connectError(ctx, fmt.Errorf("dial %s: %w", p.addr, err))
	}
	raw := nc
	if p.tls != nil {
		tc := tls.Client(nc, p.tls)
		if err := tc.HandshakeContext(dctx); err != nil {
			nc.Close()
			return nil, p.connectError(ctx, fmt.Errorf("tls handshake with %s: %w", p.addr, err))
		}
		if proto := tc.ConnectionState().NegotiatedProtocol; proto != "" && proto != "http/1.1" {
			tc.Close()
			return nil, p.connectError(ctx, fmt.Errorf("tls handshake with %s: %w (%q)", p.addr, errALPN, proto))
		}
		nc = tc
	}
	p.open.Add(1)
	if p.onOpen != nil {
		p.onOpen()
	}
	return newConn(p, nc, raw), nil
}

// connectError classifies a dial or handshake failure: the round trip's
// context ending is Timeout or Canceled, anything else ConnectFailure.
func (p *Pool) connectError(ctx context.Context, err error) *Error {
	if cerr := ctx.Err(); cerr != nil {
		return &Error{Kind: ctxKind(cerr), Err: fmt.Errorf("%w (%w)", err, cerr)}
	}
	if p.onConnectFail != nil {
		p.onConnectFail()
	}
	return &Error{Kind: ConnectFailure, Err: err}
}
