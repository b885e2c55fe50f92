package edge

import (
	"fmt"

	"github.com/edgeproxy/edge/edge/stats"
	"github.com/edgeproxy/edge/upstream"
)

// clusterRuntime pairs an upstream cluster with the stats the forwarding
// core keeps for it (package upstream keeps connection and host stats).
type clusterRuntime struct {
	up      *upstream.Cluster
	rqClass [5]stats.Counter // upstream responses by class; 5xx includes local replies for upstream failures
	stats   struct {
		rqTimeout       stats.Counter
		rqPerTryTimeout stats.Counter
		rqRetry         stats.Counter
		rqRetrySuccess  stats.Counter
		rqRetryOverflow stats.Counter
		// rqTime is each upstream try's time, from sending the request to
		// the end of its response (upstream_rq_time).
		rqTime stats.Histogram
	}
}

func newClusterRuntime(st *stats.Store, c *upstream.Cluster) *clusterRuntime {
	lbl := stats.Label{Name: "cluster", Value: c.Name}
	cr := &clusterRuntime{up: c}
	for k := range cr.rqClass {
		cr.rqClass[k] = st.Counter("edge_cluster_upstream_rq_xx", "Upstream responses by status class (5xx includes local replies for upstream failures).",
			lbl, stats.Label{Name: "response_code_class", Value: fmt.Sprintf("%dxx", k+1)})
	}
	cs := &cr.stats
	cs.rqTimeout = st.Counter("edge_cluster_upstream_rq_timeout", "Requests that hit the route timeout.", lbl)
	cs.rqPerTryTimeout = st.Counter("edge_cluster_upstream_rq_per_try_timeout", "Tries that hit the per-try timeout.", lbl)
	cs.rqRetry = st.Counter("edge_cluster_upstream_rq_retry", "Retries sent.", lbl)
	cs.rqRetrySuccess = st.Counter("edge_cluster_upstream_rq_retry_success", "Requests that succeeded after at least one retry.", lbl)
	cs.rqRetryOverflow = st.Counter("edge_cluster_upstream_rq_retry_overflow", "Retries refused by the max_retries circuit breaker.", lbl)
	cs.rqTime = st.Histogram("edge_cluster_upstream_rq_time", "Milliseconds from sending an upstream try to the end of its response; tries that got no response are not counted.",
		stats.DefaultBounds(), lbl)
	return cr
}
