package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/edge/stats"
	edgetls "github.com/edgeproxy/edge/tls"
)

// Options are what NewSet needs besides the config.
type Options struct {
	// Logger receives DNS failures and host-set changes; nil discards
	// them.
	Logger *slog.Logger
	// Stats is where cluster stats are registered; nil counts nothing.
	Stats *stats.Store
	// Resolver resolves strict_dns and logical_dns endpoints; nil means
	// net.DefaultResolver.
	Resolver *net.Resolver
}

// Set is every cluster of one config, compiled.
type Set struct {
	clusters []*Cluster
	index    map[string]int
	log      *slog.Logger

	mu      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	loops   sync.WaitGroup
}

// NewSet compiles cfg.Clusters: it parses endpoints, loads upstream TLS
// files and builds the hosts of static clusters. It does no network I/O:
// DNS clusters have no hosts until Start. Errors are config.Errors that
// point at the config (e.g. an unreadable CA file).
func NewSet(cfg *config.Config, o Options) (*Set, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	resolver := o.Resolver
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	s := &Set{index: make(map[string]int, len(cfg.Clusters)), log: log}
	var errs config.Errors
	for i := range cfg.Clusters {
		cc := &cfg.Clusters[i]
		c, ce := newCluster(cfg, i, cc, log, resolver, o.Stats)
		errs = append(errs, ce...)
		s.index[cc.Name] = len(s.clusters)
		s.clusters = append(s.clusters, c)
	}
	if len(errs) > 0 {
		s.closeClusters()
		return nil, errs
	}
	return s, nil
}

func newCluster(cfg *config.Config, i int, cc *config.Cluster, log *slog.Logger, resolver *net.Resolver, st *stats.Store) (*Cluster, config.Errors) {
	path := fmt.Sprintf("clusters[%d]", i)
	c := &Cluster{
		Name:           cc.Name,
		Stats:          newClusterStats(st, cc.Name),
		typ:            cc.Type,
		protocol:       cc.Protocol,
		lbPolicy:       cc.LBPolicy,
		refresh:        cc.DNSRefreshRate.D(),
		log:            log,
		resolver:       resolver,
		connectTimeout: cc.ConnectTimeout.D(),
		h1MaxIdle:      cc.HTTP1.MaxIdleConnections,
		h1IdleTimeout:  cc.HTTP1.IdleTimeout.D(),
		h2Conns:        cc.HTTP2.ConnectionsPerHost,
		h2KeepInterval: cc.HTTP2.KeepaliveInterval.D(),
		h2KeepTimeout:  cc.HTTP2.KeepaliveTimeout.D(),
	}
	c.bodies.New = func() any { return new(hostBody) }
	c.epoch = time.Now()
	c.breaker.init(&cc.CircuitBreakers, &c.Stats)
	c.health = newHealthCheck(cc.HealthCheck, cc.TLS != nil)
	c.outlier = newOutlierDetection(cc.OutlierDetection)
	var errs config.Errors
	switch c.typ {
	case typeStatic, typeStrictDNS, typeLogicalDNS:
	default:
		errs = append(errs, cfg.Errorf(cc.KeyPos("type"), path+".type", "unknown type %q: use static, strict_dns or logical_dns", c.typ))
	}
	if c.protocol == "" {
		c.protocol = "http1"
	}
	if _, err := parsePolicy(c.lbPolicy); err != nil {
		errs = append(errs, cfg.Errorf(cc.KeyPos("lb_policy"), path+".lb_policy", "%v", err))
	}
	c.hash = newHashPolicies(cc.HashPolicy)
	if c.refresh <= 0 {
		c.refresh = config.DefaultDNSRefreshRate
	}
	if cc.TLS != nil {
		proto := "http/1.1"
		if c.protocol == "http2" {
			proto = "h2"
		}
		tc, err := edgetls.ClientConfig(cfg, path+".tls", cc.TLS, []string{proto})
		var ce config.Errors
		switch {
		case errors.As(err, &ce):
			errs = append(errs, ce...)
		case err != nil:
			errs = append(errs, cfg.Errorf(cc.KeyPos("tls"), path+".tls", "%v", err))
		}
		c.tls = tc
	}
	for j := range cc.Endpoints {
		e := &cc.Endpoints[j]
		ep, err := parseEndpoint(e.Address)
		if err == nil && c.typ == typeStatic && !ep.ip.IsValid() {
			err = fmt.Errorf("%q is not an IP address: a static cluster needs IP:port; use type: strict_dns for DNS names", e.Address)
		}
		if err != nil {
			errs = append(errs, cfg.Errorf(e.Pos(), fmt.Sprintf("%s.endpoints[%d]", path, j), "%v", err))
			continue
		}
		ep.weight = max(e.Weight, 1)
		c.endpoints = append(c.endpoints, ep)
	}
	if len(errs) > 0 {
		return c, errs
	}
	switch c.typ {
	case typeStatic:
		specs := make([]hostSpec, 0, len(c.endpoints))
		seen := make(map[string]bool)
		for _, ep := range c.endpoints {
			addr := net.JoinHostPort(ep.ip.String(), fmt.Sprint(ep.port))
			if !seen[addr] {
				seen[addr] = true
				specs = append(specs, hostSpec{addr: addr, hostname: ep.host, weight: ep.weight})
			}
		}
		c.setHosts(specs)
	case typeLogicalDNS:
		if len(c.endpoints) != 1 {
			return c, config.Errors{cfg.Errorf(cc.KeyPos("endpoints"), path+".endpoints", "a logical_dns cluster has exactly one endpoint (a DNS name); use strict_dns for several")}
		}
		ep := c.endpoints[0]
		c.logical = c.newHost(hostSpec{hostname: ep.host, weight: ep.weight}, net.JoinHostPort(ep.host, fmt.Sprint(ep.port)), c.logicalDial)
	}
	return c, nil
}

