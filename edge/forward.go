package edge

import (
	"context"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeproxy/edge/edge/accesslog"
	"github.com/edgeproxy/edge/edge/message"
	"github.com/edgeproxy/edge/router"
	"github.com/edgeproxy/edge/upstream"
)

// responder is the downstream half of one request: what a codec (HTTP/1.1,
// HTTP/2, HTTP/3) offers the forwarding core. Calls come in order:
// informational*, writeHeader, (write | flush)*, writeTrailers?; or upgrade
// instead of writeHeader.
type responder interface {
	// informational sends a 1xx response other than 101.
	informational(status int, h *message.Header)
	// writeHeader sends the final status and headers. contentLength is -1
	// when unknown (the body is streamed) and -2 when no body follows
	// whatever the headers say (HEAD, 204, 304).
	writeHeader(status int, h *message.Header, contentLength int64)
	write(p []byte) (int, error)
	flush()
	// writeTrailers sends trailers after the body.
	writeTrailers(h *message.Header)
	// upgrade answers 101 with h and hands over the client connection.
	upgrade(h *message.Header) (io.ReadWriteCloser, error)
}

// copyBufPool holds body copy buffers; *[]byte so Put does not allocate.
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// exchange is the state of one request through the forwarding core.
type exchange struct {
	l     *listenerRuntime
	req   *message.Request
	rw    responder
	entry accesslog.Entry
	// aborted: the response was cut off after its head was sent; the codec
	// must reset the stream rather than end it cleanly.
	aborted bool
	// wroteHeader: a final status went downstream.
	wroteHeader bool
	respHdr     message.Header
	// onInformational is x.informational, bound once so that setting it on
	// each request does not allocate a closure.
	onInformational func(int, *message.Header)
}

var exchangePool = sync.Pool{New: func() any {
	x := new(exchange)
	x.onInformational = x.informational
	return x
}}

// serve runs one request through the connection manager, the router and
// the upstream, and writes the response to rw. It reports whether the
// response was aborted mid-body.
func (l *listenerRuntime) serve(ctx context.Context, req *message.Request, rw responder) (aborted bool) {
	x := exchangePool.Get().(*exchange)
	x.l, x.req, x.rw = l, req, rw
	e := &x.entry
	e.Start = time.Now()
	e.Method, e.Authority, e.Path = req.Method, req.Authority, req.Path
	e.Protocol = protocolName(req.ProtoMajor)
	e.Scheme = req.Scheme
	e.ListenerName = l.name
	e.Downstream = req.RemoteAddr
	e.RequestHeader = &req.Header
	e.ResponseHeader = &x.respHdr
	if req.ContentLength > 0 {
		e.BytesReceived = req.ContentLength
	}

	l.stats.rqTotal.Inc()
	l.stats.rqActive.Inc()
	x.route(ctx)
	l.stats.rqActive.Dec()
	l.stats.rqClass[statusClass(e.Status)].Inc()
	e.Duration = time.Since(e.Start)
	l.stats.rqTime.Observe(e.Duration)
	if l.accessLog != nil {
		l.accessLog.Log(e)
	}
	aborted = x.aborted
	x.respHdr.Reset()
	*e = accesslog.Entry{}
	x.l, x.req, x.rw, x.aborted, x.wroteHeader = nil, nil, nil, false, false
	exchangePool.Put(x)
	return aborted
}

func protocolName(major int) string {
	switch major {
	case 2:
		return "HTTP/2"
	case 3:
		return "HTTP/3"
	}
	return "HTTP/1.1"
}

func statusClass(code int) int {
	if code < 100 || code > 599 {
		return 0
	}
	return code/100 - 1
}

// route applies the header policy and the route table and dispatches.
func (x *exchange) route(ctx context.Context) {
	req, l := x.req, x.l
	fw := sanitize(req, l.trustedHops, l.peerMustVerify)
	upgrade := req.ProtoMajor == 1 && isUpgradeRequest(&req.Header)
	removeHopByHop(&req.Header, upgrade)
	req.Header.Del("expect") // the body is sent at once; the downstream codec answers 100-continue when the body is first read

	if len(l.acme) > 0 && req.Method == "GET" && x.acmeChallenge() {
		return
	}
	vh, rt := l.table.Match(req.Authority, req.Path, &req.Header)
	if vh == nil || rt == nil {
		x.entry.Flags |= accesslog.NoRoute
		x.local(404, nil, nil, "")
		return
	}
	if vh.RequiresRedirectToTLS(req.TLS, !fw.internal) {
		x.local(301, vh, rt, router.HTTPSLocation(req.Authority, req.Path))
		return
	}
	x.entry.RouteName = rt.Name
	switch rt.Kind {
	case router.Redirect:
		x.local(rt.RedirectCode(), vh, rt, rt.RedirectLocation(req.Scheme, req.Authority, req.Path))
	case router.DirectResponse:
		x.direct(vh, rt)
	default:
		x.forward(ctx, vh, rt, upgrade)
	}
}

