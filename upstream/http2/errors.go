package http2

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/edgeproxy/edge/upstream/failure"

	"golang.org/x/net/http2"
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

// x/net/http2 reports these conditions with unexported sentinel errors, so
// they can only be recognised by their text (x/net v0.62.0, transport.go
// and transport_common.go). If a later version renames them, classify
// falls back to Reset with Sent=true, which is safe, only less precise.
const (
	msgConnUnusable       = "http2: client conn not usable"
	msgConnGotGoAway      = "http2: Transport received Server's graceful shutdown GOAWAY"
	msgConnNotEstablished = "http2: client conn could not be established"
	msgHeaderListTooLarge = "http2: request header list larger than peer's advertised limit"
	msgBodyTooLong        = "http2: request body larger than specified content length"
)

// requestBodyError marks an error from reading the request body, which
// x/net hands back as the stream's error.
type requestBodyError struct{ err error }

func (e *requestBodyError) Error() string { return "reading request body: " + e.err.Error() }
func (e *requestBodyError) Unwrap() error { return e.err }

// unprocessed reports whether err means the request never left edge or the
// server did not start processing it, so that it can be sent again on
// another connection.
func unprocessed(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return msg == msgConnUnusable || msg == msgConnGotGoAway
}

// classify turns an error from ClientConn.RoundTrip or a response body into
// an *Error. bodyPhase says the error came while reading the response
// body, so the request certainly went out.
func classify(err error, bodyPhase bool) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var be *requestBodyError
	if errors.As(err, &be) {
		return &Error{Kind: RequestBody, Sent: true, Err: err}
	}
	k, sent := kindOf(err)
	if bodyPhase {
		sent = true
	}
	return &Error{Kind: k, Sent: sent, Err: err}
}

func kindOf(err error) (Kind, bool) {
	switch {
	case errors.Is(err, context.Canceled):
		return Canceled, true
	case errors.Is(err, context.DeadlineExceeded):
		return Timeout, true
	}
	var se http2.StreamError
	if errors.As(err, &se) {
		switch se.Code {
		case http2.ErrCodeRefusedStream:
			return RefusedStream, false
		case http2.ErrCodeProtocol:
			return Protocol, true
		}
		return Reset, true
	}
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		if http2.ErrCode(ce) == http2.ErrCodeProtocol {
			return Protocol, true
		}
		return Reset, true
	}
	var ga http2.GoAwayError
	if errors.As(err, &ga) {
		return Reset, true
	}
	msg := err.Error()
	switch {
	case msg == msgConnUnusable, msg == msgConnGotGoAway:
		return RefusedStream, false
	case msg == msgConnNotEstablished:
		return ConnectFailure, false
	case msg == msgBodyTooLong:
		return RequestBody, true
	case msg == msgHeaderListTooLarge,
		strings.HasPrefix(msg, "invalid "),
		strings.HasPrefix(msg, "http2: invalid "):
		// Request validation in x/net's header encoder: nothing was written.
		return Protocol, false
	case strings.HasPrefix(msg, "malformed response from server"):
		return Protocol, true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Timeout, true
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return Reset, true
	}
	return Reset, true
}
