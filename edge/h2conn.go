package edge

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/edgeproxy/edge/edge/message"
)

// This file is edge's own HTTP/2 server codec (RFC 9113). One goroutine
// per connection reads frames; each stream's request runs through the
// forwarding core on a goroutine of its own, with the stream as the
// responder. Responses are written by whichever goroutine produces them
// into one per-connection buffer under a mutex: a response's HEADERS and
// DATA frames go out in one write at its end (or when the core flushes a
// stream, or the buffer fills), with no channel hand-off per frame.

const (
	// h2StreamWindow is the receive window advertised per stream, and
	// h2ConnWindow the connection's: they bound the request body bytes
	// buffered per stream and per connection.
	h2StreamWindow = 256 << 10
	h2ConnWindow   = 1 << 20
	// h2MaxFrame is the largest frame payload edge reads (SETTINGS_MAX_FRAME_SIZE).
	h2MaxFrame = 16384
	// h2FlushSize: a write buffer holding this much is written out.
	h2FlushSize = 64 << 10
	// h2ReadBuf is the size of the connection's read buffer.
	h2ReadBuf = 16 << 10
	// h2MaxWindow is the largest flow-control window (2^31-1).
	h2MaxWindow = 1<<31 - 1
	// h2GoAwayLinger bounds the wait for the client to close after a
	// GOAWAY for a connection error.
	h2GoAwayLinger = time.Second
)

// h2WriteTimeout bounds one write of buffered frames: a client that reads
// nothing for this long loses the connection. A variable for tests.
var h2WriteTimeout = 30 * time.Second

var (
	h2ReaderPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, h2ReadBuf) }}
	h2StreamPool = sync.Pool{New: func() any {
		st := new(h2stream)
		st.bcond.L = &st.bmu
		return st
	}}
	h2BodyBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}
)

