package router

import (
	"fmt"
	"testing"
)

// route is a catch-all forward route, for virtual host tests.
const route = `routes: [{match: {prefix: /}, route: {cluster: a}}]`

func TestVirtualHostSelection(t *testing.T) {
	vh := func(name string, domains string) string {
		return fmt.Sprintf("{name: %s, domains: %s, %s}", name, domains, route)
	}
	tbl := compileVH(t,
		vh("exact", `[example.com, www.example.com]`),
		vh("exact-port", `["example.com:8443"]`),
		vh("suffix", `["*.example.com"]`),
		vh("suffix-longer", `["*.api.example.com"]`),
		vh("suffix-port", `["*.example.com:9000"]`),
		vh("suffix-dash", `["*-bar.foo.com"]`),
		vh("prefix", `["foo.*"]`),
		vh("prefix-longer", `["foo.bar.*"]`),
		vh("prefix-port", `["www.example.org:*"]`),
		vh("foo-net", `[foo.net]`),
		vh("mixed", `["MiXeD.Example.NET."]`),
		vh("v6", `["[::1]"]`),
		vh("v6-port", `["[::1]:8080"]`),
		vh("any", `["*"]`),
	)
	for _, tc := range []struct{ authority, want string }{
		{"example.com", "exact"},
		{"EXAMPLE.Com", "exact"},
		{"example.com.", "exact"},
		{"www.example.com", "exact"}, // exact beats *.example.com
		{"example.com:8443", "exact-port"},
		{"Example.COM.:8443", "exact-port"},
		{"example.com:8080", "exact"}, // port dropped on the second pass
		{"example.com:", "exact"},     // empty port is no port
		{"a.example.com", "suffix"},
		{"api.example.com", "suffix"},
		{"x.api.example.com", "suffix-longer"}, // longest suffix first
		{"a.b.api.example.com", "suffix-longer"},
		{".example.com", "any"}, // '*' matches at least one character
		{"a.example.com:9000", "suffix-port"},
		{"a.example.com:9001", "suffix"},
		{"foo.example.com", "suffix"}, // suffix beats prefix
		{"x-bar.foo.com", "suffix-dash"},
		{"-bar.foo.com", "any"},
		{"foo.com", "prefix"},
		{"foo.bar.baz", "prefix-longer"}, // longest prefix first
		{"foo.", "any"},
		{"foo.bar.", "prefix"}, // foo.bar.* needs one more character
		{"foo.com:1234", "prefix"},
		{"foo.net:8080", "foo-net"}, // port-less exact beats port-less prefix
		{"foo.net", "foo-net"},
		{"www.example.org:8080", "prefix-port"},
		{"www.example.org", "any"}, // a domain with a port needs one
		{"mixed.example.net", "mixed"},
		{"MIXED.example.net.", "mixed"},
		{"[::1]", "v6"},
		{"[::1]:8080", "v6-port"},
		{"[::1]:9", "v6"},
		{"", "any"},
		{"unknown.test", "any"},
		{"unknown.test:80", "any"},
	} {
		vh, r := tbl.Match(tc.authority, "/", nil)
		if got := vhName(vh); got != tc.want {
			t.Errorf("Match(%q): virtual host %s, want %s", tc.authority, got, tc.want)
		}
		if vh != nil && r == nil {
			t.Errorf("Match(%q): no route, want the catch-all", tc.authority)
		}
	}
}

