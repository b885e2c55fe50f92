// Package failure is the one classification of upstream failures, shared
// by the HTTP/1.1 and HTTP/2 pools and the clusters above them, so that an
// error means the same thing whichever protocol carried the request. The
// kinds are the terms of Envoy's retry_on conditions.
package failure

// Kind says why an upstream exchange failed.
type Kind uint8

const (
	// ConnectFailure: no connection could be made (dial, TLS handshake,
	// ALPN, or the pool is closed). Nothing reached the upstream, so any
	// request may be retried, here or on another host.
	ConnectFailure Kind = iota + 1
	// Reset: the connection or stream ended abnormally before the response
	// was complete; Error.Sent says whether the upstream may have seen the
	// request.
	Reset
	// RefusedStream: the upstream guarantees it did not process the
	// request (HTTP/2 REFUSED_STREAM, or a stream above a GOAWAY's last
	// stream ID). Safe to retry, even for non-idempotent requests.
	RefusedStream
	// Timeout: the deadline passed (the request's, or its context's).
	Timeout
	// Canceled: the context was canceled, usually because the downstream
	// client went away; not the upstream's fault.
	Canceled
	// Protocol: a malformed response, or a request that could not be
	// encoded (then nothing was sent).
	Protocol
	// RequestBody: reading the request body failed or the body did not
	// match its ContentLength: the downstream side is at fault, not the
	// upstream.
	RequestBody
	// NoHost: the cluster has no healthy endpoint to send to.
	NoHost
	// Overflow: a circuit breaker refused the request (max_requests, or a
	// full queue waiting for a connection under max_connections). Nothing
	// was sent; the upstream is not at fault.
	Overflow
)

var kindNames = [...]string{
	ConnectFailure: "connect failure",
	Reset:          "reset",
	RefusedStream:  "refused stream",
	Timeout:        "timeout",
	Canceled:       "canceled",
	Protocol:       "protocol error",
	RequestBody:    "request body",
	NoHost:         "no healthy host",
	Overflow:       "overflow",
}

// String names the kind in lower case, e.g. "connect failure".
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

// Error is a classified upstream failure.
type Error struct {
	// Kind says what failed.
	Kind Kind
	// Sent reports whether the request may have reached the upstream;
	// false means it certainly did not.
	Sent bool
	// Err is the underlying error, with context.
	Err error
}

// Error formats the kind and the underlying error.
func (e *Error) Error() string {
	return "upstream " + e.Kind.String() + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }
