// Package http1 is edge's synchronous, pooled HTTP/1.1 client for upstream
// connections.
//
// # Model
//
// A Pool serves one upstream endpoint (Options.Addr), cleartext or TLS. The
// goroutine that calls RoundTrip does all the work itself: it takes an idle
// connection (or dials one), writes the request head with one buffered
// write, writes the body, and parses the response head; the response body
// then streams from the connection as the caller reads it. There are no
// background goroutines per connection or per request and no channel
// hand-offs, which is what makes this client cheaper than http.Transport
// (see DESIGN.md, "Performance architecture"). One connection carries one
// request at a time; there is no pipelining.
//
// Requests are edge's message.Request. The pool writes the request line,
// "host: " from Authority, then Header as it is (the caller has already
// removed hop-by-hop fields), and sets the framing itself: content-length
// for ContentLength > 0 (exactly that many body bytes are sent, or the
// round trip fails with Kind RequestBody), transfer-encoding: chunked for
// ContentLength -1 (one chunk per body read, flushed at once, then
// Request.Trailer), and content-length: 0 for a bodyless POST, PUT or
// PATCH. ContentLength 0 means no body: Body is not read. "expect: 100-continue" is passed on but not waited for: the body
// is sent right away, which RFC 9110 §10.1.1 allows; a 100 response is
// reported to OnInformational like any other 1xx except 101.
//
// Responses are parsed by the package's own strict parser: limits on head
// size and field count, obs-fold rejected, control characters in values
// rejected, framing per RFC 9112 §6.3 (no body for HEAD, 1xx, 204 and 304;
// chunked; Content-Length, identical repeats allowed, differing ones
// rejected; Transfer-Encoding together with Content-Length rejected as a
// smuggling attempt; otherwise the body runs until the connection closes).
// Field names are lower case; nothing is removed from Response.Header.
// Response.ContentLength is the number of body bytes that follow: 0 for
// HEAD, 204 and 304 responses (whatever content-length says), -1 for
// chunked and close-delimited bodies.
//
// The request is written completely before the response is read. So an
// upstream that streams its response while it is still reading a large
// request body can stall until the context deadline; a response sent
// before the body was fully written is still returned if the write then
// fails because the upstream closed the connection (e.g. an early 413).
//
// # Timeouts and cancellation
//
// ctx bounds the round trip and also later reads of Response.Body: its
// deadline becomes the connection's deadline, and its cancellation
// (context.AfterFunc, no goroutine of ours) sets a deadline in the past,
// which interrupts a blocked read or write. When the body ends, both are
// undone before the connection goes back to the pool; a connection whose
// cancellation callback already ran is closed instead. Options.ConnectTimeout
// bounds the dial and TLS handshake only. Upgraded connections are released
// from ctx: the caller sets their deadlines.
//
// # Ownership
//
// The caller owns the returned Response until it calls Pool.Release, which
// is optional: Release recycles the Response, its Body and its header
// storage for a later round trip, and without it the garbage collector
// reclaims them. After Release nothing reachable from the Response may be
// used, except strings already read from it (they are immutable). The
// Body must be closed. Its connection returns to the pool when the Body
// has returned io.EOF (the last bytes come with io.EOF where the framing
// allows, so reading exactly the body is enough); closing it before EOF
// closes the connection, unless the rest of a content-length body is
// already in the read buffer, in which case it is discarded and the
// connection reused. Response.Trailer is filled when the Body returns
// io.EOF. Body is not safe for concurrent use; cancel ctx to interrupt a
// blocked Read.
//
// After a 101 response to a request carrying upgrade and connection:
// upgrade, Response.Upgraded is the connection itself (a net.Conn that
// also has CloseWrite), starting with any bytes the server sent after the
// 101 head. It never returns to the pool; the caller must Close it, which
// reports OnConnClose.
//
// # What is reused
//
// Connections (a LIFO stack, most recently used first, at most
// Options.MaxIdle, expiring after Options.IdleTimeout: checked on reuse, on
// every return to the pool, and by one timer per pool while idle
// connections exist), their read and write buffers and head-parsing
// buffers, and the per-request state (Response, Body) through Release. In
// steady state a round trip allocates one string (the response's header
// block, from which every field name and value is sliced), one more for a
// trailer section, and two for context.AfterFunc when ctx can be canceled.
//
// # Stale connections and the retry-once rule
//
// Before an idle connection is reused, it is checked without blocking:
// recv with MSG_PEEK|MSG_DONTWAIT on its TCP socket (under TLS too). A
// connection the server has closed, or on which it sent anything
// unsolicited (such as a 408), is closed and the next one tried. The check
// needs the socket: a connection from Options.Dial must be a syscall.Conn
// or expose one through a NetConn() net.Conn method (as tls.Conn does);
// an opaque one is assumed alive, as on platforms without the peek.
//
// The server can still close a connection just as a request is sent on it
// (the keep-alive race). So if a request fails on a reused connection with
// Kind Reset before any response byte arrived and before any byte of the
// request body was read, RoundTrip retries it once, on a newly dialed
// connection, and the caller sees only the second attempt. Unlike
// http.Transport, which retries a request that reached the socket only if
// it is idempotent, this applies to every method: in the race the server
// closed before reading the request. A server that read a request and then
// closed without sending a single response byte may see it twice; given
// the peek, that is rare enough to be worth the failures saved.
//
// # Errors
//
// Every error RoundTrip returns, and every failed Body read, is an *Error
// whose Kind (ConnectFailure, Reset, Timeout, Canceled, Protocol,
// RequestBody, Overflow) and Sent flag let the caller choose retries and
// status codes.
//
// # Connection limit
//
// Options.Limit (package upstream's circuit breaker) bounds the
// connections of several pools together. A request that finds no idle
// connection dials only if the limit has room; otherwise it becomes one of
// the limit's pending requests and waits, in FIFO order per pool, for a
// connection of its pool to be released to it (handed over without
// passing through the idle stack) or for room freed anywhere in the group
// (then it dials), until its context ends (Timeout or Canceled). When the
// pending queue is full it fails at once with Kind Overflow. A pool with
// no connection at all always dials one, over the limit if need be, so
// that its requests never wait behind other pools' connections. Without a
// Limit nothing is bounded and nothing changes on the request path.
//
// # Non-goals
//
// Pipelining, CONNECT, HTTP/1.0 requests, transfer codings other than
// chunked, decompression, proxies, cookies and redirects.
package http1
