package edge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/edgeproxy/edge/edge/message"
)

// This file is edge's HTTP/1.1 connection loop: one goroutine per client
// connection reads a request head (h1parse.go), runs it through the
// forwarding core with the connection itself as the responder, and writes
// the response straight into a per-connection bufio.Writer, flushed once
// per response unless the core asks for more (streams).
//
// Client disconnects are not watched while a request is in flight: that
// would cost a read system call per request (net/http's background read).
// A client that goes away is noticed when its response is written, and the
// per-connection context is canceled when the connection ends or the drain
// time runs out.

const (
	// h1BufSize is the size of the pooled reader and writer buffers.
	h1BufSize = 4 << 10
	// h1IdleRelease: a connection idle this long returns its buffers to
	// the pools until its next request arrives.
	h1IdleRelease = time.Second
	// h1DiscardLimit is how much of a request body the core left unread
	// is read and dropped to keep the connection; past it, the connection
	// is closed.
	h1DiscardLimit = 256 << 10
	// h1LingerTime bounds the wait for the client to stop sending before
	// a connection with unread input is closed, so that the close does
	// not reset the connection before the client has read the answer.
	h1LingerTime = 500 * time.Millisecond
	// h1HeadRetain: head buffers that grew larger are not kept in the pool.
	h1HeadRetain = 16 << 10
)

var (
	h1ReaderPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, h1BufSize) }}
	h1WriterPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, h1BufSize) }}
	h1ConnPool   = sync.Pool{New: func() any { return new(h1conn) }}
)

// 100-continue states (h1conn.cont).
const (
	contNone    int32 = iota // nothing sent yet
	contSending              // a body read is writing "100 Continue"
	contSent
	contSkipped // the final response started first: no 100 will be sent
)

var continueLine = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// h1conn is one HTTP/1.1 client connection. It is pooled; everything in it
// is reset between connections, and the per-request part between requests.
type h1conn struct {
	d        *downstream
	dc       *downConn
	conn     net.Conn             // the socket, or the *tls.Conn over it
	tlsState *tls.ConnectionState // nil for cleartext
	remote   netip.AddrPort
	ctx      context.Context // every request's: canceled when c ends or the drain time runs out
	cancel   context.CancelFunc
	br       *bufio.Reader
	bw       *bufio.Writer
	src      connSource // what br reads from

	// The request being served.
	req   message.Request
	head  h1Head
	hdr   []byte // the request head (then trailers) as read
	spans []fieldSpan
	body  *h1body // nil: no body

	// The response being written.
	cont        atomic.Int32 // 100-continue state
	wroteHeader bool
	chunked     bool
	noBody      bool
	closeAfter  bool
	trailers    bool  // the chunked trailer section was written
	clLeft      int64 // bytes of a content-length body still due, or -1
	hijacked    bool
	lost        bool // a body read may still use c: do not pool it

	// Watching for the client going away while a request without a body
	// waits for its response (see watch).
	watchTimer   *time.Timer
	watchWG      sync.WaitGroup // the armed timer's callback, until it returns
	watchMu      sync.Mutex
	watchArmed   bool
	watchReading bool // the callback reads the connection
	watchOn      bool // armed and not yet disarmed (the loop's goroutine only)
}

// connSource is the reader under br: the connection, after one byte read
// while the buffers were released (see waitRequest).
type connSource struct {
	c       net.Conn
	pending [1]byte
	npend   int
}

func (s *connSource) Read(p []byte) (int, error) {
	if s.npend > 0 && len(p) > 0 {
		p[0] = s.pending[0]
		s.npend = 0
		return 1, nil
	}
	return s.c.Read(p)
}

// serveHTTP1 runs the HTTP/1.1 loop on conn: the socket, or a TLS
// connection over it whose handshake state is tlsState. A cleartext
// connection that starts with the HTTP/2 preface, on a listener that
// offers h2c, goes to HTTP/2 instead.
func (d *downstream) serveHTTP1(dc *downConn, conn net.Conn, tlsState *tls.ConnectionState) {
	c := h1ConnPool.Get().(*h1conn)
	c.d, c.dc, c.conn, c.tlsState = d, dc, conn, tlsState
	isTLS := tlsState != nil
	if ta, ok := dc.raw.RemoteAddr().(*net.TCPAddr); ok {
		c.remote = ta.AddrPort()
	}
	c.src.c = conn
	c.getBuffers()
	c.clLeft = -1
	c.ctx, c.cancel = context.WithCancel(d.ctx)

	if !isTLS && d.http2 && !dc.adopted {
		h2, err := c.sniffPreface()
		if err != nil {
			c.release()
			return
		}
		if h2 {
			// HTTP/2 keeps neither c nor its buffers: what was read
			// is handed over in a slice of its own.
			buf := make([]byte, c.br.Buffered())
			c.br.Read(buf)
			c.release()
			d.serveH2(dc, &replayConn{Conn: conn, buf: buf})
			return
		}
	}
	defer c.release()
	if d.http1 {
		c.serve()
	}
}

