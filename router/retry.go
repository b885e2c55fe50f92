package router

import (
	"slices"
	"strings"
	"time"

	"github.com/edgeproxy/edge/edge/config"
)

// RetryOn is a set of retry conditions (retry_on), as a bitmask.
type RetryOn uint16

// The retry conditions, named as in retry_on and x-edge-retry-on.
const (
	// RetryOn5xx retries a 5xx response or no response at all (connect
	// failure, reset, refused stream, per-try timeout).
	RetryOn5xx RetryOn = 1 << iota
	// RetryOnGatewayError retries 502, 503 and 504 (and the failures that
	// map to them).
	RetryOnGatewayError
	// RetryOnConnectFailure retries a failure to connect.
	RetryOnConnectFailure
	// RetryOnReset retries when no response arrived (disconnect, reset,
	// timeout).
	RetryOnReset
	// RetryOnRefusedStream retries an HTTP/2 REFUSED_STREAM reset.
	RetryOnRefusedStream
	// RetryOnRetriable4xx retries 409.
	RetryOnRetriable4xx
	// RetryOnRetriableStatusCodes retries the policy's StatusCodes.
	RetryOnRetriableStatusCodes
)

// retryOnNames is indexed by bit position.
var retryOnNames = [...]string{
	"5xx", "gateway-error", "connect-failure", "reset", "refused-stream",
	"retriable-4xx", "retriable-status-codes",
}

// ParseRetryOn returns the condition called name (as in retry_on), and false
// for an unknown name.
func ParseRetryOn(name string) (RetryOn, bool) {
	for i, n := range retryOnNames {
		if n == name {
			return 1 << i, true
		}
	}
	return 0, false
}

// Has reports whether every condition in c2 is in c.
func (c RetryOn) Has(c2 RetryOn) bool { return c&c2 == c2 }

// String lists the conditions in c, comma-separated, in declaration order.
func (c RetryOn) String() string {
	var names []string
	for i, n := range retryOnNames {
		if c&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return strings.Join(names, ",")
}

// RetryPolicy is a compiled retry_policy. It only describes the policy;
// package edge and package upstream carry it out.
type RetryPolicy struct {
	// On is the set of conditions that allow a retry.
	On RetryOn
	// StatusCodes are the retriable_status_codes, sorted, without
	// duplicates; they apply when On has RetryOnRetriableStatusCodes.
	StatusCodes []int
	// NumRetries is the most retries after the first try.
	NumRetries int
	// PerTryTimeout bounds each try; 0 means only the route timeout does.
	PerTryTimeout time.Duration
	// BaseInterval and MaxInterval bound the fully jittered exponential
	// back-off between tries.
	BaseInterval, MaxInterval time.Duration
	// BufferLimit is how many request body bytes are kept to replay a
	// retry; a larger body abandons retrying.
	BufferLimit int64

	codes [10]uint64 // bit per status 0..639, for StatusCodes
}

// RetriableStatus reports whether a response with this status allows a
// retry under the policy's status-based conditions: 5xx, gateway-error
// (502, 503, 504), retriable-4xx (409) and retriable-status-codes. The
// conditions about failures without a response are the caller's to check
// with On.
func (p *RetryPolicy) RetriableStatus(code int) bool {
	switch {
	case p.On&RetryOn5xx != 0 && code >= 500 && code <= 599:
		return true
	case p.On&RetryOnGatewayError != 0 && code >= 502 && code <= 504:
		return true
	case p.On&RetryOnRetriable4xx != 0 && code == 409:
		return true
	case p.On&RetryOnRetriableStatusCodes != 0 && code >= 0 && code < len(p.codes)*64:
		return p.codes[code>>6]&(1<<(code&63)) != 0
	}
	return false
}

func compileRetry(cp *config.RetryPolicy) *RetryPolicy {
	p := &RetryPolicy{
		NumRetries:    cp.NumRetries,
		PerTryTimeout: cp.PerTryTimeout.D(),
		BaseInterval:  cp.Backoff.BaseInterval.D(),
		MaxInterval:   cp.Backoff.MaxInterval.D(),
		BufferLimit:   int64(cp.BufferLimit),
	}
	for _, name := range cp.RetryOn {
		// Validation rejected unknown names already.
		c, _ := ParseRetryOn(name)
		p.On |= c
	}
	for _, code := range cp.RetriableStatusCodes {
		if code >= 0 && code < len(p.codes)*64 {
			p.codes[code>>6] |= 1 << (code & 63)
		}
		if !slices.Contains(p.StatusCodes, code) {
			p.StatusCodes = append(p.StatusCodes, code)
		}
	}
	slices.Sort(p.StatusCodes)
	return p
}
