package edge

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gopkg.in/yaml.v3"

	"github.com/edgeproxy/edge/edge/stats"
	edgetls "github.com/edgeproxy/edge/tls"
)

// adminServer serves the admin API. It is bound to loopback unless the
// config explicitly allows otherwise (config validation enforces it): it
// has no authentication. Endpoints that change state answer POST only
// (ServeMux answers any other method with 405 and an Allow header).
type adminServer struct {
	s   *Server
	srv *http.Server
	reg *prometheus.Registry
	// certs are the certificate files of the TLS listeners, described
	// when the config was compiled (see edgetls.CertificateFiles); ACME
	// certificates are read when asked for, since renewals replace them.
	certs    []listenerCert
	certErrs []string
	acme     []listenerACME
}

func newAdminServer(s *Server) *adminServer {
	a := &adminServer{s: s, reg: prometheus.NewRegistry()}
	a.loadCerts()
	a.reg.MustRegister(storeCollector{s.stats})
	a.reg.MustRegister(collectors.NewGoCollector())
	a.reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.reg.MustRegister(serverCollector{a})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", a.handleReady)
	mux.Handle("GET /stats/prometheus", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /stats", a.handleStats)
	mux.HandleFunc("GET /config_dump", a.handleConfigDump)
	mux.HandleFunc("GET /clusters", a.handleClusters)
	mux.HandleFunc("GET /server_info", a.handleServerInfo)
	mux.HandleFunc("GET /listeners", a.handleListeners)
	mux.HandleFunc("GET /certs", a.handleCerts)
	mux.HandleFunc("GET /logging", a.handleLogging)
	mux.HandleFunc("POST /logging", a.handleSetLogging)
	mux.HandleFunc("POST /healthcheck/fail", a.handleHealthcheckFail)
	mux.HandleFunc("POST /healthcheck/ok", a.handleHealthcheckOK)
	mux.HandleFunc("POST /drain_listeners", a.handleDrainListeners)
	mux.HandleFunc("POST /quitquitquit", a.handleQuit)
	mux.HandleFunc("GET /{$}", a.handleIndex)
	a.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
	}
	return a
}

func (a *adminServer) handleIndex(w http.ResponseWriter, r *http.Request) {
	fmt.Fprint(w, `edge admin (state-changing endpoints answer POST only)
  GET  /ready                 200 LIVE while serving; 503 and the state otherwise
  GET  /server_info           version, state, hot restart epoch, uptime, pid, config file (JSON)
  GET  /stats                 counters, gauges and histogram summaries as text (?filter=REGEX)
  GET  /stats/prometheus      Prometheus exposition (histograms in milliseconds)
  GET  /config_dump           the running config as JSON, secrets redacted
  GET  /clusters              clusters, hosts and their state (?format=json)
  GET  /listeners             listeners and their bound addresses (?format=json)
  GET  /certs                 certificates served, with days until expiry (JSON)
  GET  /logging               the log level
  POST /logging?level=L       set the log level: debug, info, warn or error
  POST /healthcheck/fail      make /ready answer 503 while traffic still flows
  POST /healthcheck/ok        undo /healthcheck/fail
  POST /drain_listeners       stop accepting and drain every listener; admin keeps serving
  POST /quitquitquit          drain and exit
`)
}

