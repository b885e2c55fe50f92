package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeproxy/edge/edge/stats"
	"github.com/edgeproxy/edge/upstream/http1"
	"github.com/edgeproxy/edge/upstream/http2"
)

// Discovery types, as written in the config.
const (
	typeStatic     = "static"
	typeStrictDNS  = "strict_dns"
	typeLogicalDNS = "logical_dns"
)

// dnsTimeout bounds one resolution of a DNS cluster (all its endpoints).
const dnsTimeout = 5 * time.Second

// ClusterStats are a cluster's counters and gauges, registered with the
// label {cluster: name}. Package edge may count more (response classes)
// under the same label; the zero value counts nothing.
type ClusterStats struct {
	// UpstreamCxTotal counts connections opened
	// (edge_cluster_upstream_cx_total).
	UpstreamCxTotal stats.Counter
	// UpstreamCxActive is the connections open now
	// (edge_cluster_upstream_cx_active).
	UpstreamCxActive stats.Gauge
	// UpstreamCxConnectFail counts failed dials, TLS handshakes and ALPN
	// checks (edge_cluster_upstream_cx_connect_fail).
	UpstreamCxConnectFail stats.Counter
	// UpstreamRqTotal counts requests sent, retries included
	// (edge_cluster_upstream_rq_total).
	UpstreamRqTotal stats.Counter
	// UpstreamRqActive is the requests in flight
	// (edge_cluster_upstream_rq_active).
	UpstreamRqActive stats.Gauge
	// MembershipTotal is the number of hosts
	// (edge_cluster_membership_total).
	MembershipTotal stats.Gauge
	// MembershipHealthy is the number of hosts available to the load
	// balancer: neither failing active health checks nor ejected
	// (edge_cluster_membership_healthy).
	MembershipHealthy stats.Gauge
	// LBHealthyPanic counts picks made in panic: an unavailable host came
	// up while fewer than half the hosts were available, so health was
	// ignored (edge_cluster_lb_healthy_panic; see Cluster.Pick).
	LBHealthyPanic stats.Counter

	// UpstreamCxOverflow counts requests that had to wait, and
	// connections opened beyond the limit, because of max_connections
	// (edge_cluster_upstream_cx_overflow).
	UpstreamCxOverflow stats.Counter
	// UpstreamRqPendingOverflow counts requests refused by max_requests or
	// max_pending_requests (edge_cluster_upstream_rq_pending_overflow).
	UpstreamRqPendingOverflow stats.Counter
	// HealthCheckAttempt, HealthCheckSuccess and HealthCheckFailure count
	// active health checks (edge_cluster_health_check_attempt, _success,
	// _failure).
	HealthCheckAttempt, HealthCheckSuccess, HealthCheckFailure stats.Counter
	// OutlierEjectionsActive is the hosts ejected now
	// (edge_cluster_outlier_detection_ejections_active).
	OutlierEjectionsActive stats.Gauge
	// OutlierEjectionsEnforcedTotal counts ejections
	// (edge_cluster_outlier_detection_ejections_enforced_total).
	OutlierEjectionsEnforcedTotal stats.Counter
	// OutlierEjectionsOverflow counts ejections refused by
	// max_ejection_percent (edge_cluster_outlier_detection_ejections_overflow).
	OutlierEjectionsOverflow stats.Counter
}

func newClusterStats(st *stats.Store, name string) ClusterStats {
	if st == nil {
		return ClusterStats{}
	}
	l := stats.Label{Name: "cluster", Value: name}
	return ClusterStats{
		UpstreamCxTotal:       st.Counter("edge_cluster_upstream_cx_total", "Upstream connections opened.", l),
		UpstreamCxActive:      st.Gauge("edge_cluster_upstream_cx_active", "Upstream connections open.", l),
		UpstreamCxConnectFail: st.Counter("edge_cluster_upstream_cx_connect_fail", "Upstream connection attempts that failed (dial, TLS handshake, ALPN).", l),
		UpstreamRqTotal:       st.Counter("edge_cluster_upstream_rq_total", "Upstream requests sent, retries included.", l),
		UpstreamRqActive:      st.Gauge("edge_cluster_upstream_rq_active", "Upstream requests in flight.", l),
		MembershipTotal:       st.Gauge("edge_cluster_membership_total", "Hosts in the cluster.", l),
		MembershipHealthy:     st.Gauge("edge_cluster_membership_healthy", "Healthy hosts in the cluster.", l),
		LBHealthyPanic:        st.Counter("edge_cluster_lb_healthy_panic", "Picks made while fewer than half the hosts were available, ignoring health.", l),

		UpstreamCxOverflow:            st.Counter("edge_cluster_upstream_cx_overflow", "Requests that waited, or connections opened beyond the limit, because of the max_connections circuit breaker.", l),
		UpstreamRqPendingOverflow:     st.Counter("edge_cluster_upstream_rq_pending_overflow", "Requests refused by the max_requests or max_pending_requests circuit breaker.", l),
		HealthCheckAttempt:            st.Counter("edge_cluster_health_check_attempt", "Active health checks started.", l),
		HealthCheckSuccess:            st.Counter("edge_cluster_health_check_success", "Active health checks passed.", l),
		HealthCheckFailure:            st.Counter("edge_cluster_health_check_failure", "Active health checks failed.", l),
		OutlierEjectionsActive:        st.Gauge("edge_cluster_outlier_detection_ejections_active", "Hosts ejected by outlier detection now.", l),
		OutlierEjectionsEnforcedTotal: st.Counter("edge_cluster_outlier_detection_ejections_enforced_total", "Hosts ejected by outlier detection.", l),
		OutlierEjectionsOverflow:      st.Counter("edge_cluster_outlier_detection_ejections_overflow", "Ejections refused because max_ejection_percent of the hosts were ejected.", l),
	}
}

// Cluster is a compiled cluster: its current host set, load balancer and
// counters. Pick is lock-free; the host set is replaced as a whole.
type Cluster struct {
	// Name is the cluster's name in the config.
	Name string
	// Stats are the cluster's counters and gauges.
	Stats ClusterStats

	typ       string
	protocol  string
	lbPolicy  string
	hash      []hashPolicy // for ring_hash and maglev
	endpoints []endpoint
	refresh   time.Duration
	log       *slog.Logger
	resolver  *net.Resolver

	// Pool settings.
	tls            *tls.Config // base upstream TLS config, nil for cleartext
	connectTimeout time.Duration
	h1MaxIdle      int
	h1IdleTimeout  time.Duration
	h2Conns        int
	h2KeepInterval time.Duration
	h2KeepTimeout  time.Duration

	snap    atomic.Pointer[snapshot]
	logical *Host // the one host of a logical_dns cluster
	bodies  sync.Pool

	mu     sync.Mutex // serializes host-set changes and close
	closed bool

	// Health checking, outlier detection and circuit breakers (health.go,
	// outlier.go, breaker.go).
	resilience
}

// endpoint is one configured endpoint: an IP or DNS name, port and weight.
type endpoint struct {
	host   string
	ip     netip.Addr // valid when host is an IP literal
	port   uint16
	weight uint32
}

// hostSpec describes a host a resolution produced.
type hostSpec struct {
	addr     string // ip:port
	hostname string
	weight   uint32
}

// snapshot is an immutable host set with its balancer.
type snapshot struct {
	hosts []*Host
	lb    *balancer // nil when hosts is empty
}

// Hosts returns the current host set, in endpoint order (addresses of one
// DNS name sorted). The slice must not be modified.
func (c *Cluster) Hosts() []*Host {
	if s := c.snap.Load(); s != nil {
		return s.hosts
	}
	return nil
}

func (c *Cluster) onConnOpen() {
	c.Stats.UpstreamCxTotal.Inc()
	c.Stats.UpstreamCxActive.Inc()
}

