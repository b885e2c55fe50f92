package upstream

import (
	"context"
	"errors"
	"time"

	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/upstream/http1"
)

// maxEjectionTime caps an ejection (Envoy's max_ejection_time default).
const maxEjectionTime = 300 * time.Second

// Why a host is ejected, for the log.
const (
	reason5xx     = "consecutive 5xx"
	reasonGateway = "consecutive gateway failures"
)

// outlierDetection is a cluster's passive health checking
// (outlier_detection), fed by every Host.RoundTrip result.
type outlierDetection struct {
	consecutive5xx     int32 // 0: disabled
	consecutiveGateway int32 // 0: disabled
	interval           time.Duration
	baseEjectionTime   time.Duration
	maxEjectionPercent int
}

func newOutlierDetection(cfg *config.OutlierDetection) *outlierDetection {
	if cfg == nil {
		return nil
	}
	od := &outlierDetection{
		consecutive5xx:     int32(max(cfg.Consecutive5xx, 0)),
		consecutiveGateway: int32(max(cfg.ConsecutiveGatewayFailure, 0)),
		interval:           cfg.Interval.D(),
		baseEjectionTime:   cfg.BaseEjectionTime.D(),
		maxEjectionPercent: min(max(cfg.MaxEjectionPercent, 0), 100),
	}
	if od.interval <= 0 {
		od.interval = 10 * time.Second
	}
	if od.baseEjectionTime <= 0 {
		od.baseEjectionTime = 30 * time.Second
	}
	return od
}

// now is the cluster's monotonic clock for ejections, in nanoseconds.
func (c *Cluster) now() int64 { return int64(time.Since(c.epoch)) }

// outlierStatus counts a response status from h: a 5xx adds to the
// consecutive 5xx count (502, 503 and 504 also to the consecutive gateway
// failures, another 5xx resets those), anything else resets both. It is
// lock-free: an atomic add per failure, an atomic load per success.
func (h *Host) outlierStatus(status int) {
	if status >= 500 {
		h.outlierFailure(status >= 502 && status <= 504)
		return
	}
	if h.hs.cons5xx.Load() != 0 {
		h.hs.cons5xx.Store(0)
	}
	if h.hs.consGateway.Load() != 0 {
		h.hs.consGateway.Store(0)
	}
}

// outlierError counts a failed round trip to h. Connect failures, resets,
// refused streams, timeouts and protocol errors are the upstream's doing:
// they count as gateway failures (and 5xx), as Envoy counts local-origin
// errors when it does not split them. Cancellations, request-body errors,
// overflows and timeouts spent waiting for a connection under
// max_connections are not the host's fault and count as nothing.
func (h *Host) outlierError(e *Error) {
	switch e.Kind {
	case Timeout:
		if errors.Is(e.Err, http1.ErrPendingWait) {
			return
		}
		h.outlierFailure(true)
	case ConnectFailure, Reset, RefusedStream, Protocol:
		h.outlierFailure(true)
	}
}

func (h *Host) outlierFailure(gateway bool) {
	od := h.c.outlier
	hs := &h.hs
	if od.consecutiveGateway > 0 {
		if gateway {
			if hs.consGateway.Add(1) == od.consecutiveGateway {
				h.c.eject(h, reasonGateway)
			}
		} else if hs.consGateway.Load() != 0 {
			hs.consGateway.Store(0)
		}
	}
	if od.consecutive5xx > 0 && hs.cons5xx.Add(1) == od.consecutive5xx {
		h.c.eject(h, reason5xx)
	}
}

// eject takes h out of load balancing for base_ejection_time times its
// ejection multiplier (which grows by one per ejection and shrinks by one
// per interval sweep spent un-ejected, as in Envoy), at most 300 s, unless
// that would eject more than max_ejection_percent of the cluster's hosts:
// then the ejection is refused and counted as an overflow. As in Envoy, the
// count that reached its threshold restarts from zero either way.
func (c *Cluster) eject(h *Host, reason string) {
	od := c.outlier
	c.hmu.Lock()
	defer c.hmu.Unlock()
	hs := &h.hs
	if reason == reason5xx {
		hs.cons5xx.Store(0)
	} else {
		hs.consGateway.Store(0)
	}
	f := hs.flags.Load()
	if f&hostEjected != 0 || h.draining.Load() {
		return
	}
	hosts := c.Hosts()
	in, ejected := false, 0
	for _, o := range hosts {
		in = in || o == h
		if o.hs.flags.Load()&hostEjected != 0 {
			ejected++
		}
	}
	if !in {
		return // left the set meanwhile
	}
	if 100*(ejected+1) > od.maxEjectionPercent*len(hosts) {
		c.Stats.OutlierEjectionsOverflow.Inc()
		c.log.Warn("upstream host not ejected: max_ejection_percent reached", "cluster", c.Name, "upstream", h.Address(), "reason", reason, "ejected", ejected, "hosts", len(hosts))
		return
	}
	base := od.baseEjectionTime
	if time.Duration(hs.multiplier)*base < maxEjectionTime+base {
		hs.multiplier++
	}
	hs.ejections++
	d := min(time.Duration(hs.multiplier)*base, maxEjectionTime)
	hs.ejectedUntil.Store(c.now() + int64(d))
	hs.flags.Store(f | hostEjected)
	c.Stats.OutlierEjectionsEnforcedTotal.Inc()
	c.updateMembershipLocked()
	c.log.Warn("upstream host ejected", "cluster", c.Name, "upstream", h.Address(), "reason", reason, "for", d, "times_ejected", hs.ejections)
}

// unejectedLocked records that h's ejection ended; the caller clears the
// flag and updates the gauges. c.hmu must be held.
func (c *Cluster) unejectedLocked(h *Host, why string) {
	h.hs.unejectedAt = c.now()
	c.log.Info("upstream host returns from ejection", "cluster", c.Name, "upstream", h.Address(), "why", why)
}

// uneject ends h's ejection. c.hmu must be held and h ejected.
func (c *Cluster) unejectLocked(h *Host, why string) {
	h.hs.flags.Store(h.hs.flags.Load() &^ hostEjected)
	c.unejectedLocked(h, why)
	c.updateMembershipLocked()
}

// unejectExpired ends h's ejection if its time is up (the lazy path of
// available) and reports whether h is available.
func (c *Cluster) unejectExpired(h *Host) bool {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	f := h.hs.flags.Load()
	if f&hostEjected != 0 && c.now() >= h.hs.ejectedUntil.Load() {
		c.unejectLocked(h, "ejection time over")
		f &^= hostEjected
	}
	return f == 0
}

// outlierSweep is Envoy's interval timer: it ends the ejections whose time
// is up and lowers by one the ejection multiplier of every host that has
// stayed un-ejected for an interval.
func (c *Cluster) outlierSweep() {
	od := c.outlier
	c.hmu.Lock()
	defer c.hmu.Unlock()
	now := c.now()
	for _, h := range c.Hosts() {
		hs := &h.hs
		if hs.flags.Load()&hostEjected != 0 {
			if now >= hs.ejectedUntil.Load() {
				c.unejectLocked(h, "ejection time over")
			}
			continue
		}
		if hs.multiplier > 0 && hs.unejectedAt != 0 && now-hs.unejectedAt >= int64(od.interval) {
			hs.multiplier--
		}
	}
}

// outlierLoop runs outlierSweep every interval until ctx ends.
func (c *Cluster) outlierLoop(ctx context.Context) {
	t := time.NewTicker(c.outlier.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.outlierSweep()
		}
	}
}