func TestVirtualHostNoCatchAll(t *testing.T) {
	tbl := compileVH(t, `{name: only, domains: [example.com, "example.com:8443"], `+route+`}`)
	for _, tc := range []struct{ authority, want string }{
		{"example.com", "only"},
		{"example.com:8443", "only"},
		{"example.com:1", "only"},
		{"example.org", "<nil>"},
		{"", "<nil>"},
		{"www.example.com", "<nil>"},
	} {
		vh, r := tbl.Match(tc.authority, "/x", nil)
		if got := vhName(vh); got != tc.want {
			t.Errorf("Match(%q): virtual host %s, want %s", tc.authority, got, tc.want)
		}
		if vh == nil && r != nil {
			t.Errorf("Match(%q): route %q without a virtual host", tc.authority, r.Name)
		}
	}
	if got := tbl.VirtualHosts()[0].Domains; fmt.Sprint(got) != "[example.com example.com:8443]" {
		t.Errorf("Domains = %q", got)
	}
}

func TestVirtualHostLongAuthority(t *testing.T) {
	long := make([]byte, 300)
	for i := range long {
		long[i] = 'a'
	}
	host := string(long) + ".example.com"
	tbl := compileVH(t, `{name: w, domains: ["*.example.com"], `+route+`}`)
	if vh, _ := tbl.Match(host+":443", "/", nil); vhName(vh) != "w" {
		t.Errorf("Match(300-byte host): %s, want w", vhName(vh))
	}
}