func (c *Cluster) onConnClose()   { c.Stats.UpstreamCxActive.Dec() }
func (c *Cluster) onConnectFail() { c.Stats.UpstreamCxConnectFail.Inc() }

// newHost makes a host and its pool. For the logical_dns host, dial is set
// and addr is empty until the first resolution.
func (c *Cluster) newHost(s hostSpec, poolAddr string, dial func(context.Context, string, string) (net.Conn, error)) *Host {
	h := &Host{c: c, hostname: s.hostname, weight: s.weight}
	if s.addr != "" {
		a := s.addr
		h.addr.Store(&a)
	}
	var tc *tls.Config
	if c.tls != nil {
		tc = c.tls.Clone()
		if tc.ServerName == "" {
			// SNI and certificate verification use the DNS name the host
			// came from (its IP for static endpoints).
			tc.ServerName = s.hostname
		}
	}
	switch c.protocol {
	case "http2":
		h.pool = h2Pool{http2.NewPool(http2.Options{
			Addr:               poolAddr,
			TLS:                tc,
			ConnectTimeout:     c.connectTimeout,
			ConnectionsPerHost: c.h2Conns,
			KeepaliveInterval:  c.h2KeepInterval,
			KeepaliveTimeout:   c.h2KeepTimeout,
			OnConnOpen:         c.onConnOpen,
			OnConnClose:        c.onConnClose,
			OnConnectFail:      c.onConnectFail,
			Dial:               dial,
			Limit:              &c.breaker,
		})}
	default:
		h.pool = h1Pool{http1.NewPool(http1.Options{
			Addr:           poolAddr,
			TLS:            tc,
			ConnectTimeout: c.connectTimeout,
			MaxIdle:        c.h1MaxIdle,
			IdleTimeout:    c.h1IdleTimeout,
			OnConnOpen:     c.onConnOpen,
			OnConnClose:    c.onConnClose,
			OnConnectFail:  c.onConnectFail,
			Dial:           dial,
			Limit:          &c.breaker,
		})}
	}
	c.initHealth(h, tc, poolAddr, dial)
	return h
}

// setHosts makes specs the cluster's host set. Hosts whose address,
// hostname and weight stay keep their pools; hosts that left are drained:
// requests in flight on them finish, then their pools close.
func (c *Cluster) setHosts(specs []hostSpec) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	old := c.snap.Load()
	if old != nil && sameHosts(old.hosts, specs) {
		return
	}
	prev := make(map[string]*Host)
	if old != nil {
		for _, h := range old.hosts {
			prev[h.Address()] = h
		}
	}
	hosts := make([]*Host, 0, len(specs))
	added := 0
	for _, s := range specs {
		if h, ok := prev[s.addr]; ok && h.hostname == s.hostname && h.weight == s.weight {
			hosts = append(hosts, h)
			delete(prev, s.addr)
			continue
		}
		hosts = append(hosts, c.newHost(s, s.addr, nil))
		added++
	}
	for _, h := range prev {
		h.drain()
	}
	c.publish(hosts)
	if old != nil {
		c.log.Info("cluster hosts changed", "cluster", c.Name, "hosts", len(hosts), "added", added, "removed", len(prev))
	}
}

// publish stores a new snapshot of hosts. c.mu must be held.
func (c *Cluster) publish(hosts []*Host) {
	s := &snapshot{hosts: hosts}
	if len(hosts) > 0 {
		s.lb = newBalancer(c.lbPolicy, hosts)
	}
	c.snap.Store(s)
	c.Stats.MembershipTotal.Set(int64(len(hosts)))
	c.hostsPublished(hosts)
}

func sameHosts(hosts []*Host, specs []hostSpec) bool {
	if len(hosts) != len(specs) {
		return false
	}
	for i, h := range hosts {
		s := specs[i]
		if h.Address() != s.addr || h.hostname != s.hostname || h.weight != s.weight {
			return false
		}
	}
	return true
}