// h2StatusText holds the decimal form of every status code, so that
// encoding :status does not allocate.
var h2StatusText = func() (t [600]string) {
	for i := 100; i < len(t); i++ {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

// h2conn is one HTTP/2 client connection.
type h2conn struct {
	d        *downstream
	dc       *downConn
	conn     net.Conn
	tlsState *tls.ConnectionState
	remote   netip.AddrPort
	ctx      context.Context // parent of every stream's context
	cancel   context.CancelFunc
	br       *bufio.Reader
	fr       *http2.Framer
	handlers sync.WaitGroup

	maxStreams int

	// Writing: everything below is guarded by wmu; wcond (on wmu) wakes
	// writers waiting for send window.
	wmu            sync.Mutex
	wcond          sync.Cond
	wbuf           []byte
	henc           *hpack.Encoder
	hsink          hpackSink
	sendWindow     int64 // connection send window
	peerInitWindow int64
	peerMaxFrame   int
	werr           error  // the connection can no longer be written
	flushGen       uint64 // count of writes of wbuf

	// Streams: guarded by mu.
	mu           sync.Mutex
	streams      map[uint32]*h2stream
	active       int
	lastStream   uint32 // highest client stream id seen
	goingAway    bool
	closing      bool
	settingsSent bool // the server preface went out
	// recentClosed holds the ids of the last streams that ended, to tell
	// a frame on a closed stream (STREAM_CLOSED) from one on a stream
	// that was skipped (PROTOCOL_ERROR).
	recentClosed [32]uint32
	recentNext   int
	idleTimer    *time.Timer

	// connUnacked is request body bytes consumed (or dropped) whose
	// connection window has not yet been given back.
	connUnacked atomic.Int64
	// recvAdd is connection receive window given back, not yet added to
	// recvWindow by the reader.
	recvAdd atomic.Int64
	// Reader goroutine only.
	recvWindow int64 // connection receive window left
	sawHeaders bool
}

// hpackSink collects an encoded header block.
type hpackSink struct{ b []byte }

func (s *hpackSink) Write(p []byte) (int, error) { s.b = append(s.b, p...); return len(p), nil }

// h2stream is one request stream; it is the responder for its request and
// the request body's reader. It is pooled.
type h2stream struct {
	c      *h2conn
	id     uint32
	ctx    context.Context
	cancel context.CancelFunc
	req    message.Request

	// Reader goroutine only (under c.mu).
	remoteClosed bool  // END_STREAM received
	recvWindow   int64 // stream receive window left (under bmu)
	clWant       int64 // declared content-length, or -1
	clGot        int64
	expect100    bool

	// Request body, under bmu.
	bmu      sync.Mutex
	bcond    sync.Cond
	bbuf     *[]byte
	boff     int
	beof     bool
	berr     error
	unacked  int64 // consumed, not yet returned by WINDOW_UPDATE
	bodyRead bool  // the handler read the body at least once

	// Response, under c.wmu.
	sendWindow  int64
	reset       bool // RST_STREAM sent or received
	wroteHeader bool
	ended       bool // END_STREAM sent
	noBody      bool
	sent100     bool
	// hdrPos is the offset in c.wbuf of the response's HEADERS frame
	// while it is still buffered (flushGen hdrGen) and no DATA followed,
	// so that the end of the stream can be flagged on it; -1 otherwise.
	hdrPos int
	hdrGen uint64
}

// serveH2 serves an HTTP/2 connection (after ALPN h2, or cleartext with
// the preface still to be read from c) until it ends.
func (d *downstream) serveH2(dc *downConn, c net.Conn) {
	dc.state.Store(connH2)
	l := d.l
	h := &h2conn{
		d:              d,
		dc:             dc,
		conn:           c,
		maxStreams:     l.cfg.Limits.MaxConcurrentStreams,
		streams:        make(map[uint32]*h2stream),
		sendWindow:     65535,
		peerInitWindow: 65535,
		peerMaxFrame:   16384,
		recvWindow:     h2ConnWindow,
	}
	if h.maxStreams <= 0 {
		h.maxStreams = 250
	}
	h.wcond.L = &h.wmu
	if tc, ok := c.(*tls.Conn); ok {
		st := tc.ConnectionState()
		h.tlsState = &st
	}
	if ta, ok := dc.raw.RemoteAddr().(*net.TCPAddr); ok {
		h.remote = ta.AddrPort()
	} else if ap, err := netip.ParseAddrPort(dc.raw.RemoteAddr().String()); err == nil {
		h.remote = ap
	}
	h.ctx, h.cancel = context.WithCancel(d.ctx)
	h.henc = hpack.NewEncoder(&h.hsink)
	h.br = h2ReaderPool.Get().(*bufio.Reader)
	h.br.Reset(c)
	h.fr = http2.NewFramer(nil, h.br)
	h.fr.SetReuseFrames()
	h.fr.SetMaxReadFrameSize(h2MaxFrame)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.fr.MaxHeaderListSize = uint32(d.maxHeadBytes)
	// downstream.shutdown finds the connection here to drain it.
	dc.h2.Store(h)
	defer dc.h2.Store(nil)
	h.serve()
	h.br.Reset(nil)
	h2ReaderPool.Put(h.br)
}

// serve runs the read loop, then tears the connection down.
func (c *h2conn) serve() {
	defer func() {
		c.cancel()
		c.wmu.Lock()
		if c.werr == nil {
			c.werr = net.ErrClosed
		}
		c.wcond.Broadcast()
		c.wmu.Unlock()
		c.mu.Lock()
		c.closing = true
		if c.idleTimer != nil {
			c.idleTimer.Stop()
		}
		for _, st := range c.streams {
			st.closeBody(errH2ConnClosed)
		}
		c.mu.Unlock()
		c.conn.Close()
		c.handlers.Wait()
	}()
	if c.d.headTimeout > 0 {
		c.conn.SetReadDeadline(time.Now().Add(c.d.headTimeout))
	}
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.br, preface[:]); err != nil || string(preface[:]) != http2.ClientPreface {
		return
	}
	c.mu.Lock()
	c.settingsSent = true
	drained := c.goingAway
	c.goingAway = false
	c.mu.Unlock()
	c.wmu.Lock()
	c.wbuf = appendSettings(c.wbuf, [][2]uint32{
		{uint32(http2.SettingMaxConcurrentStreams), uint32(c.maxStreams)},
		{uint32(http2.SettingInitialWindowSize), h2StreamWindow},
		{uint32(http2.SettingMaxFrameSize), h2MaxFrame},
		{uint32(http2.SettingMaxHeaderListSize), uint32(c.d.maxHeadBytes)},
	})
	c.wbuf = appendWindowUpdate(c.wbuf, 0, h2ConnWindow-65535)
	c.flushLocked()
	c.wmu.Unlock()
	if drained {
		// The drain started before the server preface went out.
		c.drain()
	}
	if c.d.idleTimeout > 0 {
		c.mu.Lock()
		c.idleTimer = time.AfterFunc(c.d.idleTimeout, c.onIdle)
		c.mu.Unlock()
	}

	first := true
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			var ce http2.ConnectionError
			switch {
			case errors.As(err, &se):
				c.mu.Lock()
				if se.StreamID > c.lastStream && se.StreamID%2 == 1 {
					c.lastStream = se.StreamID
				}
				c.mu.Unlock()
				c.resetStream(se.StreamID, se.Code)
				continue
			case errors.As(err, &ce):
				c.goAwayError(http2.ErrCode(ce))
			case errors.Is(err, http2.ErrFrameTooLarge):
				c.goAwayError(http2.ErrCodeFrameSize)
			}
			return
		}
		if first {
			sf, ok := f.(*http2.SettingsFrame)
			if !ok || sf.IsAck() {
				c.goAwayError(http2.ErrCodeProtocol)
				return
			}
			first = false
		}
		if code, ok := c.handle(f); !ok {
			c.goAwayError(code)
			return
		}
	}
}