// Index maps cluster names to their index in Clusters (for the router).
// The map must not be modified.
func (s *Set) Index() map[string]int { return s.index }

// Cluster returns the cluster at index i.
func (s *Set) Cluster(i int) *Cluster { return s.clusters[i] }

// Clusters returns every cluster, in config order. The slice must not be
// modified.
func (s *Set) Clusters() []*Cluster { return s.clusters }

// Start warms the clusters up, concurrently: it resolves every DNS
// cluster once (each bounded by 5s and ctx), then starts the health
// checkers of clusters with health_check and waits for their first round
// of checks (each bounded by the check timeout). Then it starts one
// refresh loop per DNS cluster and one outlier-detection sweep per cluster
// with outlier_detection; they, and the health checkers, run until ctx
// ends or Close. A non-nil error lists the clusters whose first resolution
// failed; they stay without hosts until a refresh succeeds, and their
// loops run regardless, so a caller may log the error and go on. Start may
// be called once.
func (s *Set) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started || s.closed {
		s.mu.Unlock()
		return errors.New("upstream: Set.Start called twice or after Close")
	}
	s.started = true
	loopCtx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.mu.Unlock()

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, c := range s.clusters {
		wg.Go(func() {
			if c.typ != typeStatic {
				if err := c.resolve(loopCtx); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("cluster %s: %w", c.Name, err))
					mu.Unlock()
				}
			}
			// Health checking starts with the warm-up, and its first
			// round (each check bounded by the timeout) completes before
			// Start returns, so that traffic starts with real host states.
			if firsts := c.startHealth(loopCtx); len(firsts) > 0 {
				waitFirstChecks(loopCtx, firsts, c.health.timeout+time.Second)
			}
		})
	}
	wg.Wait()
	// Under mu, so that Close either sees every loop started or none.
	s.mu.Lock()
	if !s.closed {
		for _, c := range s.clusters {
			if c.typ != typeStatic {
				s.loops.Go(func() { c.refreshLoop(loopCtx) })
			}
			if c.outlier != nil {
				s.loops.Go(func() { c.outlierLoop(loopCtx) })
			}
		}
	}
	s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// Close stops the DNS loops, health checkers and outlier sweeps (waiting
// for them to end) and takes every host out of service. Requests
// in flight finish; each host's pool closes when its last one ends. Pick
// returns ErrNoHealthyEndpoint afterwards.
func (s *Set) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	cancel := s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	s.loops.Wait()
	s.closeClusters()
	for _, c := range s.clusters {
		if c.health != nil {
			c.health.wg.Wait()
		}
	}
}

func (s *Set) closeClusters() {
	for _, c := range s.clusters {
		c.close()
	}
}
