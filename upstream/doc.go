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
// Start does the first resolution of every DNS cluster and the first round
// of health checks (warm-up), then runs one refresh goroutine per DNS
// cluster, one health checker per host and one outlier sweep per cluster
// until its context ends or Close.
//
// # Health, outlier detection, circuit breakers (Envoy's semantics)
//
// A host takes traffic when it is available (Host.available, the one test
// the balancer makes): not failing active health checks and not ejected by
// outlier detection. Both states are bits of one atomic word on the Host,
// changed only under the cluster's health lock (hmu) together with the
// edge_cluster_membership_healthy and ejections_active gauges, so those
// stay exact.
//
//   - health_check (health.go): one goroutine per host, the first check
//     at once, then every interval plus up to 10% jitter, each bounded by
//     the timeout. HTTP checks GET the path through a pool of the
//     cluster's protocol and TLS reserved for checks (one connection kept,
//     outside the connection stats and circuit breakers) and pass on 2xx;
//     TCP checks pass when the connect succeeds. Hosts start failed and
//     pending; the first pass makes them healthy, later unhealthy_threshold
//     consecutive failures fail them and healthy_threshold consecutive
//     passes restore them. Checkers stop when their host leaves the set
//     (drain) or the Set closes.
//   - outlier_detection (outlier.go): Host.RoundTrip counts consecutive 5xx
//     and consecutive gateway failures (502, 503, 504, and connect
//     failures, resets, refused streams, timeouts and protocol errors) with
//     atomic adds; the count that reaches its threshold ejects the host for
//     base_ejection_time times its multiplier (capped at 300 s), unless
//     more than max_ejection_percent of the hosts would be ejected. An
//     ejection ends lazily when the balancer meets the host after its time,
//     on the interval sweep, or when an active health check passes.
//   - circuit_breakers (breaker.go): per-cluster atomic counts. max_requests
//     is enforced in Host.RoundTrip; max_connections and
//     max_pending_requests by the pools through their Limit option
//     (HTTP/1.1 requests queue for a connection, HTTP/2 streams share the
//     ones they have); max_retries through Cluster.TryRetry and RetryDone,
//     which package edge calls. A refusal is an *Error of Kind Overflow,
//     returned at once.
//
// # Load balancing (lb.go, lbrr.go, hash*.go)
//
// Cluster.Pick(req, tried...) chooses a host by the cluster's lb_policy.
// Every host set gets its own balancer, built when the set changes (DNS),
// with the policy's tables; a pick reads them through the snapshot pointer
// (no lock, no allocation):
//
//   - round_robin: smooth weighted round robin, a precomputed cycle.
//   - least_request: power of two choices, weighted: two hosts drawn at
//     random by weight, the one with fewer active requests per unit of
//     weight wins, the first on a tie (so an idle cluster is spread by
//     weight).
//   - random: one host drawn at random by weight.
//   - ring_hash: a ketama ring of xxHash64("ip:port_i") points, 1024 for
//     the heaviest host and proportionally fewer for the others (at least
//     1024 in all, at most 2^20).
//   - maglev: Envoy's weighted Maglev table of 65537 entries.
//
// ring_hash and maglev hash the request by the cluster's hash_policy
// (header, cookie, source_ip; every key found is hashed and combined in
// order, as Envoy does); a request without a key goes to a random host.
//
// Pick avoids hosts a retry already tried while any other is eligible, and
// hosts that are not available (Host.available), unless fewer than half
// the hosts are available: then the cluster is in panic and every host
// counts (counted as edge_cluster_lb_healthy_panic). When the policy's
// choice is refused, round_robin, random and least_request draw again by
// weight among the eligible hosts, while ring_hash and maglev walk on
// along the ring or table, so a key keeps a stable second choice and other
// keys do not move.
//
// # Invariants
//
//   - Per-request work (Pick, Host.RoundTrip) takes no lock of this
//     package and allocates nothing here when responses are Released;
//     counters are atomics on the Host and stats.Counter/Gauge slots. The
//     only locks are taken on health transitions (an ejection, the end of
//     one), which are rare, and by HTTP/1.1 requests that must wait for a
//     connection under max_connections.
//   - A host is counted active (Host.ActiveRequests, and the cluster's
//     edge_cluster_upstream_rq_active) from RoundTrip until its response
//     body ends (EOF, error, Close or Release), exactly once.
//   - Every error from Host.RoundTrip and from a response body's Read is an
//     *Error (Kind and Sent), whichever pool produced it; Classify maps
//     others. Pick fails only with ErrNoHealthyEndpoint (Kind NoHost).
//   - Stats carry the label {cluster: name}: edge_cluster_upstream_cx_total,
//     _cx_active, _cx_connect_fail, _cx_overflow, _rq_total, _rq_active,
//     _rq_pending_overflow, edge_cluster_membership_total and _healthy,
//     edge_cluster_lb_healthy_panic,
//     edge_cluster_health_check_attempt, _success and _failure, and
//     edge_cluster_outlier_detection_ejections_active,
//     _ejections_enforced_total and _ejections_overflow.
//
// # Non-goals (so far)
//
// Success-rate and failure-percentage outlier detection, gRPC health
// checks, circuit-breaker priorities, retry budgets, a configurable panic
// threshold, least_request's choice_count and active_request_bias, ring
// sizes, and hash_policy's terminal, query_parameter and cookie
// generation (ttl) are not here. A Set is not carried over a
// config reload: a new config builds a new Set (counters carry on, as the
// stats store keys them by name and label) and the old one is Closed.
package upstream