var errH2ConnClosed = errors.New("edge: HTTP/2 connection closed")
var errH2StreamReset = errors.New("edge: HTTP/2 stream reset by the client")

// handle processes one frame; a false result is a connection error.
func (c *h2conn) handle(f http2.Frame) (http2.ErrCode, bool) {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			return 0, true
		}
		return c.onSettings(f)
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		id := f.Header().StreamID
		c.mu.Lock()
		if id > c.lastStream {
			c.mu.Unlock()
			return http2.ErrCodeProtocol, false
		}
		if st := c.streams[id]; st != nil {
			st.remoteClosed = true
			st.closeBody(errH2StreamReset)
			st.cancel()
			c.wmu.Lock()
			st.reset = true
			c.wcond.Broadcast()
			c.wmu.Unlock()
		}
		c.mu.Unlock()
	case *http2.PingFrame:
		if f.IsAck() {
			return 0, true
		}
		c.wmu.Lock()
		c.wbuf = appendFrameHeader(c.wbuf, 8, http2.FramePing, http2.FlagPingAck, 0)
		c.wbuf = append(c.wbuf, f.Data[:]...)
		c.flushLocked()
		c.wmu.Unlock()
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			c.resetStream(f.StreamID, http2.ErrCodeProtocol)
		}
	case *http2.GoAwayFrame:
		// The client will open no more streams; those open finish.
	case *http2.PushPromiseFrame:
		return http2.ErrCodeProtocol, false
	}
	return 0, true
}

func (c *h2conn) onSettings(f *http2.SettingsFrame) (http2.ErrCode, bool) {
	if err := f.ForeachSetting(func(s http2.Setting) error { return s.Valid() }); err != nil {
		var ce http2.ConnectionError
		if errors.As(err, &ce) {
			return http2.ErrCode(ce), false
		}
		return http2.ErrCodeProtocol, false
	}
	code := http2.ErrCodeNo
	c.mu.Lock()
	c.wmu.Lock()
	f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.peerInitWindow
			c.peerInitWindow = int64(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > h2MaxWindow {
					code = http2.ErrCodeFlowControl
				}
			}
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = int(s.Val)
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSizeLimit(s.Val)
		}
		return nil
	})
	if code == http2.ErrCodeNo {
		c.wbuf = appendFrameHeader(c.wbuf, 0, http2.FrameSettings, http2.FlagSettingsAck, 0)
		c.flushLocked()
		c.wcond.Broadcast()
	}
	c.wmu.Unlock()
	c.mu.Unlock()
	return code, code == http2.ErrCodeNo
}

func (c *h2conn) onWindowUpdate(f *http2.WindowUpdateFrame) (http2.ErrCode, bool) {
	id := f.Header().StreamID
	inc := int64(f.Increment)
	if id == 0 {
		c.wmu.Lock()
		c.sendWindow += inc
		over := c.sendWindow > h2MaxWindow
		c.wcond.Broadcast()
		c.wmu.Unlock()
		if over {
			return http2.ErrCodeFlowControl, false
		}
		return 0, true
	}
	c.mu.Lock()
	if id > c.lastStream {
		c.mu.Unlock()
		return http2.ErrCodeProtocol, false
	}
	st := c.streams[id]
	over := false
	if st != nil {
		c.wmu.Lock()
		st.sendWindow += inc
		over = st.sendWindow > h2MaxWindow
		c.wcond.Broadcast()
		c.wmu.Unlock()
	}
	c.mu.Unlock()
	if over {
		c.resetStream(id, http2.ErrCodeFlowControl)
	}
	return 0, true
}

