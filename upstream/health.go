package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/edge/message"
	"github.com/edgeproxy/edge/upstream/http1"
	"github.com/edgeproxy/edge/upstream/http2"
)

// Host health flags (hostState.flags). A host with no flag set is healthy
// and available to the load balancer.
const (
	// hostFailedHC: failing active health checks, or not checked yet.
	hostFailedHC uint32 = 1 << iota
	// hostPendingHC: no health check has completed yet (with hostFailedHC);
	// the first success makes the host healthy, whatever
	// healthy_threshold says.
	hostPendingHC
	// hostEjected: ejected by outlier detection.
	hostEjected
)

// healthUserAgent is the user-agent of HTTP health checks.
const healthUserAgent = "edge-health-check"

// maxCheckBody bounds the response body a health check reads (and
// discards) to keep its connection reusable.
const maxCheckBody = 64 << 10

// resilience is the per-cluster state of health checking, outlier
// detection and circuit breaking, embedded in Cluster.
type resilience struct {
	breaker breaker
	health  *healthCheck      // nil without health_check
	outlier *outlierDetection // nil without outlier_detection
	// epoch is the origin of the outlier-detection clock (now).
	epoch time.Time
	// hmu serializes changes of host health flags, the outlier state
	// guarded by it, and the membership and ejection gauges, so that the
	// gauges are exact. Lock order: Cluster.mu, then hmu.
	hmu sync.Mutex
}

// hostState is a host's health: flags read lock-free by the balancer, and
// the counters of outlier detection and health checking.
type hostState struct {
	flags atomic.Uint32
	// Outlier detection (outlier.go): consecutive failures, updated on
	// every response without a lock, and the current ejection's end.
	cons5xx      atomic.Int32
	consGateway  atomic.Int32
	ejectedUntil atomic.Int64 // Cluster.now() value

	// Guarded by Cluster.hmu.
	ejections   uint32 // times ejected, ever
	multiplier  uint32 // current ejection-time multiplier
	unejectedAt int64  // Cluster.now() of the last un-ejection, 0 if none

	check *hostCheck // active health checking; nil without
}

// available reports whether h may take requests: not failing active
// health checks and not ejected by outlier detection. The balancer calls
// it on every pick: for a healthy host it is one atomic load. An ejection
// whose time is up ends here (lazily, with a lock, once) if the interval
// sweep has not ended it yet.
func (h *Host) available() bool {
	f := h.hs.flags.Load()
	if f == 0 {
		return true
	}
	if f == hostEjected && h.c.now() >= h.hs.ejectedUntil.Load() {
		return h.c.unejectExpired(h)
	}
	return false
}

// healthString renders h's flags as Envoy's /clusters health_flags do:
// "healthy", or the failures joined by "/".
func healthString(f uint32) string {
	if f == 0 {
		return "healthy"
	}
	var parts []string
	if f&hostFailedHC != 0 {
		parts = append(parts, "failed_active_hc")
	}
	if f&hostPendingHC != 0 {
		parts = append(parts, "pending_active_hc")
	}
	if f&hostEjected != 0 {
		parts = append(parts, "ejected")
	}
	return strings.Join(parts, "/")
}

// updateMembershipLocked recounts the healthy and ejected hosts of the
// current host set into their gauges. c.hmu must be held.
func (c *Cluster) updateMembershipLocked() {
	healthy, ejected := 0, 0
	for _, h := range c.Hosts() {
		f := h.hs.flags.Load()
		if f == 0 {
			healthy++
		}
		if f&hostEjected != 0 {
			ejected++
		}
	}
	c.Stats.MembershipHealthy.Set(int64(healthy))
	c.Stats.OutlierEjectionsActive.Set(int64(ejected))
}

// hostsPublished runs when a new host set is published (c.mu held): it
// starts health checking of new hosts once Start has run, and recounts
// the membership gauges.
func (c *Cluster) hostsPublished(hosts []*Host) {
	if hc := c.health; hc != nil && hc.ctx != nil {
		for _, h := range hosts {
			c.startCheck(h)
		}
	}
	c.hmu.Lock()
	c.updateMembershipLocked()
	c.hmu.Unlock()
}

// initHealth sets up a new host's health state: with health checking it
// starts failed and pending, as in Envoy, and gets its own check pool.
func (c *Cluster) initHealth(h *Host, tc *tls.Config, poolAddr string, dial func(context.Context, string, string) (net.Conn, error)) {
	hc := c.health
	if hc == nil {
		return
	}
	h.hs.flags.Store(hostFailedHC | hostPendingHC)
	chk := &hostCheck{first: make(chan struct{}), dial: dial}
	if !hc.tcp {
		chk.authority = c.Name
		if c.typ != typeStatic {
			chk.authority = h.hostname
		}
		chk.pool = c.newCheckPool(tc, poolAddr, dial)
	}
	h.hs.check = chk
}

