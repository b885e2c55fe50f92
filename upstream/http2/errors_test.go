package http2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"

	"golang.org/x/net/http2"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		body     bool
		wantKind Kind
		wantSent bool
	}{
		{"canceled", context.Canceled, false, Canceled, true},
		{"deadline", fmt.Errorf("wrapped: %w", context.DeadlineExceeded), false, Timeout, true},
		{"refused stream", http2.StreamError{StreamID: 1, Code: http2.ErrCodeRefusedStream}, false, RefusedStream, false},
		{"refused stream while reading body", http2.StreamError{StreamID: 1, Code: http2.ErrCodeRefusedStream}, true, RefusedStream, true},
		{"stream internal error", http2.StreamError{StreamID: 1, Code: http2.ErrCodeInternal}, false, Reset, true},
		{"stream protocol error", http2.StreamError{StreamID: 1, Code: http2.ErrCodeProtocol}, false, Protocol, true},
		{"connection protocol error", http2.ConnectionError(http2.ErrCodeProtocol), false, Protocol, true},
		{"connection flow control error", http2.ConnectionError(http2.ErrCodeFlowControl), false, Reset, true},
		{"goaway with error", http2.GoAwayError{LastStreamID: 3, ErrCode: http2.ErrCodeEnhanceYourCalm}, false, Reset, true},
		{"conn unusable", errors.New(msgConnUnusable), false, RefusedStream, false},
		{"graceful goaway, unprocessed", errors.New(msgConnGotGoAway), false, RefusedStream, false},
		{"conn never established", errors.New(msgConnNotEstablished), false, ConnectFailure, false},
		{"invalid header", errors.New("invalid HTTP header name \"a b\""), false, Protocol, false},
		{"header list too large", errors.New(msgHeaderListTooLarge), false, Protocol, false},
		{"malformed response", errors.New("malformed response from server: missing status pseudo header"), false, Protocol, true},
		{"io timeout", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, false, Timeout, true},
		{"unexpected EOF", io.ErrUnexpectedEOF, false, Reset, true},
		{"lost ping", errors.New("http2: client connection lost"), false, Reset, true},
		{"request body read", fmt.Errorf("stream: %w", &requestBodyError{errors.New("client gone")}), false, RequestBody, true},
		{"request body too long", errors.New(msgBodyTooLong), false, RequestBody, true},
		{"already classified", &Error{Kind: ConnectFailure, Err: errors.New("x")}, false, ConnectFailure, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := classify(tt.err, tt.body)
			if e.Kind != tt.wantKind || e.Sent != tt.wantSent {
				t.Errorf("classify(%v, body=%v) = %v sent=%v, want %v sent=%v", tt.err, tt.body, e.Kind, e.Sent, tt.wantKind, tt.wantSent)
			}
			if !errors.Is(e, tt.err) {
				t.Errorf("classify(%v) does not wrap the error", tt.err)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	tests := []struct {
		k    Kind
		want string
	}{
		{ConnectFailure, "connect failure"},
		{Reset, "reset"},
		{RefusedStream, "refused stream"},
		{Timeout, "timeout"},
		{Canceled, "canceled"},
		{Protocol, "protocol error"},
		{RequestBody, "request body"},
		{0, "unknown"},
		{200, "unknown"},
	}
	for _, tt := range tests {
		if got := tt.k.String(); got != tt.want {
			t.Errorf("Kind(%d).String() = %q, want %q", tt.k, got, tt.want)
		}
	}
}