func (c *h2conn) onData(f *http2.DataFrame) (http2.ErrCode, bool) {
	id := f.Header().StreamID
	n := int64(f.Header().Length) // padding counts against flow control
	c.recvWindow += c.recvAdd.Swap(0)
	if n > c.recvWindow {
		return http2.ErrCodeFlowControl, false
	}
	c.recvWindow -= n
	c.mu.Lock()
	if id > c.lastStream {
		c.mu.Unlock()
		return http2.ErrCodeProtocol, false
	}
	st := c.streams[id]
	if st == nil || st.remoteClosed {
		c.mu.Unlock()
		c.giveBack(nil, n)
		c.resetStream(id, http2.ErrCodeStreamClosed)
		return 0, true
	}
	data := f.Data()
	st.clGot += int64(len(data))
	if st.clWant >= 0 && (st.clGot > st.clWant || (f.StreamEnded() && st.clGot != st.clWant)) {
		c.mu.Unlock()
		c.giveBack(nil, n)
		c.resetStream(id, http2.ErrCodeProtocol)
		return 0, true
	}
	st.bmu.Lock()
	if n > st.recvWindow {
		st.bmu.Unlock()
		c.mu.Unlock()
		c.giveBack(nil, n)
		c.resetStream(id, http2.ErrCodeFlowControl)
		return 0, true
	}
	st.recvWindow -= n
	pad := n - int64(len(data))
	if st.berr != nil {
		// The handler is gone or the body failed: drop the bytes.
		pad = n
	} else if len(data) > 0 {
		if st.bbuf == nil {
			st.bbuf = h2BodyBufPool.Get().(*[]byte)
			*st.bbuf = (*st.bbuf)[:0]
			st.boff = 0
		}
		*st.bbuf = append(*st.bbuf, data...)
	}
	if f.StreamEnded() {
		st.remoteClosed = true
		st.beof = true
	}
	st.bcond.Broadcast()
	st.bmu.Unlock()
	if pad > 0 {
		// Padding (and dropped data) is not read by anyone: give its
		// window back at once (under c.mu: st stays this stream's).
		c.giveBack(st, pad)
	}
	c.mu.Unlock()
	return 0, true
}

// giveBack returns n consumed bytes of receive window, for the connection
// and (when st is not nil) the stream, batching the WINDOW_UPDATEs.
func (c *h2conn) giveBack(st *h2stream, n int64) {
	var sinc int64
	if st != nil {
		st.bmu.Lock()
		st.unacked += n
		if st.unacked >= h2StreamWindow/4 && !st.beof && st.berr == nil {
			sinc = st.unacked
			st.unacked = 0
			st.recvWindow += sinc
		}
		st.bmu.Unlock()
	}
	cinc := c.connUnacked.Add(n)
	if cinc < h2ConnWindow/4 {
		cinc = 0
	} else if !c.connUnacked.CompareAndSwap(cinc, 0) {
		cinc = 0
	}
	if sinc == 0 && cinc == 0 {
		return
	}
	c.wmu.Lock()
	if cinc > 0 {
		c.wbuf = appendWindowUpdate(c.wbuf, 0, uint32(cinc))
	}
	if sinc > 0 {
		c.wbuf = appendWindowUpdate(c.wbuf, st.id, uint32(sinc))
	}
	c.flushLocked()
	c.wmu.Unlock()
	if cinc > 0 {
		c.addRecvWindow(cinc)
	}
}

// addRecvWindow is called from any goroutine; the reader's copy of the
// connection window is adjusted through an atomic counter it drains.
func (c *h2conn) addRecvWindow(n int64) { c.recvAdd.Add(n) }

// wasClosed reports whether stream id ended recently (c.mu held).
func (c *h2conn) wasClosed(id uint32) bool {
	for _, v := range c.recentClosed {
		if v == id {
			return true
		}
	}
	return false
}

