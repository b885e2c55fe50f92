package http1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countLimit is a complete Limit: at most max connections and maxPending
// waiting requests across the pools that share it (what package upstream's
// circuit breaker does, minus the stats).
type countLimit struct {
	max, maxPending int64
	conns, pending  atomic.Int64
	forced          atomic.Int64

	mu    sync.Mutex
	freed chan struct{}
}

func newCountLimit(max, maxPending int64) *countLimit {
	return &countLimit{max: max, maxPending: maxPending, freed: make(chan struct{})}
}

func (l *countLimit) TryOpen() bool {
	for {
		n := l.conns.Load()
		if n >= l.max {
			return false
		}
		if l.conns.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (l *countLimit) ForceOpen() { l.conns.Add(1); l.forced.Add(1) }

func (l *countLimit) Closed() {
	l.conns.Add(-1)
	if l.pending.Load() > 0 {
		l.mu.Lock()
		close(l.freed)
		l.freed = make(chan struct{})
		l.mu.Unlock()
	}
}

func (l *countLimit) Freed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.freed
}

func (l *countLimit) TryPend() bool {
	if l.pending.Add(1) > l.maxPending {
		l.pending.Add(-1)
		return false
	}
	return true
}

func (l *countLimit) Unpend() { l.pending.Add(-1) }

// gatedServer answers GET /slow only once release is closed (or a value
// is sent on it), everything else at once, keeping connections alive.
type gatedServer struct {
	*rawServer
	release chan struct{}
	started atomic.Int32 // /slow requests received
}

func newGatedServer(t *testing.T) *gatedServer {
	g := &gatedServer{release: make(chan struct{}, 16)}
	g.rawServer = newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, _, err := readRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/slow" {
				g.started.Add(1)
				select {
				case <-g.release:
				case <-time.After(10 * time.Second):
				}
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	return g
}

// startSlow starts a /slow round trip on p and returns a channel with its
// outcome (nil or the error), once the body is read.
func startSlow(t *testing.T, p *Pool, ctx context.Context) chan error {
	done := make(chan error, 1)
	go func() {
		_, _, err := do(t, p, ctx, newReq("GET", "/slow"))
		done <- err
	}()
	return done
}

func TestLimitPendingHandOver(t *testing.T) {
	g := newGatedServer(t)
	lim := newCountLimit(1, 1)
	p := newTestPool(t, Options{Addr: g.addr(), Limit: lim})
	ctx := testCtx(t)

	first := startSlow(t, p, ctx)
	waitFor(t, "the first request to reach the server", func() bool { return g.started.Load() == 1 })
	second := startSlow(t, p, ctx)
	waitFor(t, "the second request to wait", func() bool { return lim.pending.Load() == 1 })

	// The queue (1) is full: a third request fails at once.
	start := time.Now()
	_, err := p.RoundTrip(ctx, newReq("GET", "/"))
	if k, sent := kindOf(t, err); k != Overflow || sent || !errors.Is(err, ErrPendingOverflow) {
		t.Fatalf("third request: %v (kind %v, sent %v), want Overflow, not sent", err, k, sent)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("overflow took %v, want at once", d)
	}

	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatalf("first request: %v", err)
	}
	waitFor(t, "the second request to reach the server", func() bool { return g.started.Load() == 2 })
	g.release <- struct{}{}
	if err := <-second; err != nil {
		t.Fatalf("second request: %v", err)
	}
	if got := g.accepted.Load(); got != 1 {
		t.Errorf("server accepted %d connections, want 1 (the second request gets the first's connection)", got)
	}
	if got, want := lim.conns.Load(), int64(1); got != want {
		t.Errorf("limit counts %d connections, want %d", got, want)
	}
	if got := lim.pending.Load(); got != 0 {
		t.Errorf("limit counts %d pending requests, want 0", got)
	}
	p.Close()
	if got := lim.conns.Load(); got != 0 {
		t.Errorf("after Close the limit counts %d connections, want 0", got)
	}
}

func TestLimitWaitEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(p *Pool, cancel context.CancelFunc)
		want Kind
	}{
		{"deadline", func(*Pool, context.CancelFunc) {}, Timeout},
		{"cancel", func(_ *Pool, cancel context.CancelFunc) { cancel() }, Canceled},
		{"pool closed", func(p *Pool, _ context.CancelFunc) { p.Close() }, ConnectFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGatedServer(t)
			lim := newCountLimit(1, 4)
			p := newTestPool(t, Options{Addr: g.addr(), Limit: lim})
			first := startSlow(t, p, testCtx(t))
			waitFor(t, "the first request to reach the server", func() bool { return g.started.Load() == 1 })

			timeout := 10 * time.Second
			if tc.want == Timeout {
				timeout = 300 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := p.RoundTrip(ctx, newReq("GET", "/"))
				done <- err
			}()
			waitFor(t, "the second request to wait", func() bool { return lim.pending.Load() == 1 })
			tc.end(p, cancel)
			err := <-done
			if k, _ := kindOf(t, err); k != tc.want {
				t.Errorf("waiting request: %v (kind %v), want kind %v", err, k, tc.want)
			}
			if got := errors.Is(err, ErrPendingWait); got != (tc.want != ConnectFailure) {
				t.Errorf("errors.Is(%v, ErrPendingWait) = %v", err, got)
			}
			if got := lim.pending.Load(); got != 0 {
				t.Errorf("limit counts %d pending requests, want 0", got)
			}
			g.release <- struct{}{}
			<-first
		})
	}
}

func TestLimitSharedAcrossPools(t *testing.T) {
	ga, gb := newGatedServer(t), newGatedServer(t)
	lim := newCountLimit(2, 4)
	a := newTestPool(t, Options{Addr: ga.addr(), Limit: lim})
	b := newTestPool(t, Options{Addr: gb.addr(), Limit: lim})
	ctx := testCtx(t)

	// a takes the two connections the limit allows.
	a1, a2 := startSlow(t, a, ctx), startSlow(t, a, ctx)
	waitFor(t, "two requests on a", func() bool { return ga.started.Load() == 2 })
	// b has no connection: it opens one regardless.
	b1 := startSlow(t, b, ctx)
	waitFor(t, "a request on b", func() bool { return gb.started.Load() == 1 })
	if got := lim.forced.Load(); got != 1 {
		t.Errorf("forced opens = %d, want 1 (a pool without connections always gets one)", got)
	}
	// A second request on b must wait: the group is over its limit.
	b2 := startSlow(t, b, ctx)
	waitFor(t, "b's second request to wait", func() bool { return lim.pending.Load() == 1 })

	// a's requests end and a closes its idle connections: room frees up,
	// and b's waiting request dials.
	ga.release <- struct{}{}
	ga.release <- struct{}{}
	for _, ch := range []chan error{a1, a2} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	a.CloseIdle()
	waitFor(t, "b's second request to reach the server", func() bool { return gb.started.Load() == 2 })
	gb.release <- struct{}{}
	gb.release <- struct{}{}
	for _, ch := range []chan error{b1, b2} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if got := gb.accepted.Load(); got != 2 {
		t.Errorf("b's server accepted %d connections, want 2", got)
	}
	if got := lim.conns.Load(); got != 2 {
		t.Errorf("limit counts %d connections, want 2 (b's, idle)", got)
	}
}

func TestLimitDialFailureGivesRoomBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	lim := newCountLimit(1, 1)
	p := newTestPool(t, Options{Addr: addr, Limit: lim})
	for range 3 {
		_, err := p.RoundTrip(testCtx(t), newReq("GET", "/"))
		if k, _ := kindOf(t, err); k != ConnectFailure {
			t.Fatalf("round trip to a closed port: %v, want ConnectFailure", err)
		}
	}
	if got := lim.conns.Load(); got != 0 {
		t.Errorf("limit counts %d connections after failed dials, want 0", got)
	}
	if got := p.held.Load(); got != 0 {
		t.Errorf("pool holds %d connections after failed dials, want 0", got)
	}
}
