package failure

import (
	"errors"
	"fmt"
	"testing"
)

func TestErrorFormatAndUnwrap(t *testing.T) {
	cause := errors.New("connection refused")
	err := fmt.Errorf("dialing: %w", &Error{Kind: ConnectFailure, Err: cause})
	var e *Error
	if !errors.As(err, &e) || e.Kind != ConnectFailure || e.Sent {
		t.Fatalf("errors.As = %v", e)
	}
	if got, want := e.Error(), "upstream connect failure: connection refused"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, cause) {
		t.Error("the cause is not reachable through Unwrap")
	}
}

func TestKindNames(t *testing.T) {
	for k := ConnectFailure; k <= Overflow; k++ {
		if k.String() == "unknown" {
			t.Errorf("kind %d has no name", k)
		}
	}
	if Kind(0).String() != "unknown" || Kind(200).String() != "unknown" {
		t.Error("out-of-range kinds must print as unknown")
	}
}