// sniffPreface reports whether the connection starts with the HTTP/2
// client preface, reading no more of it than needed to tell.
func (c *h1conn) sniffPreface() (bool, error) {
	for n := 1; n <= len(http2.ClientPreface); n++ {
		b, err := c.br.Peek(n)
		if err != nil {
			return false, err
		}
		if b[n-1] != http2.ClientPreface[n-1] {
			return false, nil
		}
	}
	return true, nil
}

func (c *h1conn) getBuffers() {
	c.br = h1ReaderPool.Get().(*bufio.Reader)
	c.br.Reset(&c.src)
	c.bw = h1WriterPool.Get().(*bufio.Writer)
	c.bw.Reset(c.conn)
}

func (c *h1conn) putBuffers() {
	if c.br != nil {
		c.br.Reset(nil)
		h1ReaderPool.Put(c.br)
		c.br = nil
	}
	if c.bw != nil {
		c.bw.Reset(nil)
		h1WriterPool.Put(c.bw)
		c.bw = nil
	}
}

// release returns c to the pool. The connection itself is closed by the
// caller (or, after an upgrade, by the forwarding core).
func (c *h1conn) release() {
	c.cancel()
	if c.lost {
		return
	}
	c.putBuffers()
	c.req.Reset()
	if cap(c.hdr) > h1HeadRetain {
		c.hdr = nil
	}
	hdr, spans, req, timer := c.hdr[:0], c.spans[:0], c.req, c.watchTimer
	*c = h1conn{}
	c.hdr, c.spans, c.req, c.watchTimer = hdr, spans, req, timer
	h1ConnPool.Put(c)
}

// serve is the request loop.
func (c *h1conn) serve() {
	d := c.d
	for first := !c.dc.adopted; ; first = false {
		if !first && !c.waitRequest() {
			return
		}
		if !first && !c.headBuffered() {
			// The head is not all here: the rest must come within
			// timeouts.request_headers (slowloris). The first request's
			// deadline was set at accept.
			c.conn.SetReadDeadline(time.Now().Add(d.headTimeout))
		}
		if err := c.readHead(); err != nil {
			var he *h1Error
			if errors.As(err, &he) {
				c.replyError(he)
			}
			return
		}
		c.buildRequest()
		if c.req.Body != nil {
			// No deadline on bodies: the route timeout bounds the exchange.
			c.conn.SetReadDeadline(time.Time{})
		}
		if c.req.Body == nil && c.br.Buffered() == 0 {
			c.armWatch()
		}
		aborted := c.d.l.serve(c.ctx, &c.req, c)
		c.disarmWatch()
		if c.hijacked {
			return
		}
		keep := c.finishResponse(aborted)
		unread := false
		if b := c.body; b != nil {
			if b.close() {
				// The upstream client still reads the body on another
				// goroutine: end the connection under it. If that read
				// does not return, c stays out of the pool.
				c.dc.raw.Close()
				c.lost = !b.waitClosed()
				return
			}
			if keep {
				keep = b.discardRest(c)
			}
			unread = !b.done
		}
		unread = unread || c.br.Buffered() > 0
		c.resetRequest()
		if !keep {
			if unread {
				c.lingerClose()
			}
			return
		}
	}
}

// headBuffered reports whether a whole request head is already in the
// reader's buffer, so that reading it cannot block.
func (c *h1conn) headBuffered() bool {
	b, _ := c.br.Peek(c.br.Buffered())
	return bytes.Index(b, crlfcrlf[1:]) >= 0 || bytes.Index(b, lflf) >= 0
}

var crlfcrlf, lflf = []byte("\r\n\r\n"), []byte("\n\n")