// resolve runs one DNS resolution of a strict_dns or logical_dns cluster
// and applies it. On error the host set is left as it was.
func (c *Cluster) resolve(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	if c.typ == typeLogicalDNS {
		return c.resolveLogical(ctx)
	}
	return c.resolveStrict(ctx)
}

// resolveStrict makes every address of every endpoint a host.
func (c *Cluster) resolveStrict(ctx context.Context) error {
	specs := make([]hostSpec, 0, len(c.endpoints))
	seen := make(map[string]bool)
	for _, ep := range c.endpoints {
		addrs, err := c.lookup(ctx, ep)
		if err != nil {
			return err
		}
		// Sorted, so that DNS servers rotating their answers do not
		// reorder (and rebuild) the host set.
		slices.SortFunc(addrs, netip.Addr.Compare)
		for _, a := range addrs {
			ap := netip.AddrPortFrom(a, ep.port).String()
			if seen[ap] {
				continue // the first endpoint that yields an address wins
			}
			seen[ap] = true
			specs = append(specs, hostSpec{addr: ap, hostname: ep.host, weight: ep.weight})
		}
	}
	c.setHosts(specs)
	return nil
}

// resolveLogical points the cluster's one host at the first address of its
// endpoint. Its pool dials that address for new connections and keeps the
// connections it has.
func (c *Cluster) resolveLogical(ctx context.Context) error {
	ep := c.endpoints[0]
	addrs, err := c.lookup(ctx, ep)
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		return fmt.Errorf("resolving %s: no addresses", ep.host)
	}
	ap := netip.AddrPortFrom(addrs[0], ep.port).String()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	h := c.logical
	prev := h.Address()
	if prev == ap {
		return nil
	}
	h.addr.Store(&ap)
	if prev == "" {
		c.publish([]*Host{h})
	} else {
		c.log.Info("logical_dns cluster address changed", "cluster", c.Name, "from", prev, "to", ap)
	}
	return nil
}

// lookup returns the addresses of ep: itself for an IP literal.
func (c *Cluster) lookup(ctx context.Context, ep endpoint) ([]netip.Addr, error) {
	if ep.ip.IsValid() {
		return []netip.Addr{ep.ip}, nil
	}
	addrs, err := c.resolver.LookupNetIP(ctx, "ip", ep.host)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", ep.host, err)
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs, nil
}

// logicalDial dials the logical_dns host's current address, whatever
// address the pool asks for.
func (c *Cluster) logicalDial(ctx context.Context, network, _ string) (net.Conn, error) {
	addr := c.logical.Address()
	if addr == "" {
		return nil, fmt.Errorf("cluster %s: %s not resolved yet", c.Name, c.endpoints[0].host)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// refreshLoop re-resolves the cluster every refresh interval until ctx
// ends. A failed resolution keeps the previous hosts and is logged.
func (c *Cluster) refreshLoop(ctx context.Context) {
	t := time.NewTimer(c.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.resolve(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("DNS refresh failed; keeping the previous hosts", "cluster", c.Name, "err", err)
		}
		t.Reset(c.refresh)
	}
}

// close drains every host and empties the host set.
func (c *Cluster) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	if s := c.snap.Load(); s != nil {
		for _, h := range s.hosts {
			h.drain()
		}
	}
	if c.logical != nil {
		c.logical.drain()
	}
	c.snap.Store(&snapshot{})
}

// parseEndpoint splits host:port.
func parseEndpoint(addr string) (endpoint, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return endpoint{}, fmt.Errorf("invalid endpoint %q: write host:port", addr)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return endpoint{}, fmt.Errorf("invalid port in %q: use 1-65535", addr)
	}
	ep := endpoint{host: host, port: uint16(port)}
	if ip, err := netip.ParseAddr(host); err == nil {
		ep.ip = ip.Unmap()
	}
	return ep, nil
}
