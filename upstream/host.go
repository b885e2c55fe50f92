package upstream

import (
	"context"
	"io"
	"sync"
	"sync/atomic"

	"github.com/edgeproxy/edge/edge/message"
	"github.com/edgeproxy/edge/upstream/http1"
	"github.com/edgeproxy/edge/upstream/http2"
)

// Host is one endpoint of a cluster (an IP and port) with its own
// connection pool. Hosts are created when a cluster is compiled or when DNS
// shows a new address, and are shared by every host set that contains
// their address, so their pools and counters survive DNS refreshes.
type Host struct {
	// active counts requests in flight: from RoundTrip until the response
	// body ends (EOF, error, Close or Release), or RoundTrip's error.
	active atomic.Int64
	// addr is the current ip:port; it changes only for a logical_dns host.
	addr     atomic.Pointer[string]
	hostname string
	weight   uint32
	c        *Cluster
	pool     pool

	// draining is set when the host left its cluster's host set (or the
	// set closed); the pool closes when the last request finishes.
	draining  atomic.Bool
	closeOnce sync.Once

	// hs is the host's health: flags the balancer reads (available),
	// outlier-detection counts and its health checker (health.go).
	hs hostState
}

// Address returns the host's ip:port ("" for a logical_dns host not yet
// resolved).
func (h *Host) Address() string {
	if a := h.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// Hostname returns the DNS name the host came from (for
// auto_host_rewrite and TLS SNI), or its IP for a static endpoint.
func (h *Host) Hostname() string { return h.hostname }

// Weight returns the endpoint's load-balancing weight.
func (h *Host) Weight() uint32 { return h.weight }

// ActiveRequests returns the number of requests in flight on the host.
func (h *Host) ActiveRequests() int64 { return h.active.Load() }

// RoundTrip sends req to the host through its pool. ctx governs the whole
// exchange including reading the response body. Every error is an *Error.
//
// The cluster's circuit breakers apply here: over max_requests concurrent
// requests (counted until the response body ends, as ActiveRequests), or
// with max_connections HTTP/1.1 connections busy and max_pending_requests
// requests already waiting for one, RoundTrip fails at once with Kind
// Overflow. With outlier detection, the response status or the error
// counts toward ejecting the host.
//
// The caller must close the response body; it may instead (or after
// closing) call Release, which also recycles the response's storage. The
// body's Read errors are *Error values too. The request counts as active
// on the host, and on the cluster's rq_active gauge, until the body reaches
// EOF, fails or is closed.
func (h *Host) RoundTrip(ctx context.Context, req *message.Request) (*message.Response, error) {
	c := h.c
	if !c.breaker.tryRequest() {
		return nil, errRequestsOverflow
	}
	st := &c.Stats
	h.active.Add(1)
	st.UpstreamRqTotal.Inc()
	st.UpstreamRqActive.Inc()
	resp, err := h.pool.RoundTrip(ctx, req)
	if err != nil {
		e := Classify(err)
		if c.outlier != nil {
			h.outlierError(e)
		}
		h.finish()
		return nil, e
	}
	if c.outlier != nil {
		h.outlierStatus(resp.Status)
	}
	b := h.c.bodies.Get().(*hostBody)
	b.rc, b.h = resp.Body, h
	b.done.Store(false)
	resp.Body = b
	return resp, nil
}

// Release hands resp, which must come from h.RoundTrip, back: it closes the
// body if needed and recycles the response where the pool can (HTTP/1.1).
// Calling it is optional but saves allocations. Afterwards nothing
// reachable from resp may be used, except strings already read from it.
func (h *Host) Release(resp *message.Response) {
	b, ok := resp.Body.(*hostBody)
	if !ok || b.h != h {
		return
	}
	resp.Body = b.rc
	h.pool.release(resp)
	b.finish()
	*b = hostBody{}
	h.c.bodies.Put(b)
}

// finish ends one request on h.
func (h *Host) finish() {
	h.c.breaker.requestDone()
	h.c.Stats.UpstreamRqActive.Dec()
	if h.active.Add(-1) == 0 && h.draining.Load() {
		h.closePool()
	}
}

// drain takes h out of service: its pool closes once no request is in
// flight (at once if none is).
func (h *Host) drain() {
	h.draining.Store(true)
	h.stopCheck()
	if h.active.Load() == 0 {
		h.closePool()
	}
}

func (h *Host) closePool() { h.closeOnce.Do(h.pool.Close) }

// hostBody wraps a response body to end the host's request count once.
type hostBody struct {
	rc   io.ReadCloser
	h    *Host
	done atomic.Bool
}

func (b *hostBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		b.finish()
		if err != io.EOF {
			return n, Classify(err)
		}
	}
	return n, err
}

func (b *hostBody) Close() error {
	err := b.rc.Close()
	b.finish()
	return err
}

func (b *hostBody) finish() {
	if b.done.CompareAndSwap(false, true) {
		b.h.finish()
	}
}

// pool is what a Host needs from an HTTP/1.1 or HTTP/2 pool.
type pool interface {
	RoundTrip(ctx context.Context, req *message.Request) (*message.Response, error)
	release(resp *message.Response)
	Close()
	stats() PoolStats
}

type h1Pool struct{ *http1.Pool }

func (p h1Pool) release(resp *message.Response) { p.Release(resp) }

func (p h1Pool) stats() PoolStats {
	active, idle := p.Stats()
	return PoolStats{Protocol: "http1", Connections: active + idle, ActiveConnections: active, IdleConnections: idle}
}

type h2Pool struct{ *http2.Pool }

func (p h2Pool) release(resp *message.Response) { resp.Body.Close() }

func (p h2Pool) stats() PoolStats {
	conns, streams := p.Stats()
	return PoolStats{Protocol: "http2", Connections: conns, ActiveStreams: streams}
}
