package http2

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"golang.org/x/net/http2"
)

// Kind classifies why an upstream exchange failed, in the terms a retry
// policy speaks (Envoy's retry_on conditions).
type Kind uint8

const (
	// ConnectFailure: no connection could be opened (TCP connect, TLS
	// handshake, ALPN did not pick h2, or the connection died before its
	// first request). Nothing reached the upstream.
	ConnectFailure Kind = iota + 1
	// Reset: the stream or its connection ended abnormally after the request
	// may have reached the upstream (RST_STREAM other than REFUSED_STREAM,
	// connection lost, lost PING, GOAWAY with an error).
	Reset
	// RefusedStream: the upstream guarantees it did not process the request:
	// RST_STREAM with REFUSED_STREAM, or a stream above a GOAWAY's last
	// stream ID. Safe to retry even for non-idempotent requests.
	RefusedStream
	// Timeout: the context's deadline passed (or an I/O timeout hit).
	Timeout
	// Canceled: the context was canceled, usually because the downstream
	// client went away.
	Canceled
	// Protocol: the request could not be encoded (invalid header field,
	// header list over the peer's limit) or the upstream broke the protocol
	// (malformed response, connection error PROTOCOL_ERROR).
	Protocol
	// RequestBody: reading the request body failed, or it was longer than
	// its ContentLength. The downstream side is at fault, not the
	// upstream.
	RequestBody
)

var kindNames = [...]string{
	ConnectFailure: "connect failure",
	Reset:          "reset",
	RefusedStream:  "refused stream",
	Timeout:        "timeout",
	Canceled:       "canceled",
	Protocol:       "protocol error",
	RequestBody:    "request body",
}

// String names the kind in lower case, e.g. "refused stream".
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

// Error is every error RoundTrip returns, and what a response body's Read
// returns when the stream fails mid-body.
type Error struct {
	// Kind says what failed.
	Kind Kind
	// Sent reports whether the request may have reached the upstream. It
	// is false only when that is known not to be the case (connect
	// failure, refused stream, a request rejected before it was written);
	// when in doubt it is true.
	Sent bool
	// Err is the underlying error.
	Err error
}

// Error formats the kind and the underlying error.
func (e *Error) Error() string {
	return "http2 upstream: " + e.Kind.String() + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

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