// healthCheck is a cluster's active health checking (health_check).
type healthCheck struct {
	path               string // HTTP GET path; empty for TCP checks
	tcp                bool
	interval, timeout  time.Duration
	unhealthyThreshold int
	healthyThreshold   int
	scheme             string

	// ctx is the checkers' lifetime, set by Start (under Cluster.mu); nil
	// before.
	ctx context.Context
	wg  sync.WaitGroup // running checkers
}

func newHealthCheck(cfg *config.HealthCheck, tlsOn bool) *healthCheck {
	if cfg == nil {
		return nil
	}
	hc := &healthCheck{
		path:               cfg.Path,
		tcp:                cfg.TCP,
		interval:           cfg.Interval.D(),
		timeout:            cfg.Timeout.D(),
		unhealthyThreshold: max(cfg.UnhealthyThreshold, 1),
		healthyThreshold:   max(cfg.HealthyThreshold, 1),
		scheme:             "http",
	}
	if tlsOn {
		hc.scheme = "https"
	}
	if hc.interval <= 0 {
		hc.interval = 5 * time.Second
	}
	if hc.timeout <= 0 {
		hc.timeout = time.Second
	}
	return hc
}

// hostCheck is one host's active health checking.
type hostCheck struct {
	pool      pool // HTTP checks: a pool of the cluster's protocol for checks only
	authority string
	dial      func(context.Context, string, string) (net.Conn, error) // logical_dns: the cluster's dial; else nil
	first     chan struct{}                                           // closed once the first check has counted, or the checker stopped
	firstOnce sync.Once

	// Guarded by Cluster.hmu.
	cancel     context.CancelFunc // stops the checker; nil until started
	stopped    bool               // the host left the set: results no longer count
	successes  int                // consecutive
	failures   int                // consecutive
	lastFailed string             // the last failure, for the log
}

func (k *hostCheck) firstDone() { k.firstOnce.Do(func() { close(k.first) }) }

// closePool closes the check pool of an HTTP check (idempotent).
func (k *hostCheck) closePool() {
	if k.pool != nil {
		k.pool.Close()
	}
}

// newCheckPool makes the pool HTTP health checks of one host use: the
// cluster's protocol and TLS, one connection kept between checks (Envoy's
// reuse_connection), and no connection stats or circuit breaker, so that
// checks never compete with traffic.
func (c *Cluster) newCheckPool(tc *tls.Config, addr string, dial func(context.Context, string, string) (net.Conn, error)) pool {
	if c.protocol == "http2" {
		return h2Pool{http2.NewPool(http2.Options{
			Addr:               addr,
			TLS:                tc,
			ConnectTimeout:     c.connectTimeout,
			ConnectionsPerHost: 1,
			KeepaliveInterval:  c.h2KeepInterval,
			KeepaliveTimeout:   c.h2KeepTimeout,
			Dial:               dial,
		})}
	}
	return h1Pool{http1.NewPool(http1.Options{
		Addr:           addr,
		TLS:            tc,
		ConnectTimeout: c.connectTimeout,
		MaxIdle:        1,
		Dial:           dial,
	})}
}

// startHealth starts checking every current host with lifetime ctx
// (Set.Start) and returns, for the warm-up, the channels closed when each
// host's first check has counted.
func (c *Cluster) startHealth(ctx context.Context) []chan struct{} {
	hc := c.health
	if hc == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || hc.ctx != nil {
		return nil
	}
	hc.ctx = ctx
	var firsts []chan struct{}
	for _, h := range c.Hosts() {
		if c.startCheck(h) {
			firsts = append(firsts, h.hs.check.first)
		}
	}
	return firsts
}

// startCheck starts h's checker unless it runs already, has stopped or h
// is draining. c.mu must be held and c.health.ctx set.
func (c *Cluster) startCheck(h *Host) bool {
	k := h.hs.check
	if k == nil || c.closed {
		return false
	}
	c.hmu.Lock()
	defer c.hmu.Unlock()
	if k.cancel != nil || k.stopped || h.draining.Load() {
		return false
	}
	ctx, cancel := context.WithCancel(c.health.ctx)
	k.cancel = cancel
	c.health.wg.Go(func() { c.runCheck(ctx, h, k) })
	return true
}

