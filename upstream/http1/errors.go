package http1

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/edgeproxy/edge/upstream/failure"
)

// Kind and Error are the shared classification of upstream failures
// (package failure); the pools return only *Error values.
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
	Overflow       = failure.Overflow
)

// ErrClosed is returned (as the Err of a ConnectFailure) by RoundTrip on a
// closed Pool.
var ErrClosed = errors.New("pool closed")

// ErrPendingOverflow is the Err of the Overflow error RoundTrip returns when
// Options.Limit refuses both a new connection and a place in its queue.
var ErrPendingOverflow = errors.New("too many requests waiting for a connection")

// ErrPendingWait is wrapped (with the context's error) by the Timeout or
// Canceled error of a request whose context ended while it waited for a
// connection under Options.Limit: nothing reached the upstream, and the
// wait is the limit's doing, not the upstream's.
var ErrPendingWait = errors.New("request still waiting for a connection")

// errOverflow is returned as is (no allocation on the overload path).
var errOverflow = &Error{Kind: Overflow, Err: ErrPendingOverflow}

// protocolError is a parse or validation failure; it maps to Kind Protocol.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return e.msg }

// Parse and validation failures. Read-only.
var (
	errStatusLine       = &protocolError{"malformed status line"}
	errVersion          = &protocolError{"unsupported HTTP version in status line"}
	errHeaderTooLarge   = &protocolError{"response head too large"}
	errTooManyFields    = &protocolError{"too many header fields"}
	errObsFold          = &protocolError{"obsolete line folding in header"}
	errFieldName        = &protocolError{"invalid header field name"}
	errFieldValue       = &protocolError{"invalid header field value"}
	errContentLength    = &protocolError{"invalid Content-Length"}
	errConflictingCL    = &protocolError{"conflicting Content-Length values"}
	errTEAndCL          = &protocolError{"both Transfer-Encoding and Content-Length"}
	errTE               = &protocolError{"unsupported Transfer-Encoding"}
	errTE10             = &protocolError{"Transfer-Encoding in an HTTP/1.0 response"}
	errChunkSize        = &protocolError{"malformed chunk size"}
	errChunkEnd         = &protocolError{"missing CRLF after chunk data"}
	errUnexpected101    = &protocolError{"101 Switching Protocols without an upgrade request"}
	errTooManyInfo      = &protocolError{"too many 1xx responses"}
	errReqMethod        = &protocolError{"invalid request method"}
	errReqConnect       = &protocolError{"CONNECT is not supported"}
	errReqPath          = &protocolError{"invalid request path"}
	errReqAuthority     = &protocolError{"invalid request authority"}
	errReqFieldName     = &protocolError{"invalid request header field name"}
	errReqFieldValue    = &protocolError{"request header field value contains CR, LF or NUL"}
	errReqTrailer       = &protocolError{"invalid request trailer field"}
	errReqContentLength = &protocolError{"invalid request ContentLength"}
	errALPN             = &protocolError{"upstream negotiated an ALPN protocol other than http/1.1"}
)

// errBodyClosed is returned by a read on a closed response body.
var errBodyClosed = errors.New("http1: read on closed response body")

// ctxKind maps a context error to Timeout or Canceled.
func ctxKind(err error) Kind {
	if errors.Is(err, context.DeadlineExceeded) {
		return Timeout
	}
	return Canceled
}

// classify builds the Error for err, which happened while doing what (a
// short verb phrase) under ctx.
func classify(ctx context.Context, what string, err error, sent bool) *Error {
	if ctx != nil {
		if cerr := ctx.Err(); cerr != nil {
			return &Error{Kind: ctxKind(cerr), Sent: sent, Err: fmt.Errorf("%s: %w", what, cerr)}
		}
	}
	var pe *protocolError
	switch {
	case errors.As(err, &pe):
		return &Error{Kind: Protocol, Sent: sent, Err: fmt.Errorf("%s: %w", what, err)}
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The connection deadline (set from ctx's deadline) can fire a
		// moment before ctx's own timer does.
		return &Error{Kind: Timeout, Sent: sent, Err: fmt.Errorf("%s: %w", what, context.DeadlineExceeded)}
	}
	return &Error{Kind: Reset, Sent: sent, Err: fmt.Errorf("%s: %w", what, err)}
}
