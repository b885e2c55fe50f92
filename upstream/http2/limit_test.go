package http2

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
)

// countLimit is a complete Limit: at most max connections across the
// pools sharing it (package upstream's max_connections, minus the stats).
type countLimit struct {
	max           int64
	conns, forced atomic.Int64
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
func (l *countLimit) Closed()    { l.conns.Add(-1) }

func TestLimitBoundsConnections(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			<-release
		}
		io.WriteString(w, "ok")
	})
	sa, sb := newH2C(t, "127.0.0.1:0", h), newH2C(t, "127.0.0.1:0", h)
	lim := &countLimit{max: 1}
	a := NewPool(Options{Addr: sa.addr, ConnectionsPerHost: 4, Limit: lim})
	b := NewPool(Options{Addr: sb.addr, ConnectionsPerHost: 4, Limit: lim})
	defer b.Close()

	// Streams that stay open make the pool want more connections; the
	// limit keeps it at one, and every request still succeeds on it.
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 6 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			resp, err := a.RoundTrip(ctx, get("a.test", "/slow"))
			if err != nil {
				t.Errorf("slow request: %v", err)
				failed.Add(1)
				return
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
		})
	}
	waitFor(t, "six streams on a", func() bool { _, s := a.Stats(); return s+int(failed.Load()) == 6 })
	if got := sa.conns.Load(); got != 1 {
		t.Errorf("a's server saw %d connections, want 1 (the limit)", got)
	}
	// b has no connection: it gets one beyond the limit.
	do(t, b, get("b.test", "/"))
	if got := lim.forced.Load(); got != 1 {
		t.Errorf("forced opens = %d, want 1", got)
	}
	close(release)
	wg.Wait()
	if got := lim.conns.Load(); got != 2 {
		t.Errorf("limit counts %d connections, want 2", got)
	}
	a.Close()
	waitFor(t, "a's connection to give its room back", func() bool { return lim.conns.Load() == 1 })
}

func TestLimitDialFailureGivesRoomBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	lim := &countLimit{max: 1}
	p := NewPool(Options{Addr: addr, Limit: lim})
	defer p.Close()
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		_, err := p.RoundTrip(ctx, get("x.test", "/"))
		cancel()
		if e := asError(t, err); e.Kind != ConnectFailure {
			t.Fatalf("round trip to a closed port: %v, want ConnectFailure", err)
		}
	}
	if got := lim.conns.Load(); got != 0 {
		t.Errorf("limit counts %d connections after failed dials, want 0", got)
	}
}