// waitRequest waits for the next request on a kept-alive connection, up
// to timeouts.idle, and reports whether one is arriving. After
// h1IdleRelease without one, the buffers go back to their pools until it
// does. Shutdown may close the connection while it waits.
func (c *h1conn) waitRequest() bool {
	d := c.d
	if c.br.Buffered() > 0 || c.src.npend > 0 {
		// Pipelined: the next request is already here (or its first
		// byte, read by the watch for the client leaving).
		c.dc.state.Store(connActive)
		return true
	}
	c.dc.state.Store(connIdle)
	if d.draining.Load() {
		return c.handOff()
	}
	start := time.Now()
	wait := d.idleTimeout
	release := wait > h1IdleRelease
	if release {
		wait = h1IdleRelease
	}
	c.conn.SetReadDeadline(start.Add(wait))
	_, err := c.br.Peek(1)
	if err != nil && release && isTimeout(err) {
		// Idle a while: give the buffers back and wait for a byte
		// without them.
		c.putBuffers()
		c.conn.SetReadDeadline(start.Add(d.idleTimeout))
		var n int
		n, err = c.conn.Read(c.src.pending[:])
		if n == 1 {
			c.src.npend = 1
			err = nil
		} else if err == nil {
			err = io.ErrNoProgress
		}
		c.getBuffers()
	}
	if err != nil {
		if d.draining.Load() && isTimeout(err) {
			// Woken by a drain (closeIdle), or idle too long during one.
			return c.handOff()
		}
		return false
	}
	return c.dc.state.CompareAndSwap(connIdle, connActive)
}

// handOff passes an idle cleartext connection to the process that took
// over (hot restart) when the drain allows it, so that the client's next
// request is served there rather than racing a close. Nothing of that
// request has been read: the reader's buffer is empty and the wake-up was a
// deadline, which consumes no byte. It returns false: this loop is over.
func (c *h1conn) handOff() bool {
	d := c.d
	if !c.canHandOff() || c.br.Buffered() > 0 || c.src.npend > 0 ||
		!c.dc.state.CompareAndSwap(connIdle, connHandedOff) {
		return false
	}
	if d.handoff(c.dc.raw) {
		d.l.stats.cxHandedOff.Inc()
	}
	return false
}

// canHandOff reports whether a draining loop may keep c open after its
// response, to hand it off once idle.
func (c *h1conn) canHandOff() bool {
	return c.tlsState == nil && c.d.handoff != nil
}

// h1WatchAfter is how long a request without a body may wait for its
// response before edge starts reading the client connection to notice the
// client going away (and cancel the upstream request, as Envoy does). Most
// responses come sooner, and then the watch costs only a timer reset.
const h1WatchAfter = 500 * time.Millisecond

// armWatch starts the timer after which watch runs.
func (c *h1conn) armWatch() {
	c.watchOn = true
	c.watchMu.Lock()
	c.watchArmed, c.watchReading = true, false
	c.watchMu.Unlock()
	c.watchWG.Add(1)
	if c.watchTimer == nil {
		c.watchTimer = time.AfterFunc(h1WatchAfter, c.watch)
	} else {
		c.watchTimer.Reset(h1WatchAfter)
	}
}

// watch reads the client connection while the response is awaited: an
// end of stream or an error means the client has gone, and the request's
// context is canceled; a byte (the start of a pipelined request) is kept
// for the next request. disarmWatch interrupts it with a read deadline.
func (c *h1conn) watch() {
	defer c.watchWG.Done()
	c.watchMu.Lock()
	if !c.watchArmed {
		c.watchMu.Unlock()
		return
	}
	c.watchReading = true
	c.watchMu.Unlock()
	n, err := c.conn.Read(c.src.pending[:])
	switch {
	case n == 1:
		c.src.npend = 1
	case err != nil && !isTimeout(err):
		c.cancel()
	}
}

// disarmWatch stops the timer, or ends the watch it started, and returns
// once the timer's callback cannot touch the connection any more. It does
// nothing when no watch is armed.
func (c *h1conn) disarmWatch() {
	if !c.watchOn {
		return
	}
	c.watchOn = false
	c.watchMu.Lock()
	c.watchArmed = false
	reading := c.watchReading
	c.watchMu.Unlock()
	if c.watchTimer.Stop() {
		c.watchWG.Done() // the callback will not run
		return
	}
	if reading {
		c.conn.SetReadDeadline(time.Unix(1, 0))
	}
	c.watchWG.Wait()
	if reading {
		c.conn.SetReadDeadline(time.Time{})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// resetRequest clears the per-request state for the next request.
func (c *h1conn) resetRequest() {
	c.req.Reset()
	c.body = nil
	c.cont.Store(contNone)
	c.wroteHeader, c.chunked, c.noBody, c.closeAfter, c.trailers = false, false, false, false, false
	c.clLeft = -1
}

// replyError answers a refused request with a short text and ends the
// connection.
func (c *h1conn) replyError(e *h1Error) {
	bw := c.bw
	bw.WriteString(statusLine(e.status))
	bw.WriteString("content-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: ")
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(e.msg)+1), 10))
	bw.WriteString("\r\n\r\n")
	bw.WriteString(e.msg)
	bw.WriteString("\n")
	if bw.Flush() == nil {
		c.lingerClose()
	}
}

