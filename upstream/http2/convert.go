package http2

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/edgeproxy/edge/edge/message"
)

// newRequest converts req into the *http.Request x/net sends. body is the
// request body wrapper, nil when there is no body.
func (p *Pool) newRequest(ctx context.Context, req *message.Request) (*http.Request, *requestBody) {
	fields := req.Header.Fields()
	h := make(http.Header, len(fields)+1)
	var declared []string // trailer names announced by a trailer field
	// One backing array for all single-valued fields (most of them), as
	// x/net does for responses; the extra slot is for user-agent.
	strs := make([]string, len(fields)+1)
	for _, f := range fields {
		if skipRequestField(f) {
			continue
		}
		if f.Name == "trailer" {
			// x/net announces trailers itself from Request.Trailer's keys.
			declared = append(declared, f.Value)
			continue
		}
		if vv, ok := h[f.Name]; ok {
			h[f.Name] = append(vv, f.Value)
			continue
		}
		vv := strs[:1:1]
		strs = strs[1:]
		vv[0] = f.Value
		h[f.Name] = vv
	}
	if _, ok := h["user-agent"]; !ok {
		// x/net adds Go's default User-Agent unless one is present; an
		// empty value suppresses it, and a proxy must not invent one.
		h["user-agent"] = strs[:1:1]
	}

	// One allocation for the request, its URL and its body wrapper.
	out := &outRequest{}
	u := &out.url
	u.Scheme, u.Host = p.scheme, req.Authority
	path, query, hasQuery := strings.Cut(req.Path, "?")
	if strings.HasPrefix(path, "//") {
		// URL.RequestURI would read "//x" as a scheme-relative URL; x/net
		// strips the scheme and authority back off this form.
		u.Opaque = "//" + req.Authority + path
	} else {
		u.Opaque = path
	}
	u.RawQuery = query
	u.ForceQuery = hasQuery && query == ""

	hreq := &out.req
	*hreq = http.Request{
		Method:     req.Method,
		URL:        u,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     h,
		Host:       req.Authority,
	}
	var body *requestBody
	if req.Body != nil && req.ContentLength != 0 {
		body = &out.body
		body.r, body.msg = req.Body, req
		hreq.Body = body
		hreq.ContentLength = req.ContentLength
		if req.ContentLength < 0 || req.Trailer.Len() > 0 || declared != nil {
			hreq.Trailer = requestTrailer(req, declared)
		}
	}
	if req.OnInformational != nil {
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			Got1xxResponse: func(code int, mh textproto.MIMEHeader) error {
				var info message.Header
				for k, vv := range mh {
					name := message.LowerName(k)
					for _, v := range vv {
						info.Add(name, v)
					}
				}
				req.OnInformational(code, &info)
				return nil
			},
		})
	}
	hreq = hreq.WithContext(ctx)
	if body != nil {
		// The body hands trailers to the request x/net actually reads.
		body.hreq = hreq
	}
	return hreq, body
}

// outRequest holds what newRequest builds, in one allocation.
type outRequest struct {
	req  http.Request
	url  url.URL
	body requestBody
}

// requestTrailer returns the Trailer map x/net announces and sends. A body
// of unknown length may end with trailers (gRPC client streams), so a
// non-nil Trailer makes x/net send END_STREAM only after the body, with
// the trailers the body wrapper copies in at EOF, or an empty DATA frame
// if there are none. Peers such as Go's server keep only trailers that were
// announced, so the names known now are announced: those of a trailer field
// and those already in req.Trailer.
func requestTrailer(req *message.Request, declared []string) http.Header {
	t := make(http.Header)
	for _, v := range declared {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if !skipTrailerField(name) {
				t[name] = nil
			}
		}
	}
	for _, f := range req.Trailer.Fields() {
		if !skipTrailerField(f.Name) {
			t[f.Name] = nil
		}
	}
	return t
}

