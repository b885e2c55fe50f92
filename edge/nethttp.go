package edge

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"

	"github.com/edgeproxy/edge/edge/message"
)

// This file is the first downstream codec: net/http's server (HTTP/1.1,
// HTTP/2 over TLS, and cleartext HTTP/2 with prior knowledge) adapted to the
// forwarding core's message types. It can be replaced by edge's own codecs
// without touching forward.go, the router or upstream.

func (l *listenerRuntime) newHTTPServer() *http.Server {
	lc := l.cfg
	srv := &http.Server{
		Handler:           l,
		ReadHeaderTimeout: lc.Timeouts.RequestHeaders.D(),
		IdleTimeout:       lc.Timeouts.Idle.D(),
		MaxHeaderBytes:    int(lc.Limits.MaxRequestHeaderBytes),
		ConnState:         l.connState,
		ErrorLog:          slog.NewLogLogger(l.logger.Handler(), slog.LevelDebug),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: lc.Limits.MaxConcurrentStreams,
		},
	}
	var p http.Protocols
	for _, proto := range lc.Protocols {
		switch proto {
		case "http1":
			p.SetHTTP1(true)
		case "http2":
			if lc.TLS != nil {
				p.SetHTTP2(true)
			} else {
				p.SetUnencryptedHTTP2(true)
			}
		}
	}
	srv.Protocols = &p
	if l.tlsConfig != nil {
		srv.TLSConfig = l.tlsConfig
	}
	return srv
}

func (l *listenerRuntime) connState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		l.stats.cxTotal.Inc()
		l.stats.cxActive.Inc()
	case http.StateClosed, http.StateHijacked:
		l.stats.cxActive.Dec()
	}
}

var requestPool = sync.Pool{New: func() any { return new(message.Request) }}

// ServeHTTP converts a net/http request into a message.Request, runs it
// through the forwarding core and aborts the stream if the core says so.
func (l *listenerRuntime) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := requestPool.Get().(*message.Request)
	defer func() { req.Reset(); requestPool.Put(req) }()

	nfields := 0
	for _, vs := range r.Header {
		nfields += len(vs)
	}
	if nfields > l.maxHeaders {
		http.Error(w, "too many request headers", http.StatusRequestHeaderFieldsTooLarge)
		return
	}
	req.Method = r.Method
	req.Authority = r.Host
	req.Path = r.RequestURI
	if req.Path == "" || req.Path[0] != '/' {
		// Absolute-form (proxy requests) and authority-form targets are
		// reduced to origin form; "*" (OPTIONS) is kept.
		if req.Path != "*" {
			req.Path = r.URL.RequestURI()
		}
	}
	req.ProtoMajor = r.ProtoMajor
	req.TLS = r.TLS != nil
	req.Scheme = "http"
	if req.TLS {
		req.Scheme = "https"
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		req.RemoteAddr = ap
	}
	for name, vs := range r.Header {
		lname := message.LowerName(name)
		if lname == hdrContentLen {
			continue // framing is the upstream client's job
		}
		for _, v := range vs {
			req.Header.Add(lname, v)
		}
	}
	req.ContentLength = r.ContentLength
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		req.Body = r.Body
	} else {
		req.ContentLength = 0
	}

	rw := responderPool.Get().(*httpResponder)
	rw.w, rw.r, rw.proto = w, r, r.ProtoMajor
	aborted := l.serve(r.Context(), req, rw)
	rw.w, rw.r = nil, nil
	responderPool.Put(rw)
	if aborted {
		// Tell net/http to reset the stream (HTTP/2) or close the
		// connection (HTTP/1.1) instead of ending a truncated response as
		// if it were complete.
		panic(http.ErrAbortHandler)
	}
}

// httpResponder writes the forwarding core's response through net/http.
type httpResponder struct {
	w     http.ResponseWriter
	r     *http.Request
	proto int
}

var responderPool = sync.Pool{New: func() any { return new(httpResponder) }}

func (h *httpResponder) setHeader(dst http.Header, src *message.Header, prefix string) {
	fields := src.Fields()
	// One backing array for every value: net/http wants a []string per
	// name, and allocating one per field would cost an allocation each.
	vals := make([]string, len(fields))
	for i, f := range fields {
		k := message.CanonicalName(f.Name)
		if prefix != "" {
			k = prefix + k
		}
		if old, ok := dst[k]; ok {
			dst[k] = append(old, f.Value)
			continue
		}
		vals[i] = f.Value
		dst[k] = vals[i : i+1 : i+1]
	}
}

func (h *httpResponder) informational(status int, hdr *message.Header) {
	dst := h.w.Header()
	h.setHeader(dst, hdr, "")
	h.w.WriteHeader(status)
	clear(dst)
}

func (h *httpResponder) writeHeader(status int, hdr *message.Header, contentLength int64) {
	dst := h.w.Header()
	h.setHeader(dst, hdr, "")
	if _, ok := dst["Content-Type"]; !ok {
		dst["Content-Type"] = nil // no content sniffing: a proxy passes bodies as they are
	}
	if contentLength == -1 {
		delete(dst, "Content-Length") // streamed: chunked (HTTP/1.1) or DATA frames until END_STREAM
	}
	h.w.WriteHeader(status)
}

func (h *httpResponder) write(p []byte) (int, error) { return h.w.Write(p) }

func (h *httpResponder) flush() {
	if f, ok := h.w.(http.Flusher); ok {
		f.Flush()
	}
}

func (h *httpResponder) writeTrailers(hdr *message.Header) {
	h.setHeader(h.w.Header(), hdr, http.TrailerPrefix)
}

func (h *httpResponder) upgrade(hdr *message.Header) (io.ReadWriteCloser, error) {
	conn, brw, err := http.NewResponseController(h.w).Hijack()
	if err != nil {
		return nil, err
	}
	bw := brw.Writer
	bw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	for _, f := range hdr.Fields() {
		bw.WriteString(f.Name)
		bw.WriteString(": ")
		bw.WriteString(f.Value)
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		conn.Close()
		return nil, err
	}
	return &hijacked{Conn: conn, r: brw.Reader}, nil
}

// hijacked is a client connection taken over for an upgrade; reads drain
// what net/http already buffered first.
type hijacked struct {
	net.Conn
	r *bufio.Reader
}

func (c *hijacked) Read(p []byte) (int, error) {
	if c.r != nil && c.r.Buffered() > 0 {
		return c.r.Read(p)
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the client side when the upstream finishes.
func (c *hijacked) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

var _ http.Handler = (*listenerRuntime)(nil)
var _ responder = (*httpResponder)(nil)