// lingerClose half-closes the connection and reads and drops what the
// client still sends, for a short while, before the caller closes it:
// closing a socket with unread input resets the connection, and the reset
// can destroy the answer before the client reads it.
func (c *h1conn) lingerClose() {
	if tc, ok := c.conn.(*tls.Conn); ok {
		tc.CloseWrite()
	}
	if cw, ok := c.dc.raw.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.dc.raw.SetReadDeadline(time.Now().Add(h1LingerTime))
	io.CopyN(io.Discard, c.dc.raw, h1DiscardLimit)
}

// startResponse makes sure "100 Continue" is either fully written or never
// will be, before the first byte of the response.
func (c *h1conn) startResponse() {
	if !c.head.expect100 {
		return
	}
	for {
		switch c.cont.Load() {
		case contNone:
			if c.cont.CompareAndSwap(contNone, contSkipped) {
				return
			}
		case contSending:
			runtime.Gosched()
		default:
			return
		}
	}
}

// sendContinue writes "100 Continue" if the client asked for it and the
// response has not started: called on the first body read.
func (c *h1conn) sendContinue() {
	if c.head.expect100 && c.cont.CompareAndSwap(contNone, contSending) {
		// Straight to the connection: the body may be read on another
		// goroutine than the one writing the response into bw.
		c.conn.Write(continueLine)
		c.cont.Store(contSent)
	}
}

// The responder methods: the forwarding core's view of the response.

func (c *h1conn) informational(status int, h *message.Header) {
	if c.head.minor == 0 || c.wroteHeader {
		return // HTTP/1.0 clients do not expect 1xx responses
	}
	// A 100 Continue may still follow (or be written meanwhile: each is
	// one write of a whole message, so they cannot interleave).
	c.bw.WriteString(statusLine(status))
	c.writeFields(h, false)
	c.bw.WriteString("\r\n")
	c.bw.Flush()
}

func (c *h1conn) writeHeader(status int, h *message.Header, contentLength int64) {
	c.startResponse()
	c.wroteHeader = true
	bw := c.bw
	bw.WriteString(statusLine(status))
	noBody := contentLength == -2 || status < 200 || status == 204 || status == 304 || c.req.Method == "HEAD"
	// The core's content-length is replaced by edge's own framing, except
	// where no body follows: HEAD and 304 keep the upstream's (it tells
	// the length of the body a GET would get); 204 and 1xx have none.
	keepCL := noBody && status >= 200 && status != 204
	c.writeFields(h, keepCL)
	switch {
	case noBody:
		c.noBody = true
	case contentLength >= 0:
		c.clLeft = contentLength
		c.writeContentLength(contentLength)
	case c.head.minor == 1:
		c.chunked = true
		bw.WriteString("transfer-encoding: chunked\r\n")
	default:
		c.closeAfter = true // HTTP/1.0: the body ends with the connection
	}
	if c.head.connClose || (c.head.minor == 0 && !c.head.connKeepAlive) || (c.d.draining.Load() && !c.canHandOff()) ||
		(c.req.Body != nil && c.cont.Load() == contSkipped) {
		// A client that asked for 100-continue and did not get it may or
		// may not send its body: the connection cannot be reused.
		c.closeAfter = true
	}
	if c.closeAfter {
		bw.WriteString("connection: close\r\n")
	} else if c.head.minor == 0 {
		bw.WriteString("connection: keep-alive\r\n")
	}
	bw.WriteString("\r\n")
}

func (c *h1conn) writeContentLength(n int64) {
	c.bw.WriteString("content-length: ")
	c.bw.Write(strconv.AppendInt(c.bw.AvailableBuffer(), n, 10))
	c.bw.WriteString("\r\n")
}

