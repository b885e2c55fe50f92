package router

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/edge/message"
)

// oneRoute compiles a catch-all virtual host with a single route written as
// a YAML flow mapping, and returns that route.
func oneRoute(tb testing.TB, r string) *Route {
	tb.Helper()
	tbl := compileVH(tb, `{name: v, domains: ["*"], routes: [`+r+`]}`)
	return &tbl.VirtualHosts()[0].Routes()[0]
}

func TestPickClusterWeighted(t *testing.T) {
	r := oneRoute(t, `{match: {prefix: /}, route: {weighted_clusters: [{name: b, weight: 90}, {name: c, weight: 10}]}}`)
	counts := map[int]int{}
	for rnd := uint64(0); rnd < 100; rnd++ {
		counts[r.PickCluster(rnd)]++
	}
	if counts[1] != 90 || counts[2] != 10 || len(counts) != 2 {
		t.Errorf("90/10 over rnd 0..99: got %v, want map[1:90 2:10] (b is cluster 1, c cluster 2)", counts)
	}
	// The boundary: 89 is the last rnd for b, 90 the first for c; and rnd
	// wraps modulo the total.
	for _, tc := range []struct {
		rnd  uint64
		want int
	}{{0, 1}, {89, 1}, {90, 2}, {99, 2}, {100, 1}, {190, 2}, {^uint64(0), 1 + boolInt(^uint64(0)%100 >= 90)}} {
		if got := r.PickCluster(tc.rnd); got != tc.want {
			t.Errorf("PickCluster(%d) = %d, want %d", tc.rnd, got, tc.want)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestPickClusterShares(t *testing.T) {
	for _, tc := range []struct {
		weights string
		want    map[int]int // cluster index -> picks over rnd 0..total-1
	}{
		{`[{name: a, weight: 1}, {name: b, weight: 0}, {name: c, weight: 3}]`, map[int]int{0: 1, 2: 3}},
		{`[{name: a, weight: 0}, {name: b, weight: 5}]`, map[int]int{1: 5}},
		{`[{name: c, weight: 7}]`, map[int]int{2: 7}},
		{`[{name: a, weight: 2}, {name: b, weight: 3}, {name: c, weight: 5}, {name: a, weight: 10}]`, map[int]int{0: 12, 1: 3, 2: 5}},
	} {
		r := oneRoute(t, `{match: {prefix: /}, route: {weighted_clusters: `+tc.weights+`}}`)
		total := 0
		for _, n := range tc.want {
			total += n
		}
		got := map[int]int{}
		for rnd := 0; rnd < total; rnd++ {
			got[r.PickCluster(uint64(rnd))]++
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("weights %s: picks %v, want %v", tc.weights, got, tc.want)
		}
	}
}

func TestPickClusterSingleAndOthers(t *testing.T) {
	tbl := compileVH(t, `{name: v, domains: ["*"], routes: [
  {match: {path: /c}, route: {cluster: c}},
  {match: {path: /r}, redirect: {path_redirect: /x}},
  {match: {path: /d}, direct_response: {status: 204}}]}`)
	rs := tbl.VirtualHosts()[0].Routes()
	for _, tc := range []struct {
		r    *Route
		want int
	}{{&rs[0], 2}, {&rs[1], -1}, {&rs[2], -1}} {
		for _, rnd := range []uint64{0, 1, 12345} {
			if got := tc.r.PickCluster(rnd); got != tc.want {
				t.Errorf("%s route: PickCluster(%d) = %d, want %d", tc.r.Kind, rnd, got, tc.want)
			}
		}
	}
}

func TestForwardFields(t *testing.T) {
	tbl := compileVH(t, `{name: v, domains: ["*"], routes: [
  {name: full, match: {prefix: /a}, route: {cluster: a, host_rewrite: api.internal, timeout: 3s, idle_timeout: 1m}},
  {match: {prefix: /b}, route: {cluster: b, auto_host_rewrite: true, timeout: 0s}},
  {match: {prefix: /d}, direct_response: {status: 200, body: "pong\n"}},
  {match: {prefix: /r}, redirect: {https_redirect: true}}]}`)
	rs := tbl.VirtualHosts()[0].Routes()
	type fields struct {
		Name, HostRewrite, Body string
		Kind                    Kind
		Auto                    bool
		Timeout, Idle           time.Duration
		Status, Code, Index     int
		Retry                   *RetryPolicy
		Rewrites                bool
	}
	got := func(r *Route) fields {
		return fields{r.Name, r.HostRewrite, r.Body, r.Kind, r.AutoHostRewrite, r.Timeout, r.IdleTimeout, r.Status, r.RedirectCode(), r.Index, r.Retry, r.Rewrites()}
	}
	for i, want := range []fields{
		{Name: "full", HostRewrite: "api.internal", Kind: Forward, Timeout: 3 * time.Second, Idle: time.Minute},
		{Kind: Forward, Auto: true, Index: 1},
		{Kind: DirectResponse, Status: 200, Body: "pong\n", Index: 2},
		{Kind: Redirect, Code: 301, Index: 3},
	} {
		if g := got(&rs[i]); g != want {
			t.Errorf("route %d: got %+v, want %+v", i, g, want)
		}
	}
	// Defaults: timeout 15s when unset.
	if r := oneRoute(t, `{match: {prefix: /}, route: {cluster: a}}`); r.Timeout != 15*time.Second || r.IdleTimeout != 0 {
		t.Errorf("default timeouts: got %v, %v; want 15s, 0", r.Timeout, r.IdleTimeout)
	}
	for k, want := range map[Kind]string{Forward: "route", Redirect: "redirect", DirectResponse: "direct_response", 0: "Kind(0)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

func TestRetryPolicy(t *testing.T) {
	r := oneRoute(t, `{match: {prefix: /}, route: {cluster: a, retry_policy: {
  retry_on: [gateway-error, connect-failure, retriable-status-codes, reset],
  retriable_status_codes: [503, 429, 429], num_retries: 3, per_try_timeout: 2s,
  backoff: {base_interval: 10ms, max_interval: 1s}, buffer_limit: 64KiB}}}`)
	p := r.Retry
	if p == nil {
		t.Fatal("Retry is nil")
	}
	if want := RetryOnGatewayError | RetryOnConnectFailure | RetryOnRetriableStatusCodes | RetryOnReset; p.On != want {
		t.Errorf("On = %v, want %v", p.On, want)
	}
	if got, want := p.On.String(), "gateway-error,connect-failure,reset,retriable-status-codes"; got != want {
		t.Errorf("On.String() = %q, want %q", got, want)
	}
	if got := fmt.Sprint(p.StatusCodes); got != "[429 503]" {
		t.Errorf("StatusCodes = %s, want [429 503]", got)
	}
	if p.NumRetries != 3 || p.PerTryTimeout != 2*time.Second || p.BaseInterval != 10*time.Millisecond || p.MaxInterval != time.Second || p.BufferLimit != 64<<10 {
		t.Errorf("policy = %+v", *p)
	}
	for code, want := range map[int]bool{429: true, 503: true, 502: true, 504: true, 500: false, 409: false, 200: false, 0: false, 9999: false} {
		if got := p.RetriableStatus(code); got != want {
			t.Errorf("RetriableStatus(%d) = %v, want %v", code, got, want)
		}
	}

	d := oneRoute(t, `{match: {prefix: /}, route: {cluster: a, retry_policy: {retry_on: [5xx, retriable-4xx, refused-stream]}}}`).Retry
	if d.NumRetries != 1 || d.BaseInterval != 25*time.Millisecond || d.MaxInterval != 250*time.Millisecond || d.BufferLimit != 1<<20 || d.PerTryTimeout != 0 {
		t.Errorf("defaults = %+v", *d)
	}
	if !d.On.Has(RetryOn5xx|RetryOnRefusedStream) || d.On.Has(RetryOnReset) {
		t.Errorf("On = %v", d.On)
	}
	for code, want := range map[int]bool{500: true, 599: true, 409: true, 429: false, 404: false} {
		if got := d.RetriableStatus(code); got != want {
			t.Errorf("defaults: RetriableStatus(%d) = %v, want %v", code, got, want)
		}
	}
	if c, ok := ParseRetryOn("refused-stream"); !ok || c != RetryOnRefusedStream {
		t.Errorf("ParseRetryOn(refused-stream) = %v, %v", c, ok)
	}
	if _, ok := ParseRetryOn("nope"); ok {
		t.Error("ParseRetryOn(nope) ok, want false")
	}
}

func TestRewritePath(t *testing.T) {
	for _, tc := range []struct {
		name, route, path, want string
	}{
		{"prefix", `{match: {prefix: /api/}, route: {cluster: a, prefix_rewrite: /}}`, "/api/users?id=1", "/users?id=1"},
		{"prefix to longer", `{match: {prefix: /v1}, route: {cluster: a, prefix_rewrite: /internal/v1}}`, "/v1/x", "/internal/v1/x"},
		{"prefix empty rewrite", `{match: {prefix: /strip}, route: {cluster: a, prefix_rewrite: ""}}`, "/strip/me", "/me"},
		{"prefix to nothing keeps origin form", `{match: {prefix: /strip/}, route: {cluster: a, prefix_rewrite: ""}}`, "/strip/me?x=1", "/me?x=1"},
		{"prefix to nothing before query", `{match: {prefix: /strip}, route: {cluster: a, prefix_rewrite: ""}}`, "/strip?x=1", "/?x=1"},
		{"prefix to relative", `{match: {prefix: /a/}, route: {cluster: a, prefix_rewrite: "b/"}}`, "/a/c", "/b/c"},
		{"regex to relative", `{match: {prefix: /}, route: {cluster: a, regex_rewrite: {pattern: "^/", substitution: ""}}}`, "/a/b?c", "/a/b?c"},
		{"prefix whole path", `{match: {prefix: /api}, route: {cluster: a, prefix_rewrite: /}}`, "/api", "/"},
		{"prefix no slash care", `{match: {prefix: /api}, route: {cluster: a, prefix_rewrite: /}}`, "/api/x", "//x"},
		{"prefix case-insensitive", `{match: {prefix: /API/, case_sensitive: false}, route: {cluster: a, prefix_rewrite: /v2/}}`, "/Api/x?q=A", "/v2/x?q=A"},
		{"prefix on path route", `{match: {path: /old}, route: {cluster: a, prefix_rewrite: /new}}`, "/old?a=b", "/new?a=b"},
		{"prefix on regex route", `{match: {regex: "/o.d"}, route: {cluster: a, prefix_rewrite: /new}}`, "/old?a=b", "/new?a=b"},
		{"prefix not matching path", `{match: {prefix: /api/}, route: {cluster: a, prefix_rewrite: /}}`, "/other", "/other"},
		{"regex groups", `{match: {prefix: /}, route: {cluster: a, regex_rewrite: {pattern: "^/service/([^/]+)(/.*)$", substitution: "${2}/instance/${1}"}}}`, "/service/foo/v1/api?x=1&y", "/v1/api/instance/foo?x=1&y"},
		{"regex named groups", `{match: {prefix: /}, route: {cluster: a, regex_rewrite: {pattern: "^/u/(?P<id>[0-9]+)$", substitution: "/users/$id"}}}`, "/u/42", "/users/42"},
		{"regex all matches", `{match: {prefix: /}, route: {cluster: a, regex_rewrite: {pattern: "one", substitution: "two"}}}`, "/xxx/one/one?one=1", "/xxx/two/two?one=1"},
		{"regex no match", `{match: {prefix: /}, route: {cluster: a, regex_rewrite: {pattern: "^/nope", substitution: "/x"}}}`, "/a?b", "/a?b"},
		{"regex not on query", `{match: {prefix: /}, route: {cluster: a, regex_rewrite: {pattern: "a", substitution: "b"}}}`, "/a?a=a", "/b?a=a"},
		{"regex literal dollar", `{match: {prefix: /}, route: {cluster: a, regex_rewrite: {pattern: "^/p$", substitution: "/$$x"}}}`, "/p", "/$x"},
		{"none", `{match: {prefix: /}, route: {cluster: a}}`, "/a?b=c", "/a?b=c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := oneRoute(t, tc.route)
			if got := r.RewritePath(tc.path); got != tc.want {
				t.Errorf("RewritePath(%q) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}

func TestRewritePathNoRewriteAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	r := oneRoute(t, `{match: {prefix: /}, route: {cluster: a}}`)
	path := strings.Repeat("/seg", 10) + "?q=1"
	if n := testing.AllocsPerRun(100, func() { _ = r.RewritePath(path) }); n != 0 {
		t.Errorf("RewritePath without rewrite: %v allocations, want 0", n)
	}
	if r.Rewrites() {
		t.Error("Rewrites() = true without a rewrite")
	}
}

func TestRedirectLocation(t *testing.T) {
	for _, tc := range []struct {
		name, route                   string
		scheme, authority, path, want string
		code                          int
	}{
		{"path keeps query", `{match: {path: /old}, redirect: {path_redirect: /new}}`,
			"http", "example.com", "/old?a=1", "http://example.com/new?a=1", 301},
		{"path keeps scheme and port", `{match: {path: /old}, redirect: {path_redirect: /new, response_code: 302}}`,
			"https", "example.com:8443", "/old", "https://example.com:8443/new", 302},
		{"path query replaces request query", `{match: {path: /old}, redirect: {path_redirect: "/new?b=2", response_code: 307}}`,
			"http", "example.com", "/old?a=1", "http://example.com/new?b=2", 307},
		{"path query survives strip_query", `{match: {path: /old}, redirect: {path_redirect: "/new?b=2", strip_query: true, response_code: 308}}`,
			"http", "example.com", "/old?a=1", "http://example.com/new?b=2", 308},
		{"path empty query drops request query", `{match: {path: /old}, redirect: {path_redirect: "/new?", response_code: 303}}`,
			"http", "example.com", "/old?a=1", "http://example.com/new", 303},
		{"strip_query", `{match: {prefix: /}, redirect: {path_redirect: /new, strip_query: true}}`,
			"http", "example.com", "/old?a=1", "http://example.com/new", 301},
		{"strip_query alone", `{match: {prefix: /}, redirect: {strip_query: true}}`,
			"http", "example.com", "/keep/me?a=1", "http://example.com/keep/me", 301},
		{"https drops :80", `{match: {prefix: /}, redirect: {https_redirect: true}}`,
			"http", "example.com:80", "/x?y", "https://example.com/x?y", 301},
		{"https drops :443", `{match: {prefix: /}, redirect: {https_redirect: true}}`,
			"http", "example.com:443", "/x", "https://example.com/x", 301},
		{"https keeps other ports", `{match: {prefix: /}, redirect: {https_redirect: true}}`,
			"http", "example.com:8080", "/x", "https://example.com:8080/x", 301},
		{"https no port", `{match: {prefix: /}, redirect: {https_redirect: true}}`,
			"http", "Example.com", "/", "https://Example.com/", 301},
		{"https ipv6", `{match: {prefix: /}, redirect: {https_redirect: true}}`,
			"http", "[::1]:80", "/x", "https://[::1]/x", 301},
		{"host keeps port", `{match: {prefix: /}, redirect: {host_redirect: new.example.com}}`,
			"http", "old.example.com:8080", "/p?q", "http://new.example.com:8080/p?q", 301},
		{"host drops default port", `{match: {prefix: /}, redirect: {host_redirect: new.example.com}}`,
			"https", "old.example.com:443", "/p", "https://new.example.com/p", 301},
		{"host with port", `{match: {prefix: /}, redirect: {host_redirect: "new.example.com:9000"}}`,
			"http", "old.example.com:8080", "/p", "http://new.example.com:9000/p", 301},
		{"host and https", `{match: {prefix: /}, redirect: {host_redirect: secure.example.com, https_redirect: true}}`,
			"http", "example.com:80", "/p", "https://secure.example.com/p", 301},
		{"host and https keeps odd port", `{match: {prefix: /}, redirect: {host_redirect: secure.example.com, https_redirect: true}}`,
			"http", "example.com:8080", "/p", "https://secure.example.com:8080/p", 301},
		{"port", `{match: {prefix: /}, redirect: {port_redirect: 8443}}`,
			"http", "example.com", "/p", "http://example.com:8443/p", 301},
		{"port replaces port", `{match: {prefix: /}, redirect: {port_redirect: 8443}}`,
			"http", "example.com:8080", "/p", "http://example.com:8443/p", 301},
		{"port default http omitted", `{match: {prefix: /}, redirect: {port_redirect: 80}}`,
			"http", "example.com:8080", "/p", "http://example.com/p", 301},
		{"port 443 with https omitted", `{match: {prefix: /}, redirect: {port_redirect: 443, https_redirect: true}}`,
			"http", "example.com:8080", "/p", "https://example.com/p", 301},
		{"port with https kept", `{match: {prefix: /}, redirect: {port_redirect: 8443, https_redirect: true}}`,
			"http", "example.com:80", "/p", "https://example.com:8443/p", 301},
		{"port 80 with http scheme kept for https", `{match: {prefix: /}, redirect: {port_redirect: 80}}`,
			"https", "example.com", "/p", "https://example.com:80/p", 301},
		{"host port and https", `{match: {prefix: /}, redirect: {host_redirect: b.test, port_redirect: 4443, https_redirect: true}}`,
			"http", "a.test:8080", "/p?q=1", "https://b.test:4443/p?q=1", 301},
		{"default port of same scheme dropped", `{match: {prefix: /}, redirect: {path_redirect: /n}}`,
			"http", "example.com:80", "/p", "http://example.com/n", 301},
		{"empty scheme is http", `{match: {prefix: /}, redirect: {path_redirect: /n}}`,
			"", "example.com", "/p", "http://example.com/n", 301},
		{"prefix_rewrite", `{match: {prefix: /old/}, redirect: {prefix_rewrite: /new/}}`,
			"http", "example.com", "/old/a/b?x=1", "http://example.com/new/a/b?x=1", 301},
		{"prefix_rewrite case-insensitive", `{match: {prefix: /OLD/, case_sensitive: false}, redirect: {prefix_rewrite: /new/}}`,
			"http", "example.com", "/Old/a", "http://example.com/new/a", 301},
		{"prefix_rewrite on path route", `{match: {path: /old}, redirect: {prefix_rewrite: /new}}`,
			"http", "example.com", "/old?x", "http://example.com/new?x", 301},
		{"prefix_rewrite to nothing", `{match: {prefix: /old/}, redirect: {prefix_rewrite: ""}}`,
			"http", "example.com", "/old/x?q", "http://example.com/x?q", 301},
		{"prefix_rewrite not matching", `{match: {prefix: /old/}, redirect: {prefix_rewrite: /new/}}`,
			"http", "example.com", "/other?q", "http://example.com/other?q", 301},
		{"prefix_rewrite on regex route", `{match: {regex: "/o.d/.*"}, redirect: {prefix_rewrite: /new}}`,
			"http", "example.com", "/old/x?q", "http://example.com/new?q", 301},
		{"prefix_rewrite and strip_query", `{match: {prefix: /old}, redirect: {prefix_rewrite: /new, strip_query: true}}`,
			"http", "example.com", "/old/x?y=1", "http://example.com/new/x", 301},
		{"everything", `{match: {prefix: /a/}, redirect: {https_redirect: true, host_redirect: b.test, port_redirect: 8443, prefix_rewrite: /b/, strip_query: true, response_code: 308}}`,
			"http", "a.test:80", "/a/x?y=1", "https://b.test:8443/b/x", 308},
		{"empty path", `{match: {prefix: /}, redirect: {https_redirect: true}}`,
			"http", "example.com", "", "https://example.com/", 301},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := oneRoute(t, tc.route)
			if r.Kind != Redirect {
				t.Fatalf("Kind = %v, want redirect", r.Kind)
			}
			if got := r.RedirectLocation(tc.scheme, tc.authority, tc.path); got != tc.want {
				t.Errorf("RedirectLocation(%q, %q, %q) = %q, want %q", tc.scheme, tc.authority, tc.path, got, tc.want)
			}
			if got := r.RedirectCode(); got != tc.code {
				t.Errorf("RedirectCode() = %d, want %d", got, tc.code)
			}
		})
	}
	fwd := oneRoute(t, `{match: {prefix: /}, route: {cluster: a}}`)
	if got := fwd.RedirectLocation("http", "h", "/"); got != "" || fwd.RedirectCode() != 0 {
		t.Errorf("forward route: RedirectLocation %q, code %d; want \"\", 0", got, fwd.RedirectCode())
	}
}

func TestRequireTLS(t *testing.T) {
	tbl := compileVH(t,
		`{name: none, domains: [none.test], `+route+`}`,
		`{name: dflt, domains: [dflt.test], `+route+`}`,
		`{name: all, domains: [all.test], require_tls: all, `+route+`}`,
		`{name: external_only, domains: [ext.test], require_tls: external_only, `+route+`}`)
	tbl.VirtualHosts()[0].RequireTLS = TLSNone // also "none" spelled explicitly below
	for _, tc := range []struct {
		host          string
		tls, external bool
		want          bool
	}{
		{"none.test", false, true, false},
		{"dflt.test", false, true, false},
		{"dflt.test", false, false, false},
		{"all.test", false, false, true},
		{"all.test", false, true, true},
		{"all.test", true, true, false},
		{"all.test", true, false, false},
		{"ext.test", false, true, true},
		{"ext.test", false, false, false},
		{"ext.test", true, true, false},
		{"ext.test", true, false, false},
	} {
		vh := tbl.VirtualHost(tc.host)
		if got := vh.RequiresRedirectToTLS(tc.tls, tc.external); got != tc.want {
			t.Errorf("%s: RequiresRedirectToTLS(tls=%v, external=%v) = %v, want %v", vh.Name, tc.tls, tc.external, got, tc.want)
		}
		if got := vh.RequireTLS.String(); got != strings.Replace(vh.Name, "dflt", "none", 1) {
			t.Errorf("%s: RequireTLS.String() = %q", vh.Name, got)
		}
	}
	explicit := compileVH(t, `{name: n, domains: ["*"], require_tls: none, `+route+`}`)
	if explicit.VirtualHost("x").RequiresRedirectToTLS(false, true) {
		t.Error("require_tls: none redirects")
	}
}

func TestHTTPSLocation(t *testing.T) {
	for _, tc := range []struct{ authority, path, want string }{
		{"example.com", "/a?b=1", "https://example.com/a?b=1"},
		{"example.com:80", "/a", "https://example.com/a"},
		{"example.com:443", "/a", "https://example.com/a"},
		{"example.com:8080", "/a", "https://example.com:8080/a"},
		{"[2001:db8::1]:80", "/", "https://[2001:db8::1]/"},
		{"[2001:db8::1]", "/", "https://[2001:db8::1]/"},
		{"example.com", "", "https://example.com/"},
	} {
		if got := HTTPSLocation(tc.authority, tc.path); got != tc.want {
			t.Errorf("HTTPSLocation(%q, %q) = %q, want %q", tc.authority, tc.path, got, tc.want)
		}
	}
}

func TestHeaderMutations(t *testing.T) {
	tbl := compileRC(t, `route_configs:
  - name: main
    request_headers_to_add: [{name: X-Order, value: config}, {name: x-vh-removed, value: config}]
    request_headers_to_remove: [x-config-removes]
    response_headers_to_add: [{name: x-order, value: config}]
    response_headers_to_remove: [Server]
    virtual_hosts:
      - name: v
        domains: ["*"]
        request_headers_to_add: [{name: x-order, value: vhost}]
        request_headers_to_remove: [x-vh-removed]
        response_headers_to_add: [{name: x-order, value: vhost}]
        response_headers_to_remove: [x-upstream-secret]
        routes:
          - match: {prefix: /}
            route: {cluster: a}
            request_headers_to_add: [{name: x-order, value: route}, {name: x-vh-removed, value: route}, {name: x-config-removes, value: route}]
            request_headers_to_remove: [X-Client-Secret]
            response_headers_to_add: [{name: x-order, value: route}, {name: server, value: route}]
            response_headers_to_remove: [x-order]
`)
	vh, r := tbl.Match("h", "/", nil)
	for _, tc := range []struct {
		name  string
		vh    *VirtualHost
		r     *Route
		apply func(*message.Header, *VirtualHost, *Route)
		in    []string
		want  string
	}{
		{
			"request", vh, r, tbl.MutateRequest,
			[]string{"x-client-secret", "s", "x-keep", "1", "x-vh-removed", "client", "x-config-removes", "client"},
			// route: remove x-client-secret, add 3; vhost: remove
			// x-vh-removed (client's and route's), add; config: remove
			// x-config-removes (client's and route's), add 2.
			"x-keep: 1; x-order: route; x-order: vhost; x-order: config; x-vh-removed: config",
		},
		{
			"response", vh, r, tbl.MutateResponse,
			[]string{"server", "upstream", "x-order", "upstream", "x-upstream-secret", "s", "content-type", "text/plain"},
			// route removes x-order then adds x-order and server; vhost
			// removes x-upstream-secret, adds; config removes server (the
			// upstream's and the route's), adds.
			"content-type: text/plain; x-order: route; x-order: vhost; x-order: config",
		},
		{
			"response without route", vh, nil, tbl.MutateResponse,
			[]string{"server", "upstream", "x-order", "upstream"},
			"x-order: upstream; x-order: vhost; x-order: config",
		},
		{
			"response without virtual host", nil, nil, tbl.MutateResponse,
			[]string{"server", "upstream", "x-upstream-secret", "s"},
			"x-upstream-secret: s; x-order: config",
		},
		{
			"request without virtual host", nil, nil, tbl.MutateRequest,
			[]string{"x-client-secret", "s"},
			"x-client-secret: s; x-order: config; x-vh-removed: config",
		},
	} {
		h := headers(tc.in...)
		tc.apply(h, tc.vh, tc.r)
		if got := dump(h); got != tc.want {
			t.Errorf("%s:\n got  %s\n want %s", tc.name, got, tc.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, substitution, want string
	}{
		{"backslash group", `"\\1"`, `write ${1}`},
		{"group out of range", `"/$2"`, `refers to group 2 but the pattern has 1`},
		{"braced out of range", `"/${3}"`, `refers to group 3 but the pattern has 1`},
		{"digit then letters", `"/$1x"`, `write ${1}x`},
		{"unknown name", `"/${nope}"`, `refers to group "nope"`},
		{"unknown bare name", `"/$nope/"`, `refers to group "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := compileErr(t, vhostsYAML(`{name: v, domains: ["*"], routes: [
  {match: {prefix: /}, route: {cluster: a}},
  {match: {prefix: /}, route: {cluster: a, regex_rewrite: {pattern: "^/(?P<id>[a-z]+)", substitution: `+tc.substitution+`}}}]}`))
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(errs), errs)
			}
			e := errs[0]
			if !strings.Contains(e.Msg, tc.want) {
				t.Errorf("message %q, want it to contain %q", e.Msg, tc.want)
			}
			if want := "route_configs[0].virtual_hosts[0].routes[1].route.regex_rewrite.substitution"; e.Path != want {
				t.Errorf("path %q, want %q", e.Path, want)
			}
			if e.File != "test.yaml" || e.Pos.Line != 6 || e.Pos.Column == 0 {
				t.Errorf("at %s:%d:%d, want test.yaml:6:N", e.File, e.Pos.Line, e.Pos.Column)
			}
		})
	}
	for _, ok := range []string{`"${1}x"`, `"$id"`, `"${id}/$1"`, `"$$1"`, `"$"`, `"${"`, `"$0"`, `"/a"`, `"\\d"`} {
		r := oneRoute(t, `{match: {prefix: /}, route: {cluster: a, regex_rewrite: {pattern: "^/(?P<id>[a-z]+)", substitution: `+ok+`}}}`)
		if !r.Rewrites() {
			t.Errorf("substitution %s: no rewrite compiled", ok)
		}
	}

	// A cluster the caller's index does not know.
	cfg := parse(t, vhostsYAML(`{name: v, domains: ["*"], routes: [
  {match: {prefix: /}, route: {cluster: c}},
  {match: {prefix: /}, route: {weighted_clusters: [{name: a, weight: 1}, {name: c, weight: 1}]}}]}`))
	_, err := Compile(cfg, &cfg.RouteConfigs[0], "route_configs[0]", map[string]int{"a": 0})
	if err == nil {
		t.Fatal("Compile with a missing cluster succeeded")
	}
	for _, want := range []string{
		`test.yaml:5:41: route_configs[0].virtual_hosts[0].routes[0].route.cluster: unknown cluster "c"`,
		`route_configs[0].virtual_hosts[0].routes[1].route.weighted_clusters[1].name: unknown cluster "c"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\nwant it to contain %q", err, want)
		}
	}
}

func TestCompileDefensive(t *testing.T) {
	// Validation compares domains lower-cased but keeps trailing dots;
	// Compile drops them, so these two collide.
	errs := compileErr(t, vhostsYAML(
		`{name: one, domains: [example.com], `+route+`}`,
		`{name: two, domains: ["Example.COM."], `+route+`}`))
	if len(errs) != 1 || errs[0].Path != "route_configs[0].virtual_hosts[1].domains" || !strings.Contains(errs[0].Msg, `claimed by virtual host "one"`) {
		t.Errorf("trailing-dot duplicate: got %v", errs)
	}

	// Configs that skipped validation still fail cleanly.
	s := func(v string) *string { return &v }
	rc := &config.RouteConfig{Name: "hand", VirtualHosts: []config.VirtualHost{
		{Name: "a", Domains: []string{"*", "x.test"}, RequireTLS: "sometimes", Routes: []config.Route{
			{Match: config.RouteMatch{Prefix: "/"}, Route: &config.RouteAction{Cluster: "a", WeightedClusters: []config.WeightedCluster{{Name: "a", Weight: 1}}}},
			{Match: config.RouteMatch{Prefix: "/"}, Route: &config.RouteAction{WeightedClusters: []config.WeightedCluster{{Name: "a"}}}},
			{Match: config.RouteMatch{Prefix: "/"}, Route: &config.RouteAction{}},
			{Match: config.RouteMatch{Regex: "("}, DirectResponse: &config.DirectResponse{Status: 200}},
			{Match: config.RouteMatch{Prefix: "/", Headers: []config.HeaderMatch{{Name: "x", Regex: s("[")}}}},
			{Match: config.RouteMatch{Prefix: "/"}, Route: &config.RouteAction{Cluster: "a", RegexRewrite: &config.RegexRewrite{Pattern: "(", Substitution: "x"}}},
		}},
		{Name: "b", Domains: []string{"*", "x.test", "a*b"}},
	}}
	_, err := Compile(nil, rc, "route_configs[7]", map[string]int{"a": 0})
	if err == nil {
		t.Fatal("Compile of an invalid hand-built config succeeded")
	}
	for _, want := range []string{
		`route_configs[7].virtual_hosts[0].require_tls: unknown value "sometimes"`,
		`routes[0].route.weighted_clusters: set cluster or weighted_clusters, not both`,
		`routes[1].route.weighted_clusters: weights sum to 0`,
		`routes[2].route.cluster: missing`,
		`routes[3].match.regex: regex "(" does not compile`,
		`routes[4]: a route needs exactly one of route, redirect, direct_response`,
		`routes[4].match.headers[0].regex: regex "[" does not compile`,
		`routes[5].route.regex_rewrite.pattern: regex "(" does not compile`,
		`virtual_hosts[1].domains: domain "*" is also claimed by virtual host "a"`,
		`virtual_hosts[1].domains: domain "x.test" is also claimed by virtual host "a"`,
		`virtual_hosts[1].domains: domain "a*b": '*' may only start or end a domain`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}

	// A hand-built valid config needs no Meta and no cfg.
	ok := &config.RouteConfig{Name: "hand", VirtualHosts: []config.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []config.Route{
		{Name: "re", Match: config.RouteMatch{Regex: "/r[0-9]"}, Redirect: &config.Redirect{HTTPSRedirect: true}},
		{Name: "exact", Match: config.RouteMatch{Path: "/p"}, DirectResponse: &config.DirectResponse{Status: 204}},
		{Name: "all", Match: config.RouteMatch{Prefix: "/"}, Route: &config.RouteAction{Cluster: "a"}},
	}}}}
	tbl, err := Compile(nil, ok, "route_configs[0]", map[string]int{"a": 3})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"/r1": "re", "/p": "exact", "/p/": "all"} {
		if _, r := tbl.Match("any", path, nil); routeName(r) != want {
			t.Errorf("Match(%q) = %s, want %s", path, routeName(r), want)
		}
	}
	if _, r := tbl.Match("h", "/r1", nil); r.RedirectCode() != 301 {
		t.Errorf("default redirect code %d, want 301", r.RedirectCode())
	}
	if _, r := tbl.Match("h", "/", nil); r.PickCluster(0) != 3 || tbl.Name != "hand" {
		t.Errorf("PickCluster = %d, Name %q; want 3, hand", r.PickCluster(0), tbl.Name)
	}
}
