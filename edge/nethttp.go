package edge

import (
	"errors"
	"io"
	"net/http"
	"net/netip"
	"sync"

	"github.com/edgeproxy/edge/edge/message"
)

// This file adapts net/http's handler interface, which quic-go's HTTP/3
// server calls, to the forwarding core's message types. HTTP/1.1 and
// HTTP/2 are edge's own codecs (h1conn.go, h2conn.go).

var requestPool = sync.Pool{New: func() any { return new(message.Request) }}

// ServeHTTP converts an HTTP/3 request from quic-go into a message.Request,
// runs it through the forwarding core and resets the stream if the core
// says the response was cut off.
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
	req.SetTLS(r.TLS)
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
		// Tell the server to reset the stream instead of ending a
		// truncated response as if it were complete.
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

// upgrade fails: HTTP/3 has no connection-level upgrade, and the core only
// asks for one on HTTP/1.1 requests.
func (h *httpResponder) upgrade(*message.Header) (io.ReadWriteCloser, error) {
	return nil, errNoUpgradeH3
}

var errNoUpgradeH3 = errors.New("edge: protocol upgrade over HTTP/3 is not supported")

var _ http.Handler = (*listenerRuntime)(nil)
var _ responder = (*httpResponder)(nil)