func (a *adminServer) handleReady(w http.ResponseWriter, r *http.Request) {
	if st := a.s.state(); st != stateLive {
		http.Error(w, st.String(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "LIVE")
}

// statsQuantiles are the quantiles /stats prints for each histogram.
var statsQuantiles = [...]struct {
	name string
	q    float64
}{{"P0", 0}, {"P25", 0.25}, {"P50", 0.5}, {"P75", 0.75}, {"P90", 0.9}, {"P95", 0.95}, {"P99", 0.99}, {"P99.9", 0.999}, {"P100", 1}}

// handleStats prints one line per counter and gauge (name.label=value:
// value) and per histogram (quantiles estimated from the buckets, count and
// sum, all durations in milliseconds), sorted; ?filter=REGEX keeps the lines
// whose name part matches.
func (a *adminServer) handleStats(w http.ResponseWriter, r *http.Request) {
	var filter *regexp.Regexp
	if f := r.URL.Query().Get("filter"); f != "" {
		re, err := regexp.Compile(f)
		if err != nil {
			http.Error(w, fmt.Sprintf("filter %q is not a regular expression: %v", f, err), http.StatusBadRequest)
			return
		}
		filter = re
	}
	var lines []string
	add := func(m *stats.Metric, value string) {
		var b strings.Builder
		b.WriteString(m.Name)
		for _, l := range m.Labels {
			fmt.Fprintf(&b, ".%s=%s", l.Name, l.Value)
		}
		if filter != nil && !filter.MatchString(b.String()) {
			return
		}
		b.WriteString(": ")
		b.WriteString(value)
		lines = append(lines, b.String())
	}
	a.s.stats.Each(func(m *stats.Metric, v float64) { add(m, strconv.FormatFloat(v, 'g', -1, 64)) })
	a.s.stats.EachHistogram(func(m *stats.Metric, h stats.HistogramSnapshot) {
		var b strings.Builder
		if h.Count > 0 {
			for _, q := range statsQuantiles {
				fmt.Fprintf(&b, "%s=%s ", q.name, fmtMs(h.Quantile(q.q)))
			}
		}
		fmt.Fprintf(&b, "count=%d sum=%s", h.Count, fmtMs(h.Sum))
		add(m, b.String())
	})
	sort.Strings(lines)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}

// ms is d in milliseconds, the unit of histograms in the admin API (as
// Envoy's).
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtMs(d time.Duration) string { return strconv.FormatFloat(ms(d), 'g', 6, 64) }

func (a *adminServer) handleConfigDump(w http.ResponseWriter, r *http.Request) {
	// Round-trip through YAML so the dump uses the config's own field names.
	var doc any
	data, err := yaml.Marshal(a.s.cfg)
	if err == nil {
		err = yaml.Unmarshal(data, &doc)
	}
	if err != nil {
		http.Error(w, "config dump: "+err.Error(), http.StatusInternalServerError)
		return
	}
	doc = redact(doc)
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(doc)
}

func (a *adminServer) handleClusters(w http.ResponseWriter, r *http.Request) {
	info := a.s.clusters.Describe()
	if r.URL.Query().Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(info)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, c := range info {
		for _, h := range c.Hosts {
			fmt.Fprintf(w, "%s::%s::hostname::%s\n", c.Name, h.Address, h.Hostname)
			fmt.Fprintf(w, "%s::%s::weight::%d\n", c.Name, h.Address, h.Weight)
			fmt.Fprintf(w, "%s::%s::health_flags::%s\n", c.Name, h.Address, h.Health)
			fmt.Fprintf(w, "%s::%s::rq_active::%d\n", c.Name, h.Address, h.ActiveRequests)
			fmt.Fprintf(w, "%s::%s::times_ejected::%d\n", c.Name, h.Address, h.TimesEjected)
		}
		b := c.CircuitBreakers
		fmt.Fprintf(w, "%s::circuit_breakers::connections::%d/%d\n", c.Name, b.Connections, b.MaxConnections)
		fmt.Fprintf(w, "%s::circuit_breakers::pending_requests::%d/%d\n", c.Name, b.PendingRequests, b.MaxPendingRequests)
		fmt.Fprintf(w, "%s::circuit_breakers::requests::%d/%d\n", c.Name, b.Requests, b.MaxRequests)
		fmt.Fprintf(w, "%s::circuit_breakers::retries::%d/%d\n", c.Name, b.Retries, b.MaxRetries)
	}
}

// storeCollector exposes a stats.Store to Prometheus. Histograms are
// exposed in milliseconds, with Envoy's names and bucket bounds (le="0.5"
// ... le="3.6e+06"), so that dashboards written for Envoy's
// envoy_*_rq_time work on edge_*_rq_time.
type storeCollector struct{ st *stats.Store }

func (storeCollector) Describe(chan<- *prometheus.Desc) {} // unchecked: metrics appear as configs register them

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	c.st.Each(func(m *stats.Metric, v float64) {
		desc, values := promDesc(m)
		typ := prometheus.CounterValue
		if m.Kind == stats.KindGauge {
			typ = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(desc, typ, v, values...)
	})
	c.st.EachHistogram(func(m *stats.Metric, h stats.HistogramSnapshot) {
		desc, values := promDesc(m)
		cum := h.Cumulative()
		buckets := make(map[float64]uint64, len(h.Bounds))
		for i, b := range h.Bounds {
			buckets[ms(b)] = cum[i]
		}
		ch <- prometheus.MustNewConstHistogram(desc, h.Count, ms(h.Sum), buckets, values...)
	})
}

func promDesc(m *stats.Metric) (*prometheus.Desc, []string) {
	names := make([]string, len(m.Labels))
	values := make([]string, len(m.Labels))
	for i, l := range m.Labels {
		names[i], values[i] = l.Name, l.Value
	}
	return prometheus.NewDesc(m.Name, m.Help, names, nil), values
}

// serverCollector exposes server-wide gauges, read when scraped.
type serverCollector struct{ a *adminServer }

var (
	uptimeDesc   = prometheus.NewDesc("edge_server_uptime", "Seconds since this edge process started serving.", nil, nil)
	versionDesc  = prometheus.NewDesc("edge_server_version", "Always 1; the version label names the build.", []string{"version"}, nil)
	liveDesc     = prometheus.NewDesc("edge_server_live", "1 while the server is LIVE; 0 while draining, failing health checks or starting.", nil, nil)
	stateDesc    = prometheus.NewDesc("edge_server_state", "Server state: 0 LIVE, 1 DRAINING, 2 PRE_INITIALIZING (Envoy's numbering).", nil, nil)
	epochDesc    = prometheus.NewDesc("edge_server_hot_restart_epoch", "The hot restart generation of this process (0 for the first).", nil, nil)
	memAllocDesc = prometheus.NewDesc("edge_server_memory_allocated", "Bytes of heap objects, live and not yet swept (runtime/metrics /memory/classes/heap/objects:bytes).", nil, nil)
	memHeapDesc  = prometheus.NewDesc("edge_server_memory_heap_size", "Bytes of heap memory the Go runtime holds from the OS: objects, unused, free (not released) and stacks.", nil, nil)
	certDaysDesc = prometheus.NewDesc("edge_server_days_until_first_cert_expiring", "Days until the first served certificate expires (negative once expired); absent without TLS listeners.", nil, nil)
)

func (serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{uptimeDesc, versionDesc, liveDesc, stateDesc, epochDesc, memAllocDesc, memHeapDesc, certDaysDesc} {
		ch <- d
	}
}

// heapSamples are the runtime/metrics the memory gauges read: cheap (no
// stop-the-world), unlike runtime.ReadMemStats.
var heapSamples = [...]string{
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/stacks:bytes",
}

func (c serverCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.a.s
	up := 0.0
	if !s.started.IsZero() {
		up = time.Since(s.started).Seconds()
	}
	st := s.state()
	live := 0.0
	if st == stateLive {
		live = 1
	}
	ch <- prometheus.MustNewConstMetric(uptimeDesc, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(versionDesc, prometheus.GaugeValue, 1, s.version)
	ch <- prometheus.MustNewConstMetric(liveDesc, prometheus.GaugeValue, live)
	ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, float64(st))
	ch <- prometheus.MustNewConstMetric(epochDesc, prometheus.GaugeValue, float64(s.epoch))

	samples := make([]metrics.Sample, len(heapSamples))
	for i, n := range heapSamples {
		samples[i].Name = n
	}
	metrics.Read(samples)
	var heap uint64
	for _, smp := range samples {
		if smp.Value.Kind() == metrics.KindUint64 {
			heap += smp.Value.Uint64()
		}
	}
	var objects uint64
	if samples[0].Value.Kind() == metrics.KindUint64 {
		objects = samples[0].Value.Uint64()
	}
	ch <- prometheus.MustNewConstMetric(memAllocDesc, prometheus.GaugeValue, float64(objects))
	ch <- prometheus.MustNewConstMetric(memHeapDesc, prometheus.GaugeValue, float64(heap))

	if first, ok := c.a.firstExpiry(); ok {
		ch <- prometheus.MustNewConstMetric(certDaysDesc, prometheus.GaugeValue, math.Floor(time.Until(first).Hours()/24))
	}
}

// listenerCert is one certificate a listener serves.
type listenerCert struct {
	listener string
	info     edgetls.CertInfo
}

// listenerACME is a listener's ACME manager.
type listenerACME struct {
	listener string
	m        *edgetls.ACME
}
