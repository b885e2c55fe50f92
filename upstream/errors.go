package upstream

import (
	"errors"

	"github.com/edgeproxy/edge/upstream/http1"
	"github.com/edgeproxy/edge/upstream/http2"
)

// Kind classifies why an upstream request failed, in the terms of Envoy's
// retry_on conditions.
type Kind uint8

const (
	// ConnectFailure: no connection could be made (dial, TLS handshake,
	// ALPN, or the host's pool is closed). Nothing reached the upstream.
	ConnectFailure Kind = iota + 1
	// Reset: the connection or stream ended abnormally; Sent says whether
	// the upstream may have seen the request.
	Reset
	// RefusedStream: the upstream guarantees it did not process the
	// request (HTTP/2 REFUSED_STREAM, or a stream above a GOAWAY's last
	// stream ID). Safe to retry.
	RefusedStream
	// Timeout: the request's context deadline passed.
	Timeout
	// Canceled: the request's context was canceled (the client went away);
	// not the upstream's fault.
	Canceled
	// Protocol: a malformed response, or a request that could not be
	// encoded.
	Protocol
	// RequestBody: reading the request body failed (the downstream side is
	// at fault, not the upstream).
	RequestBody
	// NoHost: the cluster has no healthy endpoint to send to.
	NoHost
	// Overflow: a circuit breaker of the cluster refused the request
	// (max_requests, or max_pending_requests while waiting for an HTTP/1.1
	// connection under max_connections). Nothing was sent; Envoy answers
	// 503 with x-envoy-overloaded.
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

// Error is the one classification of upstream failures, whichever pool
// (HTTP/1.1 or HTTP/2) they came from. Host.RoundTrip returns only *Error
// values; Classify maps errors read from a response body.
type Error struct {
	// Kind says what failed.
	Kind Kind
	// Sent reports whether the request may have reached the upstream;
	// false means it certainly did not.
	Sent bool
	// Err is the pool's error (an *http1.Error or *http2.Error), or
	// another cause.
	Err error
}

// Error formats the kind and the underlying error.
func (e *Error) Error() string {
	return "upstream " + e.Kind.String() + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// ErrNoHealthyEndpoint is what Cluster.Pick returns when the cluster has no
// host to offer (a DNS cluster that resolved to nothing, or not yet). It is
// an *Error of kind NoHost.
var ErrNoHealthyEndpoint error = &Error{Kind: NoHost, Err: errors.New("no healthy upstream endpoint")}

var h1Kinds = [...]Kind{
	http1.ConnectFailure: ConnectFailure,
	http1.Reset:          Reset,
	http1.Timeout:        Timeout,
	http1.Canceled:       Canceled,
	http1.Protocol:       Protocol,
	http1.RequestBody:    RequestBody,
	http1.Overflow:       Overflow,
}

var h2Kinds = [...]Kind{
	http2.ConnectFailure: ConnectFailure,
	http2.Reset:          Reset,
	http2.RefusedStream:  RefusedStream,
	http2.Timeout:        Timeout,
	http2.Canceled:       Canceled,
	http2.Protocol:       Protocol,
	http2.RequestBody:    RequestBody,
}

// Classify returns err as an *Error: itself if it is one, the mapping of an
// *http1.Error or *http2.Error (as a response body's Read returns), and
// otherwise a Reset that may have been sent. It returns nil for nil.
func Classify(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var e1 *http1.Error
	if errors.As(err, &e1) {
		return &Error{Kind: mapKind(h1Kinds[:], int(e1.Kind)), Sent: e1.Sent, Err: err}
	}
	var e2 *http2.Error
	if errors.As(err, &e2) {
		return &Error{Kind: mapKind(h2Kinds[:], int(e2.Kind)), Sent: e2.Sent, Err: err}
	}
	return &Error{Kind: Reset, Sent: true, Err: err}
}

func mapKind(table []Kind, k int) Kind {
	if k < len(table) && table[k] != 0 {
		return table[k]
	}
	return Reset
}
