package upstream

// ClusterInfo describes a cluster for the admin API (/clusters).
type ClusterInfo struct {
	Name     string     `json:"name"`
	Type     string     `json:"type"`
	Protocol string     `json:"protocol"`
	LBPolicy string     `json:"lb_policy"`
	Hosts    []HostInfo `json:"hosts"`
	// CircuitBreakers are the cluster's limits and current counts.
	CircuitBreakers BreakerInfo `json:"circuit_breakers"`
}

// HostInfo describes one host of a cluster.
type HostInfo struct {
	// Address is ip:port ("" for a logical_dns host not yet resolved).
	Address string `json:"address"`
	// Hostname is the DNS name the host came from, or its IP.
	Hostname string `json:"hostname"`
	Weight   uint32 `json:"weight"`
	// ActiveRequests is the requests in flight on the host.
	ActiveRequests int64 `json:"active_requests"`
	// Health is "healthy", or what keeps the host from traffic, as
	// Envoy's health_flags, joined by "/": "failed_active_hc" (failing
	// active health checks), "pending_active_hc" (with failed_active_hc:
	// not checked yet), "ejected" (by outlier detection).
	Health string `json:"health"`
	// TimesEjected is how many times outlier detection ejected the host.
	TimesEjected uint32    `json:"times_ejected"`
	Pool         PoolStats `json:"pool"`
}

// PoolStats describes a host's connection pool.
type PoolStats struct {
	// Protocol is "http1" or "http2".
	Protocol string `json:"protocol"`
	// Connections is the open connections.
	Connections int `json:"connections"`
	// ActiveConnections and IdleConnections split Connections for HTTP/1.1.
	ActiveConnections int `json:"active_connections"`
	IdleConnections   int `json:"idle_connections"`
	// ActiveStreams is the streams in flight, for HTTP/2.
	ActiveStreams int `json:"active_streams"`
}

// Describe lists every cluster with its current hosts, in config order.
func (s *Set) Describe() []ClusterInfo {
	out := make([]ClusterInfo, 0, len(s.clusters))
	for _, c := range s.clusters {
		ci := ClusterInfo{Name: c.Name, Type: c.typ, Protocol: c.protocol, LBPolicy: c.lbPolicy, Hosts: []HostInfo{}, CircuitBreakers: c.breaker.info()}
		for _, h := range c.Hosts() {
			h.available() // ends an ejection whose time is up
			c.hmu.Lock()
			flags, ejections := h.hs.flags.Load(), h.hs.ejections
			c.hmu.Unlock()
			ci.Hosts = append(ci.Hosts, HostInfo{
				Address:        h.Address(),
				Hostname:       h.hostname,
				Weight:         h.weight,
				ActiveRequests: h.active.Load(),
				Health:         healthString(flags),
				TimesEjected:   ejections,
				Pool:           h.pool.stats(),
			})
		}
		out = append(out, ci)
	}
	return out
}
