package http1

import (
	"context"
	"fmt"
	"slices"
)

// Limit bounds the connections of a group of pools together, and the
// requests that wait for one (package upstream implements it as a
// cluster's circuit breaker: max_connections and max_pending_requests).
//
// With a Limit, a request that finds no idle connection opens a new one
// only if TryOpen allows it. Otherwise it waits, as one of the limit's
// pending requests (TryPend), until a connection of its own pool is
// released to it or room frees up anywhere in the group (Freed), or its
// context ends; if the pending queue is full it fails at once with
// Overflow. A pool with no connection at all (open or being dialed)
// always opens one (ForceOpen), so that its requests never wait on other
// pools' connections, as Envoy does; the limit can thus be exceeded by
// one connection per pool.
//
// The methods are called on the request's goroutine, outside the pool's
// lock, and must be safe for concurrent use.
type Limit interface {
	// TryOpen reserves room for one more connection and reports whether
	// the group was below its limit.
	TryOpen() bool
	// ForceOpen reserves room for one connection beyond the limit.
	ForceOpen()
	// Closed gives back the room of a connection that TryOpen or
	// ForceOpen reserved: it closed, or its dial failed.
	Closed()
	// Freed returns a channel that is closed the next time Closed gives
	// room back while requests are pending.
	Freed() <-chan struct{}
	// TryPend counts the request among those waiting for a connection and
	// reports whether the queue had room; false fails the request with
	// Overflow.
	TryPend() bool
	// Unpend ends a wait TryPend started.
	Unpend()
}

// waiter is a request waiting for a connection of its pool. ch receives
// the connection handed over by a release, or nil if the pool closed.
type waiter struct{ ch chan *conn }

// limitedConn makes room for a new connection within p.limit (dial
// true: the caller dials), or waits for one as a pending request: a
// connection this pool releases is handed over directly (returned as c,
// to be checked for liveness); room freed anywhere in the group is taken
// by dialing.
func (p *Pool) limitedConn(ctx context.Context) (c *conn, dial bool, e *Error) {
	var w *waiter
	defer func() {
		if w != nil {
			p.limit.Unpend()
		}
	}()
	for {
		// Freed before TryOpen: room given back after a failed TryOpen
		// then closes this channel (once this request is pending).
		freed := p.limit.Freed()
		if p.limit.TryOpen() {
			p.held.Add(1)
			break
		}
		if p.held.CompareAndSwap(0, 1) {
			p.limit.ForceOpen()
			break
		}
		if w == nil {
			if !p.limit.TryPend() {
				return nil, false, errOverflow
			}
			w, c = p.wait()
			if w == nil {
				p.limit.Unpend()
				if c == nil {
					return nil, false, &Error{Kind: ConnectFailure, Err: ErrClosed}
				}
				return c, false, nil
			}
			// Pending now: try once more, so that room given back
			// between TryOpen and TryPend is not missed.
			continue
		}
		select {
		case c = <-w.ch:
			if c == nil {
				return nil, false, &Error{Kind: ConnectFailure, Err: ErrClosed}
			}
			return c, false, nil
		case <-freed:
		case <-ctx.Done():
			p.cancelWait(w)
			err := ctx.Err()
			return nil, false, &Error{Kind: ctxKind(err), Err: fmt.Errorf("%w to %s: %w", ErrPendingWait, p.addr, err)}
		}
	}
	if w != nil {
		p.cancelWait(w)
	}
	return nil, true, nil
}

// wait registers a waiter, unless an idle connection came back meanwhile
// (then it is returned instead) or the pool is closed (both nil).
func (p *Pool) wait() (*waiter, *conn) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, nil
	}
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.nidle.Store(int64(n - 1))
		p.mu.Unlock()
		return nil, c
	}
	w := &waiter{ch: make(chan *conn, 1)}
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	return w, nil
}

// cancelWait removes w from the waiters; a connection already handed to
// it is released again (to the next waiter or the idle stack).
func (p *Pool) cancelWait(w *waiter) {
	p.mu.Lock()
	if i := slices.Index(p.waiters, w); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	if c := <-w.ch; c != nil {
		p.putIdle(c)
	}
}