func TestPathMatching(t *testing.T) {
	tbl := compileVH(t, `{name: v, domains: ["*"], routes: [
  {name: exact, match: {path: /exact}, route: {cluster: a}},
  {name: ci-path, match: {path: /CI, case_sensitive: false}, route: {cluster: a}},
  {name: ci-prefix, match: {prefix: /Api/, case_sensitive: false}, route: {cluster: a}},
  {name: static, match: {prefix: /static/, case_sensitive: true}, route: {cluster: a}},
  {name: regex, match: {regex: "/v[0-9]+/items"}, route: {cluster: a}},
  {name: regex-ci, match: {regex: "/(?i)docs/[a-z]+", case_sensitive: false}, route: {cluster: a}},
  {name: query-prefix, match: {prefix: "/q?"}, route: {cluster: a}},
  {name: fallback, match: {prefix: /}, route: {cluster: a}}]}`,
		`{name: narrow, domains: [narrow.test], routes: [{name: only, match: {path: /only}, route: {cluster: a}}]}`)
	for _, tc := range []struct{ host, path, want string }{
		{"x", "/exact", "exact"},
		{"x", "/exact?a=1", "exact"},
		{"x", "/exact?", "exact"},
		{"x", "/exact/", "fallback"},
		{"x", "/exac", "fallback"},
		{"x", "/EXACT", "fallback"}, // case-sensitive by default
		{"x", "/ci", "ci-path"},
		{"x", "/cI?x=1", "ci-path"},
		{"x", "/ci/", "fallback"},
		{"x", "/api/users", "ci-prefix"},
		{"x", "/API/users", "ci-prefix"},
		{"x", "/Api/", "ci-prefix"},
		{"x", "/api", "fallback"},
		{"x", "/static/app.js", "static"},
		{"x", "/Static/app.js", "fallback"},
		{"x", "/v1/items", "regex"},
		{"x", "/v12/items?page=2", "regex"},
		{"x", "/v1/items/3", "fallback"}, // regex matches the whole path
		{"x", "/xv1/items", "fallback"},
		{"x", "/V1/items", "fallback"}, // case_sensitive does not apply to regex
		{"x", "/docs/abc", "regex-ci"},
		{"x", "/DOCS/ABC", "regex-ci"}, // (?i) in the pattern does
		{"x", "/q?x=1", "fallback"},    // the query is not part of a prefix match
		{"x", "", "<nil>"},
		{"narrow.test", "/only", "only"},
		{"narrow.test", "/other", "<nil>"},
	} {
		vh, r := tbl.Match(tc.host, tc.path, nil)
		if vh == nil {
			t.Fatalf("Match(%q, %q): no virtual host", tc.host, tc.path)
		}
		if got := routeName(r); got != tc.want {
			t.Errorf("Match(%q, %q) = %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}
}

func TestHeaderMatchers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		matcher string
		h       []string // name, value pairs
		want    bool
	}{
		{"exact", `{name: x-canary, exact: "1"}`, []string{"x-canary", "1"}, true},
		{"exact other value", `{name: x-canary, exact: "1"}`, []string{"x-canary", "2"}, false},
		{"exact missing", `{name: x-canary, exact: "1"}`, nil, false},
		{"exact is case-sensitive", `{name: x-env, exact: prod}`, []string{"x-env", "PROD"}, false},
		{"exact empty", `{name: x-e, exact: ""}`, []string{"x-e", ""}, true},
		{"exact empty missing", `{name: x-e, exact: ""}`, nil, false},
		{"name lower-cased", `{name: X-Canary, exact: "1"}`, []string{"x-canary", "1"}, true},
		{"exact multi joined", `{name: x-m, exact: "a,b"}`, []string{"x-m", "a", "x-other", "z", "x-m", "b"}, true},
		{"exact multi first only", `{name: x-m, exact: "a"}`, []string{"x-m", "a", "x-m", "b"}, false},
		{"prefix", `{name: user-agent, prefix: "curl/"}`, []string{"user-agent", "curl/8.5"}, true},
		{"prefix no", `{name: user-agent, prefix: "curl/"}`, []string{"user-agent", "Mozilla/5.0"}, false},
		{"prefix missing", `{name: user-agent, prefix: ""}`, nil, false},
		{"prefix empty present", `{name: user-agent, prefix: ""}`, []string{"user-agent", "x"}, true},
		{"regex whole value", `{name: x-id, regex: "[0-9]+"}`, []string{"x-id", "123"}, true},
		{"regex partial fails", `{name: x-id, regex: "[0-9]+"}`, []string{"x-id", "123a"}, false},
		{"regex alternation anchored", `{name: x-id, regex: "a|b"}`, []string{"x-id", "ab"}, false},
		{"regex missing", `{name: x-id, regex: ".*"}`, nil, false},
		{"regex multi joined", `{name: x-id, regex: "1,2"}`, []string{"x-id", "1", "x-id", "2"}, true},
		{"present (no specifier)", `{name: x-debug}`, []string{"x-debug", ""}, true},
		{"present missing", `{name: x-debug}`, []string{"x-other", "1"}, false},
		{"present true", `{name: x-debug, present: true}`, []string{"x-debug", "1"}, true},
		{"present false matches absence", `{name: x-debug, present: false}`, nil, true},
		{"present false fails presence", `{name: x-debug, present: false}`, []string{"x-debug", "1"}, false},
		{"invert exact", `{name: x-canary, exact: "1", invert: true}`, []string{"x-canary", "2"}, true},
		{"invert exact same", `{name: x-canary, exact: "1", invert: true}`, []string{"x-canary", "1"}, false},
		{"invert missing matches", `{name: x-canary, exact: "1", invert: true}`, nil, true},
		{"invert present", `{name: x-debug, invert: true}`, nil, true},
		{"invert present there", `{name: x-debug, invert: true}`, []string{"x-debug", "1"}, false},
		{"invert regex", `{name: x-id, regex: "[0-9]+", invert: true}`, []string{"x-id", "abc"}, true},
		{"host", `{name: host, exact: "example.com:8080"}`, nil, true},
		{"authority prefix", `{name: ":authority", prefix: "example."}`, nil, true},
		{"host ignores a host field", `{name: host, exact: "other"}`, []string{"host", "other"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := compileVH(t, `{name: v, domains: ["*"], routes: [{name: m, match: {prefix: /, headers: [`+tc.matcher+`]}, route: {cluster: a}}]}`)
			_, r := tbl.Match("example.com:8080", "/", headers(tc.h...))
			if got := r != nil; got != tc.want {
				t.Errorf("headers %q: matched %v, want %v", tc.h, got, tc.want)
			}
		})
	}
}

func TestHeaderMatchersNilHeader(t *testing.T) {
	tbl := compileVH(t, `{name: v, domains: ["*"], routes: [
  {name: need, match: {prefix: /, headers: [{name: x-a}]}, route: {cluster: a}},
  {name: absent, match: {prefix: /, headers: [{name: x-a, invert: true}]}, route: {cluster: a}}]}`)
	if _, r := tbl.Match("h", "/", nil); routeName(r) != "absent" {
		t.Errorf("nil header: route %s, want absent", routeName(r))
	}
}

func TestQueryParameterMatchers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		matcher string
		path    string
		want    bool
	}{
		{"exact", `{name: debug, exact: "1"}`, "/?debug=1", true},
		{"exact among others", `{name: debug, exact: "1"}`, "/p?a=b&debug=1&c", true},
		{"exact other value", `{name: debug, exact: "1"}`, "/?debug=2", false},
		{"exact missing", `{name: debug, exact: "1"}`, "/?a=1", false},
		{"no query", `{name: debug, exact: "1"}`, "/", false},
		{"name is not a value", `{name: debug, exact: "1"}`, "/?x=debug", false},
		{"name prefix is not the name", `{name: debug, exact: "1"}`, "/?debugx=1", false},
		{"first occurrence", `{name: a, exact: "1"}`, "/?a=1&a=2", true},
		{"first occurrence only", `{name: a, exact: "2"}`, "/?a=1&a=2", false},
		{"empty parts skipped", `{name: a, exact: "1"}`, "/?&&a=1&", true},
		{"no = is empty value", `{name: flag, exact: ""}`, "/?flag", true},
		{"present", `{name: flag}`, "/?flag", true},
		{"present empty value", `{name: flag, present: true}`, "/?flag=", true},
		{"present missing", `{name: flag}`, "/?other", false},
		{"present false", `{name: flag, present: false}`, "/?other", true},
		{"prefix", `{name: q, prefix: "ab"}`, "/?q=abc", true},
		{"prefix no", `{name: q, prefix: "ab"}`, "/?q=xabc", false},
		{"regex", `{name: id, regex: "[0-9]{3}"}`, "/?id=123", true},
		{"regex whole", `{name: id, regex: "[0-9]{3}"}`, "/?id=1234", false},
		{"value percent-decoded", `{name: q, exact: "a b/c"}`, "/?q=a%20b%2Fc", true},
		{"value plus is space", `{name: q, exact: "a b"}`, "/?q=a+b", true},
		{"value raw not matched when encoded", `{name: q, exact: "a%20b"}`, "/?q=a%20b", false},
		{"bad escape kept raw", `{name: q, exact: "100%"}`, "/?q=100%", true},
		{"name percent-decoded", `{name: "user id", exact: "7"}`, "/?user%20id=7", true},
		{"name plus decoded", `{name: "user id", exact: "7"}`, "/?user+id=7", true},
		{"names are case-sensitive", `{name: Debug, exact: "1"}`, "/?debug=1", false},
		{"invert", `{name: debug, exact: "1", invert: true}`, "/?debug=0", true},
		{"invert missing", `{name: debug, exact: "1", invert: true}`, "/", true},
		{"invert match", `{name: debug, exact: "1", invert: true}`, "/?debug=1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := compileVH(t, `{name: v, domains: ["*"], routes: [{name: m, match: {prefix: /, query_parameters: [`+tc.matcher+`]}, route: {cluster: a}}]}`)
			_, r := tbl.Match("h", tc.path, nil)
			if got := r != nil; got != tc.want {
				t.Errorf("Match(%q): matched %v, want %v", tc.path, got, tc.want)
			}
		})
	}
}