// skipRequestField reports whether f must not be sent on an HTTP/2
// stream: connection-specific fields (RFC 9113 §8.2.2), fields x/net
// derives itself (host, content-length) and stray pseudo-headers.
func skipRequestField(f message.Field) bool {
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding",
		"upgrade", "host", "content-length", "http2-settings":
		return true
	case "te":
		// The only TE value HTTP/2 allows; gRPC needs it.
		return !strings.EqualFold(strings.TrimSpace(f.Value), "trailers")
	}
	return f.Name == "" || f.Name[0] == ':'
}

// requestBody feeds a message body to x/net and hands it the request's
// trailers when the body ends.
type requestBody struct {
	r     io.Reader
	msg   *message.Request
	hreq  *http.Request
	reads atomic.Bool
}

// touched reports whether any of the body was read (and so may have been
// sent).
func (b *requestBody) touched() bool { return b.reads.Load() }

func (b *requestBody) Read(p []byte) (int, error) {
	if !b.reads.Load() {
		b.reads.Store(true)
	}
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		return n, &requestBodyError{err}
	}
	if err == io.EOF && b.hreq.Trailer != nil {
		for k := range b.hreq.Trailer {
			b.hreq.Trailer[k] = nil // keep announced names; drop values of an earlier EOF
		}
		for _, f := range b.msg.Trailer.Fields() {
			if skipTrailerField(f.Name) {
				continue
			}
			b.hreq.Trailer[f.Name] = append(b.hreq.Trailer[f.Name], f.Value)
		}
	}
	return n, err
}

// Close does nothing: the message body belongs to the caller.
func (b *requestBody) Close() error { return nil }

// skipTrailerField reports whether name may not appear in trailers (RFC
// 9110 §6.5.1: framing, routing and connection fields).
func skipTrailerField(name string) bool {
	switch name {
	case "content-length", "transfer-encoding", "host", "te", "trailer",
		"connection", "keep-alive", "proxy-connection", "upgrade":
		return true
	}
	return name == "" || name[0] == ':'
}

// response holds a converted response and its body wrapper in one
// allocation.
type response struct {
	msg  message.Response
	body responseBody
}

// newResponse converts x/net's response; c's stream count drops when the
// body ends.
func newResponse(c *conn, hresp *http.Response, cancel context.CancelFunc) *message.Response {
	r := &response{}
	r.msg.Status = hresp.StatusCode
	r.msg.ContentLength = hresp.ContentLength
	for k, vv := range hresp.Header {
		name := message.LowerName(k)
		for _, v := range vv {
			r.msg.Header.Add(name, v)
		}
	}
	if len(hresp.Trailer) > 0 {
		// x/net moves the trailer field into Response.Trailer's keys; put
		// the announcement back so that the caller can declare the
		// trailers downstream before writing the header.
		var b strings.Builder
		for k := range hresp.Trailer {
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(message.LowerName(k))
		}
		r.msg.Header.Add("trailer", b.String())
	}
	r.body = responseBody{hresp: hresp, c: c, msg: &r.msg, cancel: cancel}
	r.msg.Body = &r.body
	return &r.msg
}

// responseBody copies trailers into the message at EOF and ends the
// stream's count on its connection at EOF, error or Close, once.
type responseBody struct {
	hresp *http.Response
	c     *conn
	msg   *message.Response
	done  atomic.Bool
	// cancel, if not nil, ends the context made for the request's deadline.
	cancel context.CancelFunc
}

func (b *responseBody) Read(p []byte) (int, error) {
	n, err := b.hresp.Body.Read(p)
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		// x/net fills Response.Trailer before the body reports EOF.
		for k, vv := range b.hresp.Trailer {
			name := message.LowerName(k)
			for _, v := range vv {
				b.msg.Trailer.Add(name, v)
			}
		}
		b.finish()
		return n, io.EOF
	default:
		b.finish()
		return n, classify(err, true)
	}
}

// Close ends the stream (with RST_STREAM CANCEL if the body was not read
// to the end).
func (b *responseBody) Close() error {
	b.hresp.Body.Close()
	b.finish()
	return nil
}

func (b *responseBody) finish() {
	if b.done.CompareAndSwap(false, true) {
		b.c.release()
		if b.cancel != nil {
			b.cancel()
		}
	}
}
