package edge

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gopkg.in/yaml.v3"

	"github.com/edgeproxy/edge/edge/stats"
)

// adminServer serves the admin API. It is bound to loopback unless the
// config explicitly allows otherwise (config validation enforces it).
type adminServer struct {
	s   *Server
	srv *http.Server
	reg *prometheus.Registry
}

func newAdminServer(s *Server) *adminServer {
	a := &adminServer{s: s, reg: prometheus.NewRegistry()}
	a.reg.MustRegister(storeCollector{s.stats})
	a.reg.MustRegister(collectors.NewGoCollector())
	a.reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.reg.MustRegister(serverCollector{s})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", a.handleReady)
	mux.Handle("GET /stats/prometheus", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /stats", a.handleStats)
	mux.HandleFunc("GET /config_dump", a.handleConfigDump)
	mux.HandleFunc("GET /clusters", a.handleClusters)
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
	fmt.Fprint(w, `edge admin
  GET /ready             200 LIVE while serving
  GET /stats             counters and gauges as text
  GET /stats/prometheus  Prometheus exposition
  GET /config_dump       the running config as JSON
  GET /clusters          clusters, hosts and their state (?format=json)
`)
}

func (a *adminServer) handleReady(w http.ResponseWriter, r *http.Request) {
	select {
	case <-a.s.ready:
		fmt.Fprintln(w, "LIVE")
	default:
		http.Error(w, "PRE_INITIALIZING", http.StatusServiceUnavailable)
	}
}

func (a *adminServer) handleStats(w http.ResponseWriter, r *http.Request) {
	var lines []string
	a.s.stats.Each(func(m *stats.Metric, v float64) {
		var b strings.Builder
		b.WriteString(m.Name)
		for _, l := range m.Labels {
			fmt.Fprintf(&b, ".%s=%s", l.Name, l.Value)
		}
		fmt.Fprintf(&b, ": %g", v)
		lines = append(lines, b.String())
	})
	sort.Strings(lines)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}

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

// storeCollector exposes a stats.Store to Prometheus.
type storeCollector struct{ st *stats.Store }

func (storeCollector) Describe(chan<- *prometheus.Desc) {} // unchecked: metrics appear as configs register them

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	c.st.Each(func(m *stats.Metric, v float64) {
		names := make([]string, len(m.Labels))
		values := make([]string, len(m.Labels))
		for i, l := range m.Labels {
			names[i], values[i] = l.Name, l.Value
		}
		typ := prometheus.CounterValue
		if m.Kind == stats.KindGauge {
			typ = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(m.Name, m.Help, names, nil), typ, v, values...)
	})
}

// serverCollector exposes server-wide gauges.
type serverCollector struct{ s *Server }

var (
	uptimeDesc  = prometheus.NewDesc("edge_server_uptime", "Seconds since this edge process started serving.", nil, nil)
	versionDesc = prometheus.NewDesc("edge_server_version", "Always 1; the version label names the build.", []string{"version"}, nil)
	liveDesc    = prometheus.NewDesc("edge_server_live", "1 while the server is serving.", nil, nil)
)

func (serverCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- uptimeDesc
	ch <- versionDesc
	ch <- liveDesc
}

func (c serverCollector) Collect(ch chan<- prometheus.Metric) {
	up := 0.0
	if !c.s.started.IsZero() {
		up = time.Since(c.s.started).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(uptimeDesc, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(versionDesc, prometheus.GaugeValue, 1, c.s.version)
	ch <- prometheus.MustNewConstMetric(liveDesc, prometheus.GaugeValue, 1)
}
