package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
)

// This file owns a listener's client connections: the accept loop, the
// protocol dispatch (TLS with ALPN, the cleartext HTTP/2 preface), the set
// of open connections and graceful shutdown. HTTP/1.1 is served by edge's
// own connection loop (h1conn.go), HTTP/2 by edge's own codec (h2conn.go).

// downstream serves one listener's accepted connections.
type downstream struct {
	l     *listenerRuntime
	http1 bool
	// http2: the listener offers HTTP/2 (edge's codec, h2conn.go).
	http2 bool

	headTimeout  time.Duration // timeouts.request_headers
	idleTimeout  time.Duration // timeouts.idle
	maxHeadBytes int           // limits.max_request_header_bytes
	maxFields    int           // limits.max_request_headers

	// ctx is the parent of every connection's context; it is canceled
	// when the drain time runs out.
	ctx      context.Context
	cancel   context.CancelFunc
	draining atomic.Bool
	// handoff, set before draining when a drain hands idle cleartext
	// HTTP/1.1 connections to another process, passes one; nil otherwise.
	handoff func(net.Conn) bool

	ln         net.Listener
	acceptDone chan struct{}
	wg         sync.WaitGroup // one per connection goroutine

	mu    sync.Mutex
	conns map[*downConn]struct{}
}

// Connection states, for graceful shutdown. Only an idle HTTP/1.1
// connection (between requests) may be closed by shutdown at once; a new one
// gets to send its first request, which is answered with connection: close.
const (
	connNew int32 = iota
	connIdle
	connActive
	connClosed // by shutdown, while idle
	connH2
	connHijacked
	connHandedOff // passed to another process during a drain
)

// downConn is one accepted connection as the listener tracks it.
type downConn struct {
	raw       net.Conn
	state     atomic.Int32
	cleartext bool
	adopted   bool // handed over idle by the previous process
	// h2 is the HTTP/2 connection served on it, while it is served.
	h2 atomic.Pointer[h2conn]
}

// newDownstream builds l's connection manager from its config.
func newDownstream(l *listenerRuntime) *downstream {
	lc := l.cfg
	d := &downstream{
		l:            l,
		headTimeout:  lc.Timeouts.RequestHeaders.D(),
		idleTimeout:  lc.Timeouts.Idle.D(),
		maxHeadBytes: int(lc.Limits.MaxRequestHeaderBytes),
		maxFields:    lc.Limits.MaxRequestHeaders,
		acceptDone:   make(chan struct{}),
		conns:        map[*downConn]struct{}{},
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	for _, p := range lc.Protocols {
		switch p {
		case "http1":
			d.http1 = true
		case "http2":
			d.http2 = true
		}
	}
	return d
}

// listen hands d its bound listener; serve accepts on it.
func (d *downstream) listen(ln net.Listener) { d.ln = ln }

// serve accepts connections until shutdown closes the listener (then it
// returns nil) or accepting fails for good.
func (d *downstream) serve() error {
	defer close(d.acceptDone)
	var delay time.Duration
	for {
		c, err := d.ln.Accept()
		if err != nil {
			if d.draining.Load() {
				return nil
			}
			if temporaryAcceptError(err) {
				// Out of file descriptors or a connection aborted before
				// accept: wait a little and go on, as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				d.l.logger.Warn("accept failed; retrying", "listener", d.l.name, "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("listener %q: accept: %w", d.l.name, err)
		}
		delay = 0
		d.wg.Add(1)
		go d.serveConn(c, false)
	}
}

// adopt serves c, handed over by another edge process, like an accepted
// connection whose first request has yet to come.
func (d *downstream) adopt(c net.Conn) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.draining.Load() {
		return fmt.Errorf("listener %q is draining", d.l.name)
	}
	d.wg.Add(1)
	go d.serveConn(c, true)
	return nil
}

func temporaryAcceptError(err error) bool {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EINTR) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// serveConn runs one client connection to its end: TLS handshake, protocol
// choice, then the HTTP/1.1 loop or the HTTP/2 codec. An adopted
// connection (a cleartext HTTP/1.1 one handed over idle by the previous
// process, which counted it) starts as an idle one.
func (d *downstream) serveConn(raw net.Conn, adopted bool) {
	l := d.l
	dc := &downConn{raw: raw, cleartext: l.tlsConfig == nil, adopted: adopted}
	if adopted {
		l.stats.cxAdopted.Inc()
	} else {
		l.stats.cxTotal.Inc()
	}
	l.stats.cxActive.Inc()
	d.mu.Lock()
	d.conns[dc] = struct{}{}
	d.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			l.logger.Error("panic serving connection", "listener", l.name, "remote", raw.RemoteAddr().String(),
				"panic", r, "stack", string(debug.Stack()))
		}
		if dc.state.Load() != connHijacked {
			raw.Close()
		}
		d.mu.Lock()
		delete(d.conns, dc)
		d.mu.Unlock()
		l.stats.cxActive.Dec()
		d.wg.Done()
	}()

	if l.tlsConfig == nil {
		// The first request head (or the HTTP/2 preface) must arrive
		// within timeouts.request_headers of the accept. An adopted
		// connection waits for its next request as an idle one does.
		raw.SetReadDeadline(time.Now().Add(d.headTimeout))
		d.serveHTTP1(dc, raw, nil)
		return
	}
	tc := tls.Server(raw, l.tlsConfig)
	raw.SetDeadline(time.Now().Add(d.headTimeout))
	if err := tc.Handshake(); err != nil {
		var rhe tls.RecordHeaderError
		if errors.As(err, &rhe) && rhe.Conn != nil && looksLikeHTTP(rhe.RecordHeader[:]) {
			// A cleartext request on a TLS port: say so, as net/http does.
			io.WriteString(rhe.Conn, "HTTP/1.0 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"+
				"connection: close\r\n\r\nclient sent an HTTP request to an HTTPS server\n")
		}
		l.stats.tlsHandshakeError.Inc()
		l.logger.Debug("tls handshake failed", "listener", l.name, "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	st := tc.ConnectionState()
	l.stats.tlsHandshake.Inc()
	if st.DidResume {
		l.stats.tlsSessionReused.Inc()
	}
	switch proto := st.NegotiatedProtocol; {
	case proto == http2.NextProtoTLS && d.http2:
		raw.SetDeadline(time.Time{})
		d.serveH2(dc, tc)
	case d.http1 && (proto == "" || proto == "http/1.1"):
		raw.SetWriteDeadline(time.Time{})
		raw.SetReadDeadline(time.Now().Add(d.headTimeout))
		d.serveHTTP1(dc, tc, &st)
	}
}

// looksLikeHTTP reports whether the first five bytes of a connection look
// like the start of an HTTP/1 request line rather than a TLS record.
func looksLikeHTTP(b []byte) bool {
	switch string(b) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH":
		return true
	}
	return false
}

