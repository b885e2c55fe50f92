package upstream

import (
	"errors"

	"github.com/edgeproxy/edge/upstream/failure"
)

// Kind and Error are the shared classification of upstream failures
// (package failure); Host.RoundTrip returns only *Error values.
type (
	Kind  = failure.Kind
	Error = failure.Error
)

// The kinds, as package failure defines them.
const (
	ConnectFailure = failure.ConnectFailure
	Reset          = failure.Reset
	RefusedStream  = failure.RefusedStream
	Timeout        = failure.Timeout
	Canceled       = failure.Canceled
	Protocol       = failure.Protocol
	RequestBody    = failure.RequestBody
	NoHost         = failure.NoHost
	Overflow       = failure.Overflow
)

// ErrNoHealthyEndpoint is what Cluster.Pick returns when the cluster has no
// host to offer (a DNS cluster that resolved to nothing, or not yet). It is
// an *Error of kind NoHost.
var ErrNoHealthyEndpoint error = &Error{Kind: NoHost, Err: errors.New("no healthy upstream endpoint")}

// Classify returns err as an *Error: itself, or the *Error it wraps (as a
// response body's Read returns), and otherwise a Reset that may have been
// sent. It returns nil for nil.
func Classify(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Kind: Reset, Sent: true, Err: err}
}