// local answers from edge itself with an empty body, or a redirect.
func (x *exchange) local(status int, vh *router.VirtualHost, rt *router.Route, location string) {
	h := &x.respHdr
	if location != "" {
		h.Add("location", location)
	}
	if rt != nil {
		x.l.table.MutateResponse(h, vh, rt)
	}
	h.Add("content-length", "0")
	x.writeHeader(status, 0)
}

func (x *exchange) direct(vh *router.VirtualHost, rt *router.Route) {
	h := &x.respHdr
	if rt.Body != "" {
		h.Add("content-type", "text/plain; charset=utf-8")
	}
	h.Add("content-length", strconv.Itoa(len(rt.Body)))
	x.l.table.MutateResponse(h, vh, rt)
	x.writeHeader(rt.Status, int64(len(rt.Body)))
	if x.req.Method != "HEAD" && rt.Body != "" {
		n, _ := io.WriteString(responderWriter{x.rw}, rt.Body)
		x.entry.BytesSent += int64(n)
	}
}

// errorReply answers with a short text body describing a failure.
func (x *exchange) errorReply(status int, msg string) {
	x.respHdr.Reset()
	x.errorReplyKeep(status, msg)
}

// errorReplyKeep is errorReply keeping the headers already in respHdr.
func (x *exchange) errorReplyKeep(status int, msg string) {
	h := &x.respHdr
	h.Add("content-type", "text/plain; charset=utf-8")
	h.Add("content-length", strconv.Itoa(len(msg)+1))
	x.writeHeader(status, int64(len(msg)+1))
	if x.req.Method != "HEAD" {
		n, _ := io.WriteString(responderWriter{x.rw}, msg+"\n")
		x.entry.BytesSent += int64(n)
	}
}

func (x *exchange) writeHeader(status int, contentLength int64) {
	if x.l.altSvc != "" && x.req.ProtoMajor < 3 {
		// The listener also serves HTTP/3: say so on every HTTP/1.1 and
		// HTTP/2 response (forwarded, local and direct alike).
		x.respHdr.Add("alt-svc", x.l.altSvc)
	}
	x.entry.Status = status
	x.wroteHeader = true
	x.rw.writeHeader(status, &x.respHdr, contentLength)
}

// forward sends the request to a host of the route's cluster and streams
// the response back.
func (x *exchange) forward(ctx context.Context, vh *router.VirtualHost, rt *router.Route, upgrade bool) {
	req, l := x.req, x.l
	ci := rt.PickCluster(rand.Uint64())
	cl := l.clusters[ci]
	x.entry.UpstreamCluster = cl.up.Name

	if p := rt.RewritePath(req.Path); p != req.Path {
		req.Header.Set(hdrOriginalPath, req.Path)
		req.Path = p
	}
	if rt.HostRewrite != "" {
		req.Authority = rt.HostRewrite
	}
	l.table.MutateRequest(&req.Header, vh, rt)

	start := time.Now()
	p := x.plan(rt, start)
	req.OnInformational = x.onInformational
	res := x.tries(ctx, cl, &p)
	req.OnInformational = nil
	if res.err != nil {
		x.upstreamError(ctx, cl, res.err, res.overallTimeout)
		return
	}
	resp, host := res.resp, res.host
	x.entry.UpstreamServiceTime = time.Since(start)
	cl.rqClass[statusClass(resp.Status)].Inc()
	if resp.Status == 101 && resp.Upgraded != nil {
		// An upgrade's response ends with its head; the tunnel is not
		// part of the request's time.
		cl.stats.rqTime.Observe(time.Since(res.start))
		x.tunnel(resp, vh, rt)
		return
	}
	x.respond(ctx, resp, vh, rt)
	cl.stats.rqTime.Observe(time.Since(res.start))
	host.Release(resp)
}

func (x *exchange) informational(status int, h *message.Header) {
	if status == 100 {
		return // the codec sends its own 100 Continue when the body is first read
	}
	x.rw.informational(status, h)
}

