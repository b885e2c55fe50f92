package upstream

// ClusterInfo describes a cluster for the admin API (/clusters).
type ClusterInfo struct {
	Name     string     `json:"name"`
	Type     string     `json:"type"`
	Protocol string     `json:"protocol"`
	LBPolicy string     `json:"lb_policy"`
	Hosts    []HostInfo `json:"hosts"`
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
	// Health is "healthy" (health checks do not exist yet).
	Health string    `json:"health"`
	Pool   PoolStats `json:"pool"`
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
		ci := ClusterInfo{Name: c.Name, Type: c.typ, Protocol: c.protocol, LBPolicy: c.lbPolicy, Hosts: []HostInfo{}}
		for _, h := range c.Hosts() {
			ci.Hosts = append(ci.Hosts, HostInfo{
				Address:        h.Address(),
				Hostname:       h.hostname,
				Weight:         h.weight,
				ActiveRequests: h.active.Load(),
				Health:         "healthy",
				Pool:           h.pool.stats(),
			})
		}
		out = append(out, ci)
	}
	return out
}
