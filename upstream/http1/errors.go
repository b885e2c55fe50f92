package http1

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// Kind classifies a round-trip failure so that the caller can decide about
// retries, health accounting and the status code it answers with.
type Kind uint8

const (
	// ConnectFailure means no connection could be made: the dial or the TLS
	// handshake failed, was refused or exceeded Options.ConnectTimeout, or
	// the pool is closed (errors.Is(err, ErrClosed)). Nothing was sent, so
	// any request may be retried, on this endpoint or another.
	ConnectFailure Kind = iota + 1
	// Reset means the connection was closed or reset before a complete
	// response head arrived, or while the response body was read. Error.Sent
	// says whether any request bytes reached the socket; if none did, the
	// request may be retried like a ConnectFailure.
	Reset
	// Timeout means the round trip's context deadline passed, during the
	// dial, the request write, the wait for the response or a body read.
	// errors.Is(err, context.DeadlineExceeded) holds.
	Timeout
	// Canceled means the round trip's context was canceled (typically the
	// downstream client went away); errors.Is(err, context.Canceled) holds.
	// It should not count against the upstream's health.
	Canceled
	// Protocol means a malformed or forbidden message: a response the parser
	// rejects (bad status line or field, obs-fold, oversized head,
	// conflicting Content-Length, Transfer-Encoding with Content-Length, an
	// unsupported transfer coding, bad chunk framing), or a request that
	// cannot be written (a field value with CR, LF or NUL, an invalid
	// method, path or field name, an unsupported method such as CONNECT). A
	// rejected request has Sent == false.
	Protocol
	// RequestBody means reading the request body failed or the body did not
	// match the request's ContentLength. The downstream side is at fault,
	// not the upstream: do not count it against upstream health.
	RequestBody
	// Overflow means the request needed a new connection, Options.Limit
	// allowed none, and its queue of waiting requests was full
	// (ErrPendingOverflow). Nothing was sent; the upstream is not at fault.
	Overflow
)

// String returns the kind's name in lower case, e.g. "connect failure".
func (k Kind) String() string {
	switch k {
	case ConnectFailure:
		return "connect failure"
	case Reset:
		return "reset"
	case Timeout:
		return "timeout"
	case Canceled:
		return "canceled"
	case Protocol:
		return "protocol error"
	case RequestBody:
		return "request body"
	case Overflow:
		return "overflow"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Error is the error type of every failure RoundTrip returns and of every
// failed response-body read.
type Error struct {
	// Kind classifies the failure.
	Kind Kind
	// Sent reports whether any byte of the request was written to the
	// connection. False means the upstream cannot have seen the request.
	Sent bool
	// Err is the underlying error, with context.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	return "http1 " + e.Kind.String() + ": " + e.Err.Error()
}

// Unwrap returns e.Err.
func (e *Error) Unwrap() error { return e.Err }

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
