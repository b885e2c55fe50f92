package router

import (
	"errors"
	"strings"
	"testing"

	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/edge/message"
)

// boilerplate completes a route_configs section into a valid config: one
// listener using route config "main" and three clusters a, b, c.
const boilerplate = `
listeners:
  - {name: l, address: "127.0.0.1:8080", route_config: main}
clusters:
  - {name: a, endpoints: ["127.0.0.1:9001"]}
  - {name: b, endpoints: ["127.0.0.1:9002"]}
  - {name: c, endpoints: ["127.0.0.1:9003"]}
`

// parse runs the real config path (decode, defaults, validation) on a
// route_configs section.
func parse(tb testing.TB, routeConfigs string) *config.Config {
	tb.Helper()
	cfg, err := config.Parse([]byte(routeConfigs+boilerplate), "test.yaml", tb.TempDir())
	if err != nil {
		tb.Fatalf("config.Parse: %v\n%s", err, routeConfigs)
	}
	return cfg
}

// clusterIndex maps the config's cluster names to their positions.
func clusterIndex(cfg *config.Config) map[string]int {
	m := make(map[string]int, len(cfg.Clusters))
	for i := range cfg.Clusters {
		m[cfg.Clusters[i].Name] = i
	}
	return m
}

// compileRC parses and compiles a route_configs section (its first entry).
func compileRC(tb testing.TB, routeConfigs string) *Table {
	tb.Helper()
	cfg := parse(tb, routeConfigs)
	t, err := Compile(cfg, &cfg.RouteConfigs[0], "route_configs[0]", clusterIndex(cfg))
	if err != nil {
		tb.Fatalf("Compile: %v", err)
	}
	return t
}

// compileVH compiles route config "main" with the given virtual hosts, each
// a YAML flow mapping.
func compileVH(tb testing.TB, vhosts ...string) *Table {
	tb.Helper()
	return compileRC(tb, vhostsYAML(vhosts...))
}

func vhostsYAML(vhosts ...string) string {
	var b strings.Builder
	b.WriteString("route_configs:\n  - name: main\n    virtual_hosts:\n")
	for _, v := range vhosts {
		b.WriteString("      - ")
		b.WriteString(v)
		b.WriteByte('\n')
	}
	return b.String()
}

// headers builds a Header from name, value pairs.
func headers(kv ...string) *message.Header {
	var h message.Header
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return &h
}

func dump(h *message.Header) string {
	var parts []string
	for _, f := range h.Fields() {
		parts = append(parts, f.Name+": "+f.Value)
	}
	return strings.Join(parts, "; ")
}

func routeName(r *Route) string {
	if r == nil {
		return "<nil>"
	}
	return r.Name
}

func vhName(vh *VirtualHost) string {
	if vh == nil {
		return "<nil>"
	}
	return vh.Name
}

// compileErr parses a route_configs section and compiles it, expecting a
// config.Errors.
func compileErr(tb testing.TB, routeConfigs string) config.Errors {
	tb.Helper()
	cfg := parse(tb, routeConfigs)
	_, err := Compile(cfg, &cfg.RouteConfigs[0], "route_configs[0]", clusterIndex(cfg))
	if err == nil {
		tb.Fatalf("Compile succeeded, want an error")
	}
	var errs config.Errors
	if !errors.As(err, &errs) {
		tb.Fatalf("Compile error %T %v, want config.Errors", err, err)
	}
	return errs
}