// resetStream sends RST_STREAM and forgets the stream's request body.
func (c *h2conn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.streams[id]
	if st != nil {
		st.remoteClosed = true
		st.closeBody(errH2StreamReset)
		st.cancel()
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if st != nil {
		if (st.reset || st.ended) && code != http2.ErrCodeStreamClosed {
			return
		}
		st.reset = true
		c.wcond.Broadcast()
	}
	c.wbuf = appendRST(c.wbuf, id, code)
	c.flushLocked()
}

// goAwayError ends the connection for a connection error.
func (c *h2conn) goAwayError(code http2.ErrCode) {
	c.mu.Lock()
	last := c.lastStream
	c.goingAway = true
	c.mu.Unlock()
	c.wmu.Lock()
	c.wbuf = appendGoAway(c.wbuf, last, code)
	c.flushLocked()
	c.wmu.Unlock()
	// Let the client read the GOAWAY before the close resets the
	// connection: stop reading, then wait briefly for its close.
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.conn.SetReadDeadline(time.Now().Add(h2GoAwayLinger))
	io.Copy(io.Discard, io.LimitReader(c.br, 1<<20))
}

// drain starts a graceful shutdown: GOAWAY with the last stream id seen;
// the connection closes when its streams have finished.
func (c *h2conn) drain() {
	c.mu.Lock()
	if c.goingAway || c.closing {
		c.mu.Unlock()
		return
	}
	c.goingAway = true
	if !c.settingsSent {
		// GOAWAY must follow SETTINGS: serve sends it after them.
		c.mu.Unlock()
		return
	}
	last := c.lastStream
	idle := c.active == 0
	c.wmu.Lock()
	c.wbuf = appendGoAway(c.wbuf, last, http2.ErrCodeNo)
	c.flushLocked()
	c.wmu.Unlock()
	c.mu.Unlock()
	if idle {
		c.linger()
	}
}

// linger ends a connection that sent GOAWAY and has no stream left: the
// client gets h2GoAwayLinger to read the GOAWAY and close first (a close
// with unread input would reset the connection and could lose the GOAWAY
// and so the client's retry of streams it opened meanwhile).
func (c *h2conn) linger() {
	c.conn.SetReadDeadline(time.Now().Add(h2GoAwayLinger))
}

// onIdle closes a connection that had no stream for timeouts.idle.
func (c *h2conn) onIdle() {
	c.mu.Lock()
	idle := c.active == 0 && !c.closing
	c.mu.Unlock()
	if idle {
		c.drain()
	}
}

func (c *h2conn) onHeaders(f *http2.MetaHeadersFrame) (http2.ErrCode, bool) {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ErrCodeProtocol, false
	}
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		c.mu.Unlock()
		if st.remoteClosed {
			c.resetStream(id, http2.ErrCodeStreamClosed)
			return 0, true
		}
		return c.onTrailers(st, f)
	}
	if id <= c.lastStream {
		closed := c.wasClosed(id)
		c.mu.Unlock()
		if closed {
			return http2.ErrCodeStreamClosed, false
		}
		return http2.ErrCodeProtocol, false
	}
	c.lastStream = id
	if c.goingAway {
		c.mu.Unlock()
		return 0, true // a stream after GOAWAY is ignored
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		c.mu.Unlock()
		c.resetStream(id, http2.ErrCodeProtocol)
		return 0, true
	}
	if c.active >= c.maxStreams {
		c.mu.Unlock()
		c.resetStream(id, http2.ErrCodeRefusedStream)
		return 0, true
	}
	c.mu.Unlock()
	if !c.sawHeaders {
		c.sawHeaders = true
		c.mu.Lock()
		if !c.goingAway {
			c.conn.SetReadDeadline(time.Time{})
		}
		c.mu.Unlock()
	}
	if f.Truncated {
		c.replyLocal(id, 431)
		if !f.StreamEnded() {
			c.resetStream(id, http2.ErrCodeNo)
		}
		return 0, true
	}

	st := h2StreamPool.Get().(*h2stream)
	st.c, st.id = c, id
	st.clWant = -1
	st.hdrPos = -1
	st.recvWindow = h2StreamWindow
	req := &st.req
	if !c.buildRequest(st, f) {
		st.req.Reset()
		st.c = nil
		h2StreamPool.Put(st)
		c.resetStream(id, http2.ErrCodeProtocol)
		return 0, true
	}
	if req.Header.Len() > c.d.l.maxHeaders {
		st.req.Reset()
		st.c = nil
		h2StreamPool.Put(st)
		c.replyLocal(id, 431)
		if !f.StreamEnded() {
			c.resetStream(id, http2.ErrCodeNo)
		}
		return 0, true
	}
	if f.StreamEnded() {
		st.remoteClosed = true
		req.ContentLength = 0
	} else if st.clWant == 0 {
		req.ContentLength = 0
	} else {
		req.Body = st
		req.ContentLength = st.clWant
	}
	st.ctx, st.cancel = context.WithCancel(c.ctx)
	c.wmu.Lock()
	st.sendWindow = c.peerInitWindow
	c.wmu.Unlock()
	c.mu.Lock()
	c.streams[id] = st
	c.active++
	if c.active == 1 && c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	c.mu.Unlock()
	c.handlers.Add(1)
	go c.runStream(st)
	return 0, true
}