// stopCheck stops h's health checking for good (h left the set or the
// cluster closed): its results no longer count and its pool closes.
func (h *Host) stopCheck() {
	k := h.hs.check
	if k == nil {
		return
	}
	c := h.c
	c.hmu.Lock()
	k.stopped = true
	cancel := k.cancel
	c.hmu.Unlock()
	if cancel != nil {
		cancel() // the checker closes the pool as it exits
	} else {
		k.closePool()
		k.firstDone()
	}
}

// runCheck checks h every interval (plus up to 10% jitter, so that the
// checks of many hosts spread out), the first time at once, until ctx
// ends.
func (c *Cluster) runCheck(ctx context.Context, h *Host, k *hostCheck) {
	defer k.firstDone()
	defer k.closePool()
	hc := c.health
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := c.checkOnce(ctx, h, k)
		if ctx.Err() != nil {
			return // stopping: an interrupted check does not count
		}
		c.checkResult(h, k, err)
		k.firstDone()
		t.Reset(hc.interval + rand.N(hc.interval/10+1))
	}
}

// checkOnce runs one health check of h: a TCP connect, or GET path over
// the host's check pool expecting a 2xx status. Every check is bounded by
// the timeout.
func (c *Cluster) checkOnce(ctx context.Context, h *Host, k *hostCheck) error {
	hc := c.health
	c.Stats.HealthCheckAttempt.Inc()
	ctx, cancel := context.WithTimeout(ctx, hc.timeout)
	defer cancel()
	if hc.tcp {
		dial := k.dial
		if dial == nil {
			var d net.Dialer
			dial = d.DialContext
		}
		conn, err := dial(ctx, "tcp", h.Address())
		if err != nil {
			return err
		}
		return conn.Close()
	}
	req := &message.Request{Method: "GET", Scheme: hc.scheme, Authority: k.authority, Path: hc.path, ProtoMajor: 1}
	req.Header.Set("user-agent", healthUserAgent)
	resp, err := k.pool.RoundTrip(ctx, req)
	if err != nil {
		return err
	}
	_, rerr := io.CopyN(io.Discard, resp.Body, maxCheckBody)
	status := resp.Status
	k.pool.release(resp)
	if rerr != nil && !errors.Is(rerr, io.EOF) {
		return fmt.Errorf("reading the response body: %w", rerr)
	}
	if status < 200 || status > 299 {
		return fmt.Errorf("status %d, want 2xx", status)
	}
	return nil
}

// checkResult counts one check of h: unhealthy_threshold consecutive
// failures fail a healthy host, healthy_threshold consecutive successes
// (one for a host never checked before) make it healthy again. A success
// also ends an outlier ejection (Envoy's
// successful_active_health_check_uneject_host).
func (c *Cluster) checkResult(h *Host, k *hostCheck, err error) {
	hc := c.health
	c.hmu.Lock()
	defer c.hmu.Unlock()
	if k.stopped {
		return
	}
	old := h.hs.flags.Load()
	f := old
	if err == nil {
		c.Stats.HealthCheckSuccess.Inc()
		k.failures = 0
		k.successes++
		if f&hostFailedHC != 0 && (f&hostPendingHC != 0 || k.successes >= hc.healthyThreshold) {
			f &^= hostFailedHC | hostPendingHC
			if k.lastFailed != "" {
				c.log.Info("upstream host passes health checks again", "cluster", c.Name, "upstream", h.Address())
			}
		}
		if f&hostEjected != 0 && f&hostFailedHC == 0 {
			f &^= hostEjected
			c.unejectedLocked(h, "active health check passed")
		}
	} else {
		c.Stats.HealthCheckFailure.Inc()
		k.successes = 0
		k.failures++
		k.lastFailed = err.Error()
		switch {
		case f&hostPendingHC != 0:
			// The first check failed: the host stays unhealthy.
			f &^= hostPendingHC
			c.log.Warn("upstream host fails its first health check", "cluster", c.Name, "upstream", h.Address(), "err", err)
		case f&hostFailedHC == 0 && k.failures >= hc.unhealthyThreshold:
			f |= hostFailedHC
			c.log.Warn("upstream host fails health checks", "cluster", c.Name, "upstream", h.Address(), "failures", k.failures, "err", err)
		}
	}
	if f != old {
		h.hs.flags.Store(f)
		c.updateMembershipLocked()
	}
}

// waitFirstChecks waits until every channel in firsts is closed, ctx ends
// or bound passes.
func waitFirstChecks(ctx context.Context, firsts []chan struct{}, bound time.Duration) {
	if len(firsts) == 0 {
		return
	}
	t := time.NewTimer(bound)
	defer t.Stop()
	for _, ch := range firsts {
		select {
		case <-ch:
		case <-ctx.Done():
			return
		case <-t.C:
			return
		}
	}
}
