// Package upstream compiles a config's clusters into runtime clusters:
// their endpoints (hosts), how hosts are discovered and refreshed, how a
// host is chosen for a request, each host's connection pool, and one
// classification of upstream errors. It knows nothing of routes or
// listeners.
//
// # Model
//
// NewSet turns cfg.Clusters into a Set of Clusters, addressed by index (the
// router resolves cluster names to indexes once, through Index). A Cluster
// holds its current host set as an immutable snapshot behind an
// atomic.Pointer, with the load balancer built for that set; Pick reads it
// without a lock and allocates nothing. A Host is one ip:port with its own
// pool: package http1's for protocol http1, package http2's for http2,
// cleartext or TLS (cluster tls, with ALPN http/1.1 or h2, SNI from tls
// server_name or else the host's DNS name or IP).
//
// Discovery:
//
//   - static: every endpoint is an IP:port host, fixed.
//   - strict_dns: every A and AAAA record of every endpoint name is a host
//     (with the endpoint's weight and the name as Hostname), re-resolved
//     every dns_refresh_rate. The first endpoint that yields an address
//     owns it. Hosts that appear are added; hosts that vanish leave the set
//     at once but drain: requests in flight on them finish, then their
//     pools close. A host whose address stays keeps its pool. A failed
//     resolution keeps the previous set and is logged.
//   - logical_dns: one endpoint name, one host whose address is the first
//     one resolved; new connections go to the current address, connections
//     already open are kept (Envoy's semantics for large internet services
//     behind changing DNS).
//
// Start does the first resolution of every DNS cluster (warm-up), then runs
// one refresh goroutine per DNS cluster until its context ends or Close.
//
// Load balancing is weighted round robin (smooth, precomputed per host set;
// see roundRobin) behind the small balancer interface, so least_request,
// random, ring_hash and maglev can be added: until they are, those
// policies use round robin and NewSet logs a warning. Pick takes the hosts
// a retry already tried and avoids them while others exist.
//
// # Invariants
//
//   - Per-request work (Pick, Host.RoundTrip) takes no lock of this
//     package and allocates nothing here when responses are Released;
//     counters are atomics on the Host and stats.Counter/Gauge slots.
//   - A host is counted active (Host.ActiveRequests, and the cluster's
//     edge_cluster_upstream_rq_active) from RoundTrip until its response
//     body ends (EOF, error, Close or Release), exactly once.
//   - Every error from Host.RoundTrip and from a response body's Read is an
//     *Error (Kind and Sent), whichever pool produced it; Classify maps
//     others. Pick fails only with ErrNoHealthyEndpoint (Kind NoHost).
//   - Stats carry the label {cluster: name}: edge_cluster_upstream_cx_total,
//     _cx_active, _cx_connect_fail, _rq_total, _rq_active,
//     edge_cluster_membership_total and _healthy.
//
// # Non-goals (so far)
//
// Active health checks, outlier detection, circuit breakers, retry policy
// and backoff, and the load-balancing policies other than round robin are
// not here yet; every host reports healthy. A Set is not carried over a
// config reload: a new config builds a new Set (counters carry on, as the
// stats store keys them by name and label) and the old one is Closed.
package upstream
