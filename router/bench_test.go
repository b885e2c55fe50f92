package router

import (
	"fmt"
	"strings"
	"testing"
)

// benchTable compiles a realistic route config: 20 virtual hosts (14 with
// an exact domain and its :8443 form, 4 suffix wildcards, a prefix wildcard
// and "*") of 30 routes each, cycling through exact paths, case-insensitive
// prefixes, header-matched prefixes, regexes, redirects and direct
// responses, and ending with a weighted catch-all.
func benchTable(b *testing.B) *Table {
	var s strings.Builder
	s.WriteString("route_configs:\n  - name: main\n    response_headers_to_add: [{name: x-edge, value: \"1\"}]\n    virtual_hosts:\n")
	for i := range 20 {
		var domains string
		switch {
		case i < 14:
			domains = fmt.Sprintf(`[svc%d.example.com, "svc%d.example.com:8443"]`, i, i)
		case i < 18:
			domains = fmt.Sprintf(`["*.wild%d.example.net"]`, i)
		case i == 18:
			domains = `["api.*"]`
		default:
			domains = `["*"]`
		}
		fmt.Fprintf(&s, "      - name: vh%d\n        domains: %s\n        routes:\n", i, domains)
		for j := range 29 {
			switch j % 6 {
			case 0:
				fmt.Fprintf(&s, "          - {match: {path: /exact%d}, route: {cluster: a}}\n", j)
			case 1:
				fmt.Fprintf(&s, "          - {match: {prefix: /p%d/, case_sensitive: false}, route: {cluster: b, prefix_rewrite: /}}\n", j)
			case 2:
				fmt.Fprintf(&s, "          - {match: {prefix: /h%d/, headers: [{name: x-tenant, exact: t%d}]}, route: {cluster: c}}\n", j, j)
			case 3:
				fmt.Fprintf(&s, "          - {match: {regex: \"/r%d/[a-z]+/[0-9]+\"}, route: {cluster: a}}\n", j)
			case 4:
				fmt.Fprintf(&s, "          - {match: {path: /old%d}, redirect: {path_redirect: /new%d}}\n", j, j)
			case 5:
				fmt.Fprintf(&s, "          - {match: {path: /ping%d}, direct_response: {status: 200, body: pong}}\n", j)
			}
		}
		s.WriteString("          - {match: {prefix: /}, route: {weighted_clusters: [{name: a, weight: 90}, {name: b, weight: 10}]}}\n")
	}
	return compileRC(b, s.String())
}

func BenchmarkMatch(b *testing.B) {
	tbl := benchTable(b)
	h := headers("user-agent", "Mozilla/5.0", "accept", "*/*", "accept-encoding", "gzip", "x-tenant", "t20", "cookie", "a=b")
	for _, bc := range []struct {
		name, authority, path string
		wantVH                string
		wantRoute             int
	}{
		{"ExactHostPrefix", "svc7.example.com", "/p25/users/123?x=1", "vh7", 25},
		{"ExactHostPortPrefix", "SVC7.example.com:8443", "/P7/users", "vh7", 7},
		{"ExactHostPath", "svc3.example.com", "/exact0", "vh3", 0},
		{"WildcardHost", "foo.wild15.example.net", "/p13/x", "vh15", 13},
		{"PrefixWildcardHost", "api.example.org:8080", "/p1/x", "vh18", 1},
		{"HeaderMatched", "svc2.example.com", "/h20/orders", "vh2", 20},
		{"Regex", "svc2.example.com", "/r21/abc/123", "vh2", 21},
		{"CatchAllFallthrough", "unknown.test", "/nothing/matches/here", "vh19", 29},
	} {
		vh, r := tbl.Match(bc.authority, bc.path, h)
		if vhName(vh) != bc.wantVH || r == nil || r.Index != bc.wantRoute {
			b.Fatalf("%s: matched %s route %v, want %s route %d", bc.name, vhName(vh), r, bc.wantVH, bc.wantRoute)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tbl.Match(bc.authority, bc.path, h)
			}
		})
	}
}

func BenchmarkActions(b *testing.B) {
	tbl := benchTable(b)
	vh, fwd := tbl.Match("svc1.example.com", "/p1/users?id=1", nil)
	_, redir := tbl.Match("svc1.example.com", "/old4?x=1", nil)
	_, weighted := tbl.Match("svc1.example.com", "/", nil)
	b.Run("PickClusterWeighted", func(b *testing.B) {
		b.ReportAllocs()
		var rnd uint64
		for b.Loop() {
			rnd++
			weighted.PickCluster(rnd)
		}
	})
	b.Run("RewritePathNone", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			weighted.RewritePath("/users?id=1")
		}
	})
	b.Run("RewritePathPrefix", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			fwd.RewritePath("/p1/users?id=1")
		}
	})
	b.Run("RedirectLocation", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			redir.RedirectLocation("http", "svc1.example.com", "/old4?x=1")
		}
	})
	b.Run("MutateResponse", func(b *testing.B) {
		b.ReportAllocs()
		h := headers("content-type", "text/plain", "content-length", "4")
		for b.Loop() {
			h.Del("x-edge")
			tbl.MutateResponse(h, vh, fwd)
		}
	})
}
