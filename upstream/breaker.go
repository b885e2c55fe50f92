package upstream

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/upstream/http1"
	"github.com/edgeproxy/edge/upstream/http2"
)

// ErrOverflow is the Err of the Overflow error Host.RoundTrip returns when
// the cluster's max_requests circuit breaker is open. (A full
// max_pending_requests queue gives an Overflow error whose Err wraps
// http1.ErrPendingOverflow.)
var ErrOverflow = errors.New("too many requests to the cluster (circuit breaker max_requests)")

// errRequestsOverflow is returned as is, so that an overloaded cluster
// allocates nothing per refused request.
var errRequestsOverflow = &Error{Kind: Overflow, Err: ErrOverflow}

// breaker is a cluster's circuit breakers (Envoy's thresholds of the
// default priority): bounds on the cluster's concurrent requests,
// connections, requests waiting for a connection, and retries, shared by
// every host. Each is an atomic count with a compare against its limit;
// a refused admission changes nothing and fails at once.
//
// It is the http1.Limit and http2.Limit of the cluster's pools.
type breaker struct {
	maxRequests, maxPending, maxConns, maxRetries int64

	requests atomic.Int64 // requests in flight (Host.RoundTrip until the body ends)
	pending  atomic.Int64 // HTTP/1.1 requests waiting for a connection
	conns    atomic.Int64 // connections open or being dialed, every host
	retries  atomic.Int64 // retries in progress (TryRetry until RetryDone)

	stats *ClusterStats

	mu    sync.Mutex
	freed chan struct{} // closed and replaced when a connection's room is given back while requests are pending
}

var (
	_ http1.Limit = (*breaker)(nil)
	_ http2.Limit = (*breaker)(nil)
)

func (b *breaker) init(cb *config.CircuitBreakers, st *ClusterStats) {
	limit := func(v int) int64 {
		if v <= 0 {
			return int64(config.DefaultCircuitBreakerLimit)
		}
		return int64(v)
	}
	b.maxRequests = limit(cb.MaxRequests)
	b.maxPending = limit(cb.MaxPendingRequests)
	b.maxConns = limit(cb.MaxConnections)
	b.maxRetries = int64(max(cb.MaxRetries, 0))
	b.stats = st
	b.freed = make(chan struct{})
}

// admit reserves room for one count under max.
func admit(n *atomic.Int64, max int64) bool {
	for {
		v := n.Load()
		if v >= max {
			return false
		}
		if n.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// tryRequest admits a request under max_requests, counting a refusal on
// upstream_rq_pending_overflow (as Envoy does).
func (b *breaker) tryRequest() bool {
	if admit(&b.requests, b.maxRequests) {
		return true
	}
	b.stats.UpstreamRqPendingOverflow.Inc()
	return false
}

func (b *breaker) requestDone() { b.requests.Add(-1) }

// TryOpen implements http1.Limit and http2.Limit: max_connections.
func (b *breaker) TryOpen() bool { return admit(&b.conns, b.maxConns) }

// ForceOpen implements http1.Limit and http2.Limit: a host without any
// connection gets one over the limit, counted on upstream_cx_overflow.
func (b *breaker) ForceOpen() {
	b.conns.Add(1)
	b.stats.UpstreamCxOverflow.Inc()
}

// Closed implements http1.Limit and http2.Limit. It wakes the pending
// requests, if any, so that one of them dials.
func (b *breaker) Closed() {
	b.conns.Add(-1)
	if b.pending.Load() > 0 {
		b.mu.Lock()
		close(b.freed)
		b.freed = make(chan struct{})
		b.mu.Unlock()
	}
}

// Freed implements http1.Limit.
func (b *breaker) Freed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.freed
}

// TryPend implements http1.Limit: max_pending_requests. A request that
// must wait because of max_connections counts on upstream_cx_overflow; one
// refused because the queue is full on upstream_rq_pending_overflow.
func (b *breaker) TryPend() bool {
	if admit(&b.pending, b.maxPending) {
		b.stats.UpstreamCxOverflow.Inc()
		return true
	}
	b.stats.UpstreamRqPendingOverflow.Inc()
	return false
}

// Unpend implements http1.Limit.
func (b *breaker) Unpend() { b.pending.Add(-1) }

// TryRetry admits one retry under the cluster's max_retries circuit
// breaker (concurrent retries: from the decision to retry until the retry
// is sent, including its back-off), and reports false when the limit is
// reached: the caller then gives up retrying and counts the refusal
// (edge_cluster_upstream_rq_retry_overflow). Every true must be matched by
// one RetryDone. It takes no lock and allocates nothing.
func (c *Cluster) TryRetry() bool { return admit(&c.breaker.retries, c.breaker.maxRetries) }

// RetryDone ends a retry TryRetry admitted.
func (c *Cluster) RetryDone() { c.breaker.retries.Add(-1) }

// BreakerInfo describes a cluster's circuit breakers: each limit and the
// current count against it.
type BreakerInfo struct {
	// MaxConnections and Connections: max_connections, and the
	// connections open or being dialed to every host.
	MaxConnections int64 `json:"max_connections"`
	Connections    int64 `json:"connections"`
	// MaxPendingRequests and PendingRequests: max_pending_requests, and
	// the HTTP/1.1 requests waiting for a connection.
	MaxPendingRequests int64 `json:"max_pending_requests"`
	PendingRequests    int64 `json:"pending_requests"`
	// MaxRequests and Requests: max_requests, and the requests in flight.
	MaxRequests int64 `json:"max_requests"`
	Requests    int64 `json:"requests"`
	// MaxRetries and Retries: max_retries, and the retries in progress.
	MaxRetries int64 `json:"max_retries"`
	Retries    int64 `json:"retries"`
}

func (b *breaker) info() BreakerInfo {
	return BreakerInfo{
		MaxConnections:     b.maxConns,
		Connections:        b.conns.Load(),
		MaxPendingRequests: b.maxPending,
		PendingRequests:    b.pending.Load(),
		MaxRequests:        b.maxRequests,
		Requests:           b.requests.Load(),
		MaxRetries:         b.maxRetries,
		Retries:            b.retries.Load(),
	}
}
