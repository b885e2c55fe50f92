package http1

import (
	"bufio"
	"context"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// Buffer sizes per connection. A typical response head plus a small body
// arrive in one read; a typical request head plus a small body leave in one
// write.
const (
	readBufSize  = 4 << 10
	writeBufSize = 4 << 10
)

// aLongTimeAgo is a deadline in the past: setting it makes blocked reads
// and writes return at once.
var aLongTimeAgo = time.Unix(1, 0)

// conn is one upstream connection. Between popIdle and release it belongs
// to exactly one round trip; only the context watch callback (onCancel)
// touches it from another goroutine, and only through SetDeadline.
type conn struct {
	p  *Pool
	nc net.Conn        // the connection requests travel on (TLS or TCP)
	rc syscall.RawConn // of the TCP connection under nc, for the liveness peek; nil if unavailable
	br *bufio.Reader   // reads from the conn through Read (counting)
	bw *bufio.Writer   // writes to the conn through Write (counting)

	nread    int64 // bytes read during the current exchange
	nwritten int64 // bytes written during the current exchange
	served   int   // exchanges started on this connection
	idleAt   time.Time

	stop        func() bool // stops the context watch; nil if none
	hasDeadline bool        // a deadline from the context is set on nc
	onCancelFn  func()      // c.onCancel, bound once
	closed      atomic.Bool

	peekFn  func(fd uintptr) bool // c.peekCallback, bound once
	peekBuf [1]byte
	peekN   int
	peekErr syscall.Errno

	scratch [24]byte // number formatting

	// Response-head parsing state, reused.
	hdr   []byte // the raw field lines of the head being parsed
	spans []span // field name and value offsets in hdr
}

// span locates one field in conn.hdr.
type span struct{ ns, ne, vs, ve int32 }

func newConn(p *Pool, nc, raw net.Conn) *conn {
	c := &conn{p: p, nc: nc}
	if rc := rawConn(raw); rc != nil {
		c.rc = rc
		c.peekFn = c.peekCallback
	}
	c.onCancelFn = c.onCancel
	c.br = bufio.NewReaderSize(c, readBufSize)
	c.bw = bufio.NewWriterSize(c, writeBufSize)
	return c
}

// rawConn finds the socket under nc, unwrapping connections that expose
// the one they wrap through a NetConn method (as tls.Conn does).
func rawConn(nc net.Conn) syscall.RawConn {
	for range 8 {
		if sc, ok := nc.(syscall.Conn); ok {
			if rc, err := sc.SyscallConn(); err == nil {
				return rc
			}
			return nil
		}
		w, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		nc = w.NetConn()
	}
	return nil
}

// Read reads from the network, counting bytes.
func (c *conn) Read(p []byte) (int, error) {
	n, err := c.nc.Read(p)
	c.nread += int64(n)
	return n, err
}

// Write writes to the network, counting bytes.
func (c *conn) Write(p []byte) (int, error) {
	n, err := c.nc.Write(p)
	c.nwritten += int64(n)
	return n, err
}

// watch makes ctx bound the blocking I/O of the current exchange: its
// deadline (or the request's, whichever is earlier) becomes the connection
// deadline, and its cancellation sets a
// deadline in the past, which interrupts a blocked read or write.
func (c *conn) watch(ctx context.Context, deadline time.Time) {
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	if !deadline.IsZero() {
		c.nc.SetDeadline(deadline)
		c.hasDeadline = true
	}
	if ctx.Done() != nil {
		c.stop = context.AfterFunc(ctx, c.onCancelFn)
	}
}

// onCancel runs on its own goroutine when the watched context ends.
func (c *conn) onCancel() { c.nc.SetDeadline(aLongTimeAgo) }

// unwatch undoes watch. It reports false if the connection may carry a
// deadline it cannot clear (the cancel callback ran or is running); such a
// connection must not be reused.
func (c *conn) unwatch() bool {
	ok := true
	if c.stop != nil {
		ok = c.stop()
		c.stop = nil
	}
	if c.hasDeadline {
		c.hasDeadline = false
		if ok && c.nc.SetDeadline(time.Time{}) != nil {
			ok = false
		}
	}
	return ok
}

// abandon ends the current exchange and closes c.
func (c *conn) abandon() {
	c.unwatch()
	c.close()
}

// close closes c once, keeping the pool's count and hooks exact.
func (c *conn) close() {
	if c.closed.Swap(true) {
		return
	}
	c.nc.Close()
	c.p.open.Add(-1)
	c.p.unhold()
	if c.p.onClose != nil {
		c.p.onClose()
	}
}

// alive reports whether an idle connection can carry a request: the server
// has neither closed it nor sent anything since the last response. Without
// access to the socket (a custom Dial returning an opaque net.Conn, or a
// platform without the peek) it can only assume so; the retry-once rule
// then covers a connection the server has closed.
func (c *conn) alive() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	if c.rc == nil {
		return true
	}
	alive, ok := c.peekSocket()
	return alive || !ok
}