// buildRequest fills st.req from a request header block, checking it as
// RFC 9113 §8.3 says; false means a malformed request.
func (c *h2conn) buildRequest(st *h2stream, f *http2.MetaHeadersFrame) bool {
	req := &st.req
	var method, scheme, path, authority, host string
	var cookies int
	for _, hf := range f.Fields {
		if hf.IsPseudo() {
			var dst *string
			switch hf.Name {
			case ":method":
				dst = &method
			case ":scheme":
				dst = &scheme
			case ":path":
				dst = &path
			case ":authority":
				dst = &authority
			default:
				return false
			}
			if *dst != "" || hf.Value == "" {
				return false
			}
			*dst = hf.Value
			continue
		}
		switch hf.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return false
		case "te":
			if hf.Value != "trailers" {
				return false
			}
		case "host":
			if host == "" {
				host = hf.Value
			}
			continue
		case hdrContentLen:
			n, err := strconv.ParseUint(hf.Value, 10, 63)
			if err != nil || (st.clWant >= 0 && st.clWant != int64(n)) {
				return false
			}
			st.clWant = int64(n)
			continue
		case "cookie":
			cookies++
		case "expect":
			if strings.EqualFold(hf.Value, "100-continue") {
				st.expect100 = true
			}
		}
		req.Header.Add(hf.Name, hf.Value)
	}
	if method == "" {
		return false
	}
	if method == "CONNECT" {
		if scheme != "" || path != "" || authority == "" {
			return false
		}
		path = "/"
	} else if scheme == "" || path == "" || (path[0] != '/' && !(path == "*" && method == "OPTIONS")) {
		return false
	}
	if cookies > 1 {
		// RFC 9113 §8.2.3: split cookie fields are joined for HTTP/1.1.
		var b strings.Builder
		for _, fl := range req.Header.Fields() {
			if fl.Name == "cookie" {
				if b.Len() > 0 {
					b.WriteString("; ")
				}
				b.WriteString(fl.Value)
			}
		}
		req.Header.Del("cookie")
		req.Header.Add("cookie", b.String())
	}
	if authority == "" {
		authority = host
	}
	req.Method = method
	req.Authority = authority
	req.Path = path
	req.ProtoMajor = 2
	req.RemoteAddr = c.remote
	req.SetTLS(c.tlsState)
	return true
}

// onTrailers takes a second header block on an open stream: the request's
// trailers, which must end the stream and carry no pseudo-headers.
func (c *h2conn) onTrailers(st *h2stream, f *http2.MetaHeadersFrame) (http2.ErrCode, bool) {
	if !f.StreamEnded() {
		c.resetStream(st.id, http2.ErrCodeProtocol)
		return 0, true
	}
	for _, hf := range f.Fields {
		if hf.IsPseudo() {
			c.resetStream(st.id, http2.ErrCodeProtocol)
			return 0, true
		}
	}
	c.mu.Lock()
	if st.clWant >= 0 && st.clGot != st.clWant {
		c.mu.Unlock()
		c.resetStream(st.id, http2.ErrCodeProtocol)
		return 0, true
	}
	st.remoteClosed = true
	st.bmu.Lock()
	for _, hf := range f.Fields {
		st.req.Trailer.Add(hf.Name, hf.Value)
	}
	st.beof = true
	st.bcond.Broadcast()
	st.bmu.Unlock()
	c.mu.Unlock()
	return 0, true
}

// replyLocal answers a stream with an empty response of the given status.
func (c *h2conn) replyLocal(id uint32, status int) {
	c.wmu.Lock()
	c.hsink.b = c.hsink.b[:0]
	c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: h2StatusText[status]})
	c.appendHeaderBlock(id, true)
	c.flushLocked()
	c.wmu.Unlock()
}

// runStream serves one stream's request and ends the stream.
func (c *h2conn) runStream(st *h2stream) {
	defer c.handlers.Done()
	aborted := c.d.l.serve(st.ctx, &st.req, st)
	st.cancel()

	c.mu.Lock()
	c.wmu.Lock()
	switch {
	case st.reset || c.werr != nil:
	case aborted:
		st.reset = true
		c.wbuf = appendRST(c.wbuf, st.id, http2.ErrCodeInternal)
	default:
		if !st.wroteHeader {
			st.writeHeaderLocked(500, nil, -2)
		}
		if !st.ended && st.hdrPos >= 0 && st.hdrGen == c.flushGen {
			c.wbuf[st.hdrPos+4] |= byte(http2.FlagHeadersEndStream)
			st.ended = true
		}
		if !st.ended {
			c.wbuf = appendFrameHeader(c.wbuf, 0, http2.FrameData, http2.FlagDataEndStream, st.id)
			st.ended = true
		}
	}
	if !st.remoteClosed && !st.reset && c.werr == nil {
		// The response is complete but the request body is not: tell the
		// client to stop sending (RFC 9113 §8.1).
		c.wbuf = appendRST(c.wbuf, st.id, http2.ErrCodeNo)
	}
	delete(c.streams, st.id)
	c.recentClosed[c.recentNext] = st.id
	c.recentNext = (c.recentNext + 1) % len(c.recentClosed)
	c.active--
	last := c.active == 0
	goingAway := c.goingAway
	if last && c.idleTimer != nil && !goingAway {
		c.idleTimer.Reset(c.d.idleTimeout)
	}
	c.mu.Unlock()
	c.flushLocked()
	c.wmu.Unlock()

	// Bytes buffered and never read give their connection window back.
	st.bmu.Lock()
	var left int64
	if st.bbuf != nil {
		left = int64(len(*st.bbuf) - st.boff)
		h2BodyBufPool.Put(st.bbuf)
		st.bbuf = nil
	}
	st.berr = errH2ConnClosed
	st.bmu.Unlock()
	if left > 0 {
		c.giveBack(nil, left)
	}
	if last && goingAway {
		c.linger()
	}
	st.release()
}

