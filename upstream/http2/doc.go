// Package http2 is edge's HTTP/2 connection pool to one upstream endpoint,
// cleartext (h2c with prior knowledge) or TLS (ALPN h2 required), built on
// golang.org/x/net/http2's ClientConn.
//
// # Model
//
// A Pool keeps up to ConnectionsPerHost connections to one address and
// spreads streams over them. It does not use x/net's ClientConnPool, whose
// first-fit packing puts every stream on the first connection until the
// peer's stream limit is reached; one connection's write lock and flow
// control then cap throughput (golang/go#37373, #47840).
//
// Picking a connection, per request:
//
//   - Take the live connection with the fewest active streams (edge's own
//     atomic count per connection; ties go to the oldest).
//   - If it has no active stream, or the pool is at ConnectionsPerHost
//     live connections, use it.
//   - Otherwise every connection is busy. If live plus dialing connections
//     are fewer than ConnectionsPerHost, start a dial in the background.
//     Then use the least loaded live connection, unless a dial in progress
//     has fewer requests waiting for it than that connection has streams:
//     then wait for that dial. With no live connection, wait for the dial
//     with the fewest waiters. A waiter woken by a finished dial picks
//     again by the same rule; if the dial failed and no live connection
//     exists, the request fails with ConnectFailure.
//
// So connections are dialed lazily, one more each time all existing ones
// carry a stream, up to the limit; dials in progress count toward it,
// which makes them single-flight. A burst of concurrent requests on an
// empty pool opens all ConnectionsPerHost connections at once and spreads
// evenly over them, at the price of waiting one connect for the requests
// assigned to a new connection. Only the lock-free first step runs when
// a pool is at its limit. At the peer's SETTINGS_MAX_CONCURRENT_STREAMS a
// request waits on its connection (StrictMaxConcurrentStreams) instead of
// opening connections beyond the limit.
//
// A connection that received GOAWAY, or that x/net stopped offering for
// new requests, leaves the live list at the next pick that finds it so
// (which lets a replacement be dialed at once), drains its streams and is
// closed. A connection whose socket closes for any reason (peer close,
// keepalive PING unanswered within KeepaliveTimeout after
// KeepaliveInterval without a frame, Close) leaves the pool at that moment:
// the pool wraps the TCP connection to be told.
//
// # Invariants
//
//   - At most ConnectionsPerHost connections are live or being dialed;
//     draining ones are counted by Stats but not toward the limit.
//   - Every stream the pool starts is counted on its connection until the
//     response body reaches EOF, fails or is closed; then exactly once
//     uncounted.
//   - Every error from RoundTrip, and every non-EOF error from a response
//     body, is an *Error whose Kind and Sent a retry policy can act on.
//   - Response header names are lower case; trailers are copied into
//     message.Response.Trailer when the body returns io.EOF, and the
//     upstream's trailer announcement is kept as a "trailer" header field,
//     so gRPC responses come through intact.
//   - Requests carry no header x/net would add on its own: no default
//     User-Agent, no Accept-Encoding (compression is left to the peers).
//     Connection-specific fields are dropped (te only unless it is
//     "trailers"). :scheme is the upstream connection's (https over TLS,
//     http for h2c), :authority is Request.Authority.
//
// Options.Limit (package upstream's max_connections circuit breaker)
// bounds connections across several pools: a dial beyond
// ConnectionsPerHost's first connection needs room in it, and without room
// the request shares the connections the pool has (streams multiplex, so
// no request waits for the limit and none overflows). A pool with no
// connection always dials one.
//
// # Non-goals
//
// Retries (other than resending a request a connection refused before
// sending any of it), load balancing across endpoints, circuit breaking
// (other than honouring Options.Limit) and health checking belong to
// package upstream. Server push, extended
// CONNECT (WebSocket over HTTP/2) and HTTP/1.1 Upgrade are not supported.
// Header field order is not preserved upstream: x/net encodes from a map.
package http2