// upstreamError maps a failed round trip to a local reply, in one place.
// overallTimeout says the route timeout (not a per-try one) expired.
func (x *exchange) upstreamError(ctx context.Context, cl *clusterRuntime, err error, overallTimeout bool) {
	kind := upstream.Classify(err).Kind
	switch {
	case kind == upstream.NoHost:
		x.entry.Flags |= accesslog.NoHealthyUpstream
		cl.rqClass[4].Inc()
		x.errorReply(503, "no healthy upstream")
		return
	case kind == upstream.Overflow:
		// A circuit breaker refused the request: answer at once, as Envoy.
		x.entry.Flags |= accesslog.UpstreamOverflow
		cl.rqClass[4].Inc()
		x.respHdr.Reset()
		x.respHdr.Add(hdrOverloaded, "true")
		x.errorReplyKeep(503, "upstream overloaded")
		return
	case kind == upstream.Canceled || ctx.Err() != nil:
		// The client went away: not the upstream's fault (499, as nginx).
		x.entry.Flags |= accesslog.DownstreamConnectionTermination
		x.entry.Status = 499
	case kind == upstream.Timeout:
		x.entry.Flags |= accesslog.UpstreamRequestTimeout
		if overallTimeout {
			cl.stats.rqTimeout.Inc()
		}
		cl.rqClass[4].Inc() // 504
		x.errorReply(504, "upstream request timeout")
	case kind == upstream.ConnectFailure:
		x.entry.Flags |= accesslog.UpstreamConnectionFailure
		cl.rqClass[4].Inc()
		x.errorReply(503, "upstream connect error: connection failure")
	case kind == upstream.Reset || kind == upstream.RefusedStream:
		x.entry.Flags |= accesslog.UpstreamConnectionTermination
		cl.rqClass[4].Inc()
		x.errorReply(503, "upstream reset before response headers")
	case kind == upstream.RequestBody:
		// Reading the client's body failed: the client's fault.
		x.entry.Flags |= accesslog.DownstreamConnectionTermination
		x.errorReply(400, "request body could not be read")
	default:
		x.entry.Flags |= accesslog.UpstreamProtocolError
		cl.rqClass[4].Inc() // 502
		x.errorReply(502, "upstream sent an invalid response")
	}
	x.l.logger.Debug("upstream request failed", "listener", x.l.name, "cluster", cl.up.Name, "upstream", x.entry.UpstreamHost, "err", err)
}

// respond streams an upstream response downstream.
func (x *exchange) respond(ctx context.Context, resp *message.Response, vh *router.VirtualHost, rt *router.Route) {
	defer resp.Body.Close()
	h := &x.respHdr
	h.CopyFrom(&resp.Header)
	removeHopByHop(h, false)
	x.l.table.MutateResponse(h, vh, rt)
	cl := resp.ContentLength
	if x.req.Method == "HEAD" || resp.Status == 204 || resp.Status == 304 {
		cl = -2 // no body follows, whatever the headers say
	}
	x.writeHeader(resp.Status, cl)
	if cl == -2 {
		return
	}

	// Stream: flush after every read unless the length is known and the
	// content is not a stream (server-sent events, gRPC).
	streaming := resp.ContentLength < 0 || isStreamingType(resp.Header.Get("content-type"))
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			w, werr := x.rw.write(buf[:n])
			x.entry.BytesSent += int64(w)
			if werr != nil {
				x.entry.Flags |= accesslog.DownstreamConnectionTermination
				x.aborted = true
				return
			}
			if streaming {
				x.rw.flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if ue := upstream.Classify(rerr); ue != nil && ue.Kind == upstream.Timeout {
				x.entry.Flags |= accesslog.UpstreamRequestTimeout
			} else {
				x.entry.Flags |= accesslog.UpstreamConnectionTermination
			}
			x.aborted = true
			return
		}
	}
	if resp.Trailer.Len() > 0 {
		x.rw.writeTrailers(&resp.Trailer)
	}
}

func isStreamingType(ct string) bool {
	return hasPrefixFold(ct, "text/event-stream") || hasPrefixFold(ct, "application/grpc")
}

func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// tunnel completes a protocol upgrade (WebSocket) and copies bytes both
// ways until either side closes.
func (x *exchange) tunnel(resp *message.Response, vh *router.VirtualHost, rt *router.Route) {
	up := resp.Upgraded
	defer up.Close()
	h := &x.respHdr
	h.CopyFrom(&resp.Header)
	x.l.table.MutateResponse(h, vh, rt)
	x.entry.Status = 101
	x.wroteHeader = true
	down, err := x.rw.upgrade(h)
	if err != nil {
		x.entry.Flags |= accesslog.DownstreamConnectionTermination
		return
	}
	defer down.Close()
	done := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(up, down)
		if cw, ok := up.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		done <- n
	}()
	n, _ := io.Copy(down, up)
	x.entry.BytesSent += n
	down.Close()
	up.Close()
	x.entry.BytesReceived += <-done
}

// responderWriter adapts a responder to io.Writer.
type responderWriter struct{ rw responder }

func (w responderWriter) Write(p []byte) (int, error) { return w.rw.write(p) }

// acmeChallenge answers an ACME HTTP-01 challenge for a managed domain on a
// plain-HTTP listener, before routing (so redirects to HTTPS do not get in
// the way). It reports whether it answered.
func (x *exchange) acmeChallenge() bool {
	path, _, _ := strings.Cut(x.req.Path, "?")
	for _, m := range x.l.acme {
		if body, ok := m.HTTPChallenge(x.req.Authority, path); ok {
			h := &x.respHdr
			h.Add("content-type", "text/plain")
			h.Add("content-length", strconv.Itoa(len(body)))
			x.writeHeader(200, int64(len(body)))
			n, _ := io.WriteString(responderWriter{x.rw}, body)
			x.entry.BytesSent += int64(n)
			return true
		}
	}
	return false
}