func TestFirstMatchWins(t *testing.T) {
	tbl := compileVH(t, `{name: v, domains: ["*"], routes: [
  {name: canary, match: {prefix: /api/, headers: [{name: x-canary, exact: "1"}], query_parameters: [{name: v, exact: "2"}]}, route: {cluster: b}},
  {name: api-short, match: {prefix: /api}, route: {cluster: a}},
  {name: api-long, match: {prefix: /api/users/}, route: {cluster: c}},
  {name: all, match: {prefix: /}, direct_response: {status: 404}}]}`)
	for _, tc := range []struct {
		path string
		h    []string
		want string
	}{
		{"/api/users/1?v=2", []string{"x-canary", "1"}, "canary"},
		{"/api/users/1?v=2", []string{"x-canary", "0"}, "api-short"}, // header fails: next route
		{"/api/users/1?v=1", []string{"x-canary", "1"}, "api-short"}, // query fails: next route
		{"/api/users/1", nil, "api-short"},                           // not longest prefix: first
		{"/other", nil, "all"},
	} {
		_, r := tbl.Match("h", tc.path, headers(tc.h...))
		if got := routeName(r); got != tc.want {
			t.Errorf("Match(%q, %q) = %s, want %s", tc.path, tc.h, got, tc.want)
		}
	}
	vh := &tbl.VirtualHosts()[0]
	for i, r := range vh.Routes() {
		if r.Index != i {
			t.Errorf("route %s: Index %d, want %d", r.Name, r.Index, i)
		}
	}
}