// release returns st to the pool.
func (st *h2stream) release() {
	st.req.Reset()
	st.c, st.ctx, st.cancel = nil, nil, nil
	st.remoteClosed, st.expect100, st.bodyRead = false, false, false
	st.clGot, st.unacked, st.boff = 0, 0, 0
	st.beof, st.berr = false, nil
	st.reset, st.wroteHeader, st.ended, st.noBody, st.sent100 = false, false, false, false, false
	h2StreamPool.Put(st)
}

// closeBody ends the request body with err for its reader (under c.mu).
func (st *h2stream) closeBody(err error) {
	st.bmu.Lock()
	if st.berr == nil && !st.beof {
		st.berr = err
	}
	st.bcond.Broadcast()
	st.bmu.Unlock()
}

// Read reads the request body, giving flow-control window back as the
// bytes are consumed.
func (st *h2stream) Read(p []byte) (int, error) {
	if !st.bodyRead {
		st.bodyRead = true
		if st.expect100 {
			st.send100()
		}
	}
	st.bmu.Lock()
	for (st.bbuf == nil || st.boff == len(*st.bbuf)) && !st.beof && st.berr == nil {
		st.bcond.Wait()
	}
	if st.bbuf != nil && st.boff < len(*st.bbuf) {
		n := copy(p, (*st.bbuf)[st.boff:])
		st.boff += n
		if st.boff == len(*st.bbuf) {
			*st.bbuf = (*st.bbuf)[:0]
			st.boff = 0
		}
		st.bmu.Unlock()
		st.c.giveBack(st, int64(n))
		return n, nil
	}
	err := st.berr
	if err == nil {
		err = io.EOF
	}
	st.bmu.Unlock()
	return 0, err
}

func (st *h2stream) send100() {
	c := st.c
	c.wmu.Lock()
	if !st.wroteHeader && !st.reset && !st.sent100 {
		st.sent100 = true
		c.hsink.b = c.hsink.b[:0]
		c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "100"})
		c.appendHeaderBlock(st.id, false)
		c.flushLocked()
	}
	c.wmu.Unlock()
}

// informational sends a 1xx response at once.
func (st *h2stream) informational(status int, h *message.Header) {
	c := st.c
	c.wmu.Lock()
	if !st.reset && c.werr == nil {
		c.hsink.b = c.hsink.b[:0]
		c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: h2StatusText[status]})
		st.encodeFields(h, false)
		c.appendHeaderBlock(st.id, false)
		c.flushLocked()
	}
	c.wmu.Unlock()
}

func (st *h2stream) writeHeader(status int, h *message.Header, contentLength int64) {
	st.c.wmu.Lock()
	st.writeHeaderLocked(status, h, contentLength)
	st.c.wmu.Unlock()
}

func (st *h2stream) writeHeaderLocked(status int, h *message.Header, contentLength int64) {
	c := st.c
	st.wroteHeader = true
	if st.reset || c.werr != nil {
		return
	}
	if status < 100 || status >= len(h2StatusText) {
		status = 502
	}
	st.noBody = contentLength == -2 || status == 204 || status == 304 || st.req.Method == "HEAD"
	c.hsink.b = c.hsink.b[:0]
	c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: h2StatusText[status]})
	if h != nil {
		st.encodeFields(h, st.noBody && status != 204)
	}
	if !st.noBody && contentLength >= 0 {
		c.henc.WriteField(hpack.HeaderField{Name: hdrContentLen, Value: strconv.FormatInt(contentLength, 10)})
	}
	st.hdrPos, st.hdrGen = len(c.wbuf), c.flushGen
	c.appendHeaderBlock(st.id, st.noBody)
	if st.noBody {
		st.ended = true
	}
}

// encodeFields encodes h's fields, leaving out those HTTP/2 forbids.
func (st *h2stream) encodeFields(h *message.Header, keepCL bool) {
	enc := st.c.henc
	for _, f := range h.Fields() {
		switch f.Name {
		case hdrContentLen:
			if !keepCL {
				continue
			}
		case "transfer-encoding", hdrConnection, "keep-alive", "proxy-connection", "upgrade":
			continue
		}
		enc.WriteField(hpack.HeaderField{Name: message.LowerName(f.Name), Value: f.Value})
	}
}