// writeFields writes h, leaving out the fields edge sets itself.
func (c *h1conn) writeFields(h *message.Header, keepCL bool) {
	bw := c.bw
	for _, f := range h.Fields() {
		switch f.Name {
		case hdrContentLen:
			if !keepCL {
				continue
			}
		case "transfer-encoding", hdrConnection, "keep-alive":
			continue
		}
		bw.WriteString(f.Name)
		bw.WriteString(": ")
		bw.WriteString(f.Value)
		bw.WriteString("\r\n")
	}
}

var errBodyOverLength = errors.New("edge: response body longer than its content-length")

func (c *h1conn) write(p []byte) (int, error) {
	switch {
	case c.noBody || !c.wroteHeader:
		return len(p), nil
	case c.chunked:
		if len(p) == 0 {
			return 0, nil
		}
		bw := c.bw
		bw.Write(strconv.AppendUint(bw.AvailableBuffer(), uint64(len(p)), 16))
		bw.WriteString("\r\n")
		n, err := bw.Write(p)
		if err != nil {
			return n, err
		}
		_, err = bw.WriteString("\r\n")
		return n, err
	case c.clLeft >= 0:
		if int64(len(p)) > c.clLeft {
			n, _ := c.bw.Write(p[:c.clLeft])
			c.clLeft -= int64(n)
			return n, errBodyOverLength
		}
		n, err := c.bw.Write(p)
		c.clLeft -= int64(n)
		return n, err
	default:
		return c.bw.Write(p)
	}
}

func (c *h1conn) flush() { c.bw.Flush() }

func (c *h1conn) writeTrailers(h *message.Header) {
	if !c.chunked || c.trailers {
		return // trailers need chunked framing; otherwise they are dropped
	}
	c.trailers = true
	c.bw.WriteString("0\r\n")
	for _, f := range h.Fields() {
		if skipTrailer(f.Name) {
			continue
		}
		c.bw.WriteString(f.Name)
		c.bw.WriteString(": ")
		c.bw.WriteString(f.Value)
		c.bw.WriteString("\r\n")
	}
	c.bw.WriteString("\r\n")
}

func (c *h1conn) upgrade(h *message.Header) (io.ReadWriteCloser, error) {
	c.startResponse()
	c.wroteHeader = true
	bw := c.bw
	bw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	for _, f := range h.Fields() {
		bw.WriteString(f.Name)
		bw.WriteString(": ")
		bw.WriteString(f.Value)
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	c.hijacked = true
	c.dc.state.Store(connHijacked)
	// The tunnel reads the connection from now on: the watch must not,
	// and a byte it read goes first.
	c.disarmWatch()
	c.conn.SetReadDeadline(time.Time{})
	u := &upgradedConn{Conn: c.conn, raw: c.dc.raw}
	if n := c.br.Buffered() + c.src.npend; n > 0 {
		u.buf = make([]byte, 0, n)
		u.buf = append(u.buf, c.src.pending[:c.src.npend]...)
		c.src.npend = 0
		b, _ := c.br.Peek(c.br.Buffered())
		u.buf = append(u.buf, b...)
		c.br.Discard(len(b))
	}
	return u, nil
}

// finishResponse ends the response after the core returned and reports
// whether the connection can carry another request.
func (c *h1conn) finishResponse(aborted bool) bool {
	bw := c.bw
	if aborted || !c.wroteHeader {
		// Cut off mid-body, or never answered: what was written goes out,
		// with no terminating chunk, and the connection ends, so the
		// client sees a truncated response, never a complete-looking one.
		bw.Flush()
		return false
	}
	if c.chunked && !c.trailers {
		bw.WriteString("0\r\n\r\n")
	}
	if bw.Flush() != nil || c.clLeft > 0 {
		return false
	}
	return !c.closeAfter
}

// upgradedConn is a client connection handed to the core after a 101: it
// first yields what the reader had already buffered.
type upgradedConn struct {
	net.Conn
	raw net.Conn
	buf []byte
}

func (u *upgradedConn) Read(p []byte) (int, error) {
	if len(u.buf) > 0 {
		n := copy(p, u.buf)
		u.buf = u.buf[n:]
		return n, nil
	}
	return u.Conn.Read(p)
}

// CloseWrite half-closes the client side (after a TLS close_notify).
func (u *upgradedConn) CloseWrite() error {
	if tc, ok := u.Conn.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
	}
	if cw, ok := u.raw.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

var _ responder = (*h1conn)(nil)