// TestMatchAllocs pins the zero-allocation promise for the common matchers.
func TestMatchAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	tbl := compileVH(t,
		`{name: ex, domains: [example.com, "*.example.com", "foo.*"], routes: [
  {match: {path: /exact}, route: {cluster: a}},
  {match: {prefix: /CI/, case_sensitive: false}, route: {cluster: a}},
  {match: {prefix: /h, headers: [{name: x-a, exact: "1"}, {name: x-b, prefix: "p"}, {name: x-c, invert: true}, {name: host, prefix: "www."}]}, route: {cluster: a}},
  {match: {prefix: /q, query_parameters: [{name: a, exact: "1"}, {name: b, present: true}]}, route: {cluster: a}},
  {match: {regex: "/r/[a-z]+/[0-9]+"}, route: {cluster: a}},
  {match: {prefix: /hr, headers: [{name: x-a, regex: "[0-9]+"}]}, route: {cluster: a}}]}`,
		`{name: any, domains: ["*"], `+route+`}`)
	h := headers("user-agent", "curl/8", "x-a", "1", "x-b", "pp", "accept", "*/*")
	for _, tc := range []struct{ authority, path string }{
		{"example.com", "/exact?x=1"},
		{"EXAMPLE.COM.:443", "/ci/x"},
		{"www.example.com", "/h"},
		{"foo.bar", "/q?a=1&b"},
		{"www.example.com", "/r/abc/123"},
		{"www.example.com", "/hr"},
		{"nowhere.test:8080", "/"},
	} {
		var r *Route
		allocs := testing.AllocsPerRun(100, func() { _, r = tbl.Match(tc.authority, tc.path, h) })
		if r == nil {
			t.Errorf("Match(%q, %q): no route", tc.authority, tc.path)
		}
		if allocs != 0 {
			t.Errorf("Match(%q, %q): %v allocations, want 0", tc.authority, tc.path, allocs)
		}
	}
}

func TestLiteralPrefix(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{"/r3/[a-z]+/[0-9]+", "/r3/"},
		{"^/api/.*", "/api/"},
		{`\A/x`, "/x"},
		{"/api", "/api"},
		{"/ab|/ac", "/a"}, // the parser factors the common prefix
		{"/v[0-9]+", "/v"},
		{"/(?i)docs", "/"},
		{"(?i)/api", ""},
		{"(?m)^/x", ""},
		{"a|b", ""},
		{"(/x)", ""},
		{".*", ""},
		{"x*", ""},
		{"", ""},
		{"(", ""},
	} {
		if got := literalPrefix(tc.expr); got != tc.want {
			t.Errorf("literalPrefix(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}
