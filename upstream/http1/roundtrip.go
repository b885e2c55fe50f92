package http1

import (
	"context"

	"github.com/edgeproxy/edge/edge/message"
)

// roundTrip is the per-request state, pooled in Pool.rts. RoundTrip returns
// &rt.resp; the response body is &rt.body.
type roundTrip struct {
	p *Pool
	// ctx is the round trip's context, kept until the body is done so that
	// body read errors are classified against it.
	ctx      context.Context
	resp     message.Response
	body     body
	h        head
	bodyRead bool // the request body has been read from
}

// reset prepares rt for a round trip on p.
func (rt *roundTrip) reset(p *Pool) {
	rt.p = p
	rt.ctx = nil
	rt.resp.Header.Reset()
	rt.resp.Trailer.Reset()
	rt.resp.Status, rt.resp.ContentLength, rt.resp.Upgraded = 0, 0, nil
	rt.body = body{rt: rt}
	rt.resp.Body = &rt.body
	rt.bodyRead = false
}

// clear drops everything rt references before it goes back to the pool.
func (rt *roundTrip) clear() {
	rt.ctx = nil
	rt.resp.Header.Reset()
	rt.resp.Trailer.Reset()
	rt.resp.Body, rt.resp.Upgraded = nil, nil
	rt.body = body{}
}

// exchange writes req on c and reads the response head. On error c has
// been closed; on success c belongs to the response body (or, upgraded, to
// the caller), or is already back in the pool.
func (rt *roundTrip) exchange(ctx context.Context, c *conn, req *message.Request) (*message.Response, *Error) {
	c.served++
	c.nread, c.nwritten = 0, 0
	rt.ctx = ctx
	c.watch(ctx, req.Deadline)
	if e := rt.writeRequest(c, req); e != nil {
		if e.Kind == Reset && c.nwritten > 0 {
			// The upstream may have answered before taking the whole
			// body and closed (e.g. 413): its response is worth more to
			// the client than the write error.
			if resp, e2 := rt.readResponse(c, req, false); e2 == nil {
				return resp, nil
			}
		}
		c.abandon()
		return nil, e
	}
	resp, e := rt.readResponse(c, req, true)
	if e != nil {
		c.abandon()
		return nil, e
	}
	return resp, nil
}

// readResponse reads the response head, passing 1xx heads to
// req.OnInformational, and sets up the body. reusable is false if c must
// not carry another request whatever the response says.
func (rt *roundTrip) readResponse(c *conn, req *message.Request, reusable bool) (*message.Response, *Error) {
	resp := &rt.resp
	h := &rt.h
	for n := 0; ; n++ {
		if n > maxInformational {
			return nil, classify(rt.ctx, "read response head", errTooManyInfo, true)
		}
		if err := c.readHead(h, &resp.Header, req.OnInformational != nil); err != nil {
			return nil, classify(rt.ctx, "read response head", err, true)
		}
		if h.status >= 200 || h.status == 101 {
			break
		}
		if req.OnInformational != nil {
			req.OnInformational(h.status, &resp.Header)
		}
		resp.Header.Reset()
	}
	resp.Status = h.status
	if h.teSeen && h.clSeen {
		// RFC 9112 §6.3 rule 3: a likely smuggling attempt.
		return nil, classify(rt.ctx, "read response head", errTEAndCL, true)
	}
	if h.teSeen && (h.minor == 0 || !h.chunked) {
		if h.minor == 0 {
			return nil, classify(rt.ctx, "read response head", errTE10, true)
		}
		return nil, classify(rt.ctx, "read response head", errTE, true)
	}
	b := &rt.body
	if h.status == 101 {
		if !isUpgrade(req) {
			return nil, classify(rt.ctx, "read response head", errUnexpected101, true)
		}
		// The connection leaves the pool and the context's reach.
		if !c.unwatch() {
			return nil, classify(rt.ctx, "read response head", context.Canceled, true)
		}
		resp.Upgraded = &upgraded{c: c}
		rt.ctx = nil
		return resp, nil
	}
	keep := reusable && !h.connClose && (h.minor >= 1 || h.keepAlive)
	switch {
	case req.Method == "HEAD" || h.status == 204 || h.status == 304:
		b.mode = bodyNone
	case h.chunked:
		b.mode = bodyChunked
		resp.ContentLength = -1
	case h.clSeen:
		b.mode = bodyLength
		b.remaining = h.cl
		resp.ContentLength = h.cl
		if h.cl == 0 {
			b.mode = bodyNone
		}
	default:
		// RFC 9112 §6.3 rule 8: the body ends when the connection does.
		b.mode = bodyUntilClose
		resp.ContentLength = -1
		keep = false
	}
	b.c = c
	b.reusable = keep
	if b.mode == bodyNone {
		b.finish(true)
	}
	return resp, nil
}