// appendHeaderBlock frames the encoded block in c.hsink as HEADERS and
// CONTINUATION frames for stream id.
func (c *h2conn) appendHeaderBlock(id uint32, endStream bool) {
	block := c.hsink.b
	typ := http2.FrameHeaders
	first := true
	for {
		n := min(len(block), c.peerMaxFrame)
		var flags http2.Flags
		if first && endStream {
			flags |= http2.FlagHeadersEndStream
		}
		if n == len(block) {
			flags |= http2.FlagHeadersEndHeaders
		}
		c.wbuf = appendFrameHeader(c.wbuf, n, typ, flags, id)
		c.wbuf = append(c.wbuf, block[:n]...)
		block = block[n:]
		if len(block) == 0 {
			return
		}
		typ, first = http2.FrameContinuation, false
	}
}

// write sends body bytes as DATA frames within the send windows, waiting
// for WINDOW_UPDATE when they are exhausted.
func (st *h2stream) write(p []byte) (int, error) {
	c := st.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if st.noBody {
		return len(p), nil
	}
	written := 0
	for len(p) > 0 {
		if c.werr != nil {
			return written, c.werr
		}
		if st.reset || st.ended {
			return written, errH2StreamReset
		}
		n := int64(min(len(p), c.peerMaxFrame))
		n = min(n, st.sendWindow, c.sendWindow)
		if n <= 0 {
			c.flushLocked()
			if c.werr == nil && !st.reset {
				c.wcond.Wait()
			}
			continue
		}
		st.hdrPos = -1
		c.wbuf = appendFrameHeader(c.wbuf, int(n), http2.FrameData, 0, st.id)
		c.wbuf = append(c.wbuf, p[:n]...)
		st.sendWindow -= n
		c.sendWindow -= n
		p = p[n:]
		written += int(n)
		if len(c.wbuf) >= h2FlushSize {
			c.flushLocked()
		}
	}
	return written, nil
}

func (st *h2stream) flush() {
	st.c.wmu.Lock()
	st.c.flushLocked()
	st.c.wmu.Unlock()
}

func (st *h2stream) writeTrailers(h *message.Header) {
	c := st.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if h.Len() == 0 || st.reset || st.ended || st.noBody || c.werr != nil {
		return
	}
	c.hsink.b = c.hsink.b[:0]
	st.encodeFields(h, true)
	c.appendHeaderBlock(st.id, true)
	st.ended = true
}

func (st *h2stream) upgrade(*message.Header) (io.ReadWriteCloser, error) {
	return nil, errNoUpgradeH2
}

// flushLocked writes the buffered frames (c.wmu held).
func (c *h2conn) flushLocked() {
	if len(c.wbuf) == 0 {
		return
	}
	if c.werr == nil {
		// A client that stops reading must not hold the connection's
		// writer (and every stream behind it) for ever.
		c.conn.SetWriteDeadline(time.Now().Add(h2WriteTimeout))
		if _, err := c.conn.Write(c.wbuf); err != nil {
			c.werr = err
			c.wcond.Broadcast()
			c.conn.Close()
		}
	}
	c.wbuf = c.wbuf[:0]
	c.flushGen++
}

func appendFrameHeader(b []byte, length int, typ http2.FrameType, flags http2.Flags, id uint32) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), byte(typ), byte(flags),
		byte(id>>24)&0x7f, byte(id>>16), byte(id>>8), byte(id))
}

func appendSettings(b []byte, s [][2]uint32) []byte {
	b = appendFrameHeader(b, 6*len(s), http2.FrameSettings, 0, 0)
	for _, kv := range s {
		b = append(b, byte(kv[0]>>8), byte(kv[0]), byte(kv[1]>>24), byte(kv[1]>>16), byte(kv[1]>>8), byte(kv[1]))
	}
	return b
}

func appendWindowUpdate(b []byte, id, inc uint32) []byte {
	b = appendFrameHeader(b, 4, http2.FrameWindowUpdate, 0, id)
	return append(b, byte(inc>>24)&0x7f, byte(inc>>16), byte(inc>>8), byte(inc))
}

func appendRST(b []byte, id uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, 4, http2.FrameRSTStream, 0, id)
	return append(b, byte(code>>24), byte(code>>16), byte(code>>8), byte(code))
}

func appendGoAway(b []byte, last uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, 8, http2.FrameGoAway, 0, 0)
	return append(b, byte(last>>24)&0x7f, byte(last>>16), byte(last>>8), byte(last),
		byte(code>>24), byte(code>>16), byte(code>>8), byte(code))
}

var _ responder = (*h2stream)(nil)

var errNoUpgradeH2 = errors.New("edge: protocol upgrade over HTTP/2 is not supported")