// shutdown stops accepting, closes idle HTTP/1.1 connections (or, with
// handoff, passes the cleartext ones to another process), sends GOAWAY on
// HTTP/2 ones and waits for the rest to finish their requests (each
// HTTP/1.1 response then carries connection: close, unless the connection
// is to be handed off after it). When soft is done it closes idle and
// upgraded (WebSocket) connections; when hard is done, whatever remains.
func (d *downstream) shutdown(soft, hard context.Context, handoff func(net.Conn) bool) {
	d.mu.Lock()
	d.handoff = handoff
	d.draining.Store(true)
	d.mu.Unlock()
	if d.ln != nil {
		d.ln.Close()
		<-d.acceptDone
	}
	// No connection goroutine starts after the accept loop ended and
	// draining is set (adopt checks it), so waiting on the group is safe.
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	softDone := soft.Done()
	for {
		d.closeIdle(handoff != nil)
		// GOAWAY on HTTP/2 connections; repeated each round for the
		// ones that started serving after the first (drain is idempotent).
		d.drainH2()
		select {
		case <-done:
			return
		case <-softDone:
			softDone = nil
			d.closeState(connHijacked)
			d.closeIdle(false)
		case <-hard.Done():
			d.cancel()
			d.closeAll()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				d.l.logger.Warn("connections still running after forced close", "listener", d.l.name)
			}
			return
		case <-tick.C:
		}
	}
}

// closeIdle closes the HTTP/1.1 connections waiting for a request. With
// kick, cleartext ones are only woken (their read deadline set to now): the
// connection's own goroutine then hands it off, which is safe because it
// knows that no byte of a next request has been read.
func (d *downstream) closeIdle(kick bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	for dc := range d.conns {
		if kick && dc.cleartext {
			if dc.state.Load() == connIdle {
				dc.raw.SetReadDeadline(now)
			}
			continue
		}
		if dc.state.CompareAndSwap(connIdle, connClosed) {
			dc.raw.Close()
		}
	}
}

// drainH2 starts the graceful shutdown of every HTTP/2 connection.
func (d *downstream) drainH2() {
	d.mu.Lock()
	var hs []*h2conn
	for dc := range d.conns {
		if h := dc.h2.Load(); h != nil {
			hs = append(hs, h)
		}
	}
	d.mu.Unlock()
	for _, h := range hs {
		h.drain() // writes GOAWAY: not under d.mu
	}
}

// closeState closes the connections in the given state.
func (d *downstream) closeState(state int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for dc := range d.conns {
		if dc.state.Load() == state {
			dc.raw.Close()
		}
	}
}

func (d *downstream) has(state int32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for dc := range d.conns {
		if dc.state.Load() == state {
			return true
		}
	}
	return false
}

// closeAll closes every connection, whatever it is doing.
func (d *downstream) closeAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for dc := range d.conns {
		dc.raw.Close()
	}
}

// replayConn is a cleartext connection whose first bytes were already read
// (to recognise the HTTP/2 preface); Read returns them first.
type replayConn struct {
	net.Conn
	buf []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
