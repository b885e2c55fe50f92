package config

import (
	"strings"
	"testing"
	"time"
)

const minimal = `
listeners:
  - name: public
    address: 127.0.0.1:8080
    route_config: main
route_configs:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: web}
clusters:
  - name: web
    endpoints: ["127.0.0.1:9000", {address: "127.0.0.2:9000", weight: 3}]
`

func TestParseMinimalAppliesDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal), "test.yaml", "/etc/edge")
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listeners[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"admin address", cfg.Admin.Address, DefaultAdminAddress},
		{"protocols", strings.Join(l.Protocols, ","), "http1,http2"},
		{"max header bytes", int64(l.Limits.MaxRequestHeaderBytes), int64(60 << 10)},
		{"max headers", l.Limits.MaxRequestHeaders, 100},
		{"max streams", l.Limits.MaxConcurrentStreams, 250},
		{"request headers timeout", l.Timeouts.RequestHeaders.D(), 10 * time.Second},
		{"idle timeout", l.Timeouts.Idle.D(), 5 * time.Minute},
		{"route timeout", cfg.RouteConfigs[0].VirtualHosts[0].Routes[0].Route.Timeout.D(), 15 * time.Second},
		{"require_tls", cfg.RouteConfigs[0].VirtualHosts[0].RequireTLS, "none"},
		{"cluster type", cfg.Clusters[0].Type, "static"},
		{"protocol", cfg.Clusters[0].Protocol, "http1"},
		{"lb", cfg.Clusters[0].LBPolicy, "round_robin"},
		{"connect timeout", cfg.Clusters[0].ConnectTimeout.D(), 5 * time.Second},
		{"endpoint 0 address", cfg.Clusters[0].Endpoints[0].Address, "127.0.0.1:9000"},
		{"endpoint 0 weight", cfg.Clusters[0].Endpoints[0].Weight, uint32(1)},
		{"endpoint 1 weight", cfg.Clusters[0].Endpoints[1].Weight, uint32(3)},
		{"max requests", cfg.Clusters[0].CircuitBreakers.MaxRequests, 1024},
		{"h2 conns", cfg.Clusters[0].HTTP2.ConnectionsPerHost, 1},
		{"resolve", cfg.Resolve("certs/a.pem"), "/etc/edge/certs/a.pem"},
		{"resolve abs", cfg.Resolve("/x/a.pem"), "/x/a.pem"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestExplicitZeroIsKept(t *testing.T) {
	src := strings.Replace(minimal, "route: {cluster: web}", "route: {cluster: web, timeout: 0}", 1)
	src = strings.Replace(src, "listeners:", "admin: {address: \"\"}\nlisteners:", 1)
	cfg, err := Parse([]byte(src), "test.yaml", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.RouteConfigs[0].VirtualHosts[0].Routes[0].Route.Timeout; got != 0 {
		t.Errorf("timeout: 0 became %v, want 0 (disabled)", got)
	}
	if cfg.Admin.Address != "" {
		t.Errorf("admin address %q, want empty (disabled)", cfg.Admin.Address)
	}
}

func TestSizes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"4096", 4096, true}, {"60KiB", 60 << 10, true}, {"1MiB", 1 << 20, true},
		{"2GiB", 2 << 30, true}, {"1KB", 1000, true}, {"10 MiB", 10 << 20, true},
		{"-1", 0, false}, {"1.5MiB", 0, false}, {"lots", 0, false}, {"1TiB", 0, false},
	} {
		got, err := ParseSize(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

// TestErrors checks that every kind of mistake is reported at its line and
// column with a message that says what to do.
func TestErrors(t *testing.T) {
	cases := []struct {
		name    string
		edit    func(string) string
		wantPos string // "line:col"
		want    string // substring of the message
	}{
		{"unknown field", func(s string) string {
			return strings.Replace(s, "    route_config: main", "    route_config: main\n    listen: 1", 1)
		}, "5:5", `unknown field "listen"`},
		{"misspelled field suggests", func(s string) string {
			return strings.Replace(s, "route_config: main", "route_confg: main", 1)
		}, "4:5", `did you mean "route_config"`},
		{"repeated key", func(s string) string {
			return strings.Replace(s, "    route_config: main", "    route_config: main\n    route_config: main", 1)
		}, "5:5", "written twice"},
		{"wrong type", func(s string) string {
			return strings.Replace(s, "name: public", "name: [public]", 1)
		}, "2:11", "want a string"},
		{"bad duration", func(s string) string {
			return strings.Replace(s, "route: {cluster: web}", "route: {cluster: web, timeout: 5 seconds}", 1)
		}, "12:44", "invalid duration"},
		{"unknown cluster", func(s string) string {
			return strings.Replace(s, "route: {cluster: web}", "route: {cluster: wbe}", 1)
		}, "12:30", `unknown cluster "wbe"`},
		{"unknown route config", func(s string) string {
			return strings.Replace(s, "route_config: main", "route_config: mian", 1)
		}, "4:19", `unknown route_config "mian"`},
		{"duplicate cluster", func(s string) string {
			return s + "  - name: web\n    endpoints: [\"127.0.0.1:1\"]\n"
		}, "16:11", `duplicate cluster name "web"`},
		{"bad regex", func(s string) string {
			return strings.Replace(s, "match: {prefix: /}", `match: {regex: "/(["}`, 1)
		}, "11:28", "does not compile"},
		{"two path specifiers", func(s string) string {
			return strings.Replace(s, "match: {prefix: /}", `match: {prefix: /, path: /x}`, 1)
		}, "11:20", "exactly one of prefix, path, regex"},
		{"weights sum to zero", func(s string) string {
			return strings.Replace(s, "route: {cluster: web}", "route: {weighted_clusters: [{name: web, weight: 0}]}", 1)
		}, "12:40", "weights sum to 0"},
		{"static cluster with a name", func(s string) string {
			return strings.Replace(s, `"127.0.0.1:9000"`, `"web.internal:9000"`, 1)
		}, "15:17", "use type: strict_dns"},
		{"admin not loopback", func(s string) string {
			return "admin: {address: \"0.0.0.0:9901\"}\n" + s
		}, "1:18", "not a loopback address"},
		{"http3 without tls", func(s string) string {
			return strings.Replace(s, "    route_config: main", "    route_config: main\n    protocols: [http1, http3]", 1)
		}, "5:16", "http3 needs tls"},
		{"duplicate domain", func(s string) string {
			return strings.Replace(s, "routes:", "routes: []\n      - name: two\n        domains: [\"*\"]\n        routes:", 1)
		}, "12:18", "also claimed"},
		{"no action", func(s string) string {
			return strings.Replace(s, "            route: {cluster: web}\n", "", 1)
		}, "11:13", "exactly one of route, redirect, direct_response"},
		{"bad redirect code", func(s string) string {
			return strings.Replace(s, "route: {cluster: web}", "redirect: {path_redirect: /x, response_code: 200}", 1)
		}, "12:58", "not a redirect code"},
		{"slowloris guard off", func(s string) string {
			return strings.Replace(s, "    route_config: main", "    route_config: main\n    timeouts: {request_headers: 0}", 1)
		}, "5:33", "slowloris"},
		{"syntax error", func(s string) string {
			return strings.Replace(s, "name: main", "name: [main", 1)
		}, "5:1", "did not find expected"},
		{"empty file", func(string) string { return "" }, "", "the file is empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.edit(strings.TrimPrefix(minimal, "\n"))), "test.yaml", "")
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, c.want) {
				t.Errorf("error %q does not mention %q", msg, c.want)
			}
			if c.wantPos != "" && !strings.Contains(msg, "test.yaml:"+c.wantPos) {
				t.Errorf("error %q not at test.yaml:%s", msg, c.wantPos)
			}
		})
	}
}

func TestAllErrorsReported(t *testing.T) {
	src := strings.Replace(minimal, "route: {cluster: web}", "route: {cluster: nope}", 1)
	src = strings.Replace(src, "route_config: main", "route_config: nope", 1)
	_, err := Parse([]byte(src), "test.yaml", "")
	es, ok := err.(Errors)
	if !ok || len(es) != 2 {
		t.Fatalf("got %v, want 2 errors", err)
	}
	if es[0].Pos.Line > es[1].Pos.Line {
		t.Errorf("errors not in file order: %v", es)
	}
}
