package router

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/edgeproxy/edge/edge/message"
)

// linearMatch is the reference: every route in order, no index.
func linearMatch(vh *VirtualHost, authority, path string, h *message.Header) *Route {
	p, q := splitQuery(path)
	for i := range vh.routes {
		if vh.routes[i].matches(authority, p, q, h) {
			return &vh.routes[i]
		}
	}
	return nil
}

// TestRouteIndexAgreesWithScan checks on random route sets and paths that
// the index never changes which route wins.
func TestRouteIndexAgreesWithScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	segs := []string{"a", "A", "b", "ab", "Ab", "x", "api", "API", "v1", ""}
	randPath := func() string {
		var b strings.Builder
		for range 1 + rng.IntN(4) {
			b.WriteByte('/')
			b.WriteString(segs[rng.IntN(len(segs))])
		}
		return b.String()
	}
	indexed := 0
	for cfgN := range 60 {
		var routes []string
		var lits []string
		for range 4 + rng.IntN(70) {
			lit := randPath()
			lits = append(lits, lit)
			switch rng.IntN(6) {
			case 0:
				routes = append(routes, fmt.Sprintf(`{match: {prefix: %q}, route: {cluster: a}}`, lit))
			case 1:
				routes = append(routes, fmt.Sprintf(`{match: {prefix: %q, case_sensitive: false}, route: {cluster: a}}`, lit))
			case 2:
				routes = append(routes, fmt.Sprintf(`{match: {path: %q}, route: {cluster: a}}`, lit))
			case 3:
				routes = append(routes, fmt.Sprintf(`{match: {path: %q, case_sensitive: false}, route: {cluster: a}}`, lit))
			case 4:
				routes = append(routes, fmt.Sprintf(`{match: {regex: %q}, route: {cluster: a}}`, lit+"[a-z/]*"))
			case 5:
				routes = append(routes, fmt.Sprintf(`{match: {regex: %q}, route: {cluster: a}}`, "(?i)"+lit+".*"))
			}
		}
		if rng.IntN(2) == 0 {
			routes = append(routes, `{match: {prefix: /}, route: {cluster: a}}`)
		}
		tbl := compileVH(t, `{name: v, domains: ["*"], routes: [`+strings.Join(routes, ",\n  ")+`]}`)
		vh := &tbl.vhosts[0]
		if vh.idx.masks != nil {
			indexed++
		}
		for range 300 {
			var path string
			switch rng.IntN(3) {
			case 0:
				path = randPath()
			case 1:
				path = lits[rng.IntN(len(lits))]
			case 2:
				path = strings.ToUpper(lits[rng.IntN(len(lits))]) + randPath()
			}
			if rng.IntN(4) == 0 {
				path += "?q=1"
			}
			_, got := tbl.Match("h", path, nil)
			if want := linearMatch(vh, "h", path, nil); got != want {
				t.Fatalf("config %d, path %q: index picks route %v, scan picks %v\nroutes:\n%s",
					cfgN, path, indexOf(got), indexOf(want), strings.Join(routes, "\n"))
			}
		}
	}
	if indexed < 30 {
		t.Errorf("only %d of 60 random configs were indexed; the test is not exercising the index", indexed)
	}
}

func indexOf(r *Route) any {
	if r == nil {
		return nil
	}
	return r.Index
}

func TestRouteIndexNarrows(t *testing.T) {
	tbl := compileVH(t, `{name: v, domains: ["*"], routes: [
  {match: {prefix: /api/}, route: {cluster: a}},
  {match: {prefix: /blog/}, route: {cluster: a}},
  {match: {prefix: /CDN/, case_sensitive: false}, route: {cluster: a}},
  {match: {regex: "/docs/[a-z]+"}, route: {cluster: a}},
  {match: {regex: "[a-z]+"}, route: {cluster: a}},
  {match: {prefix: /}, route: {cluster: a}}]}`)
	x := &tbl.vhosts[0].idx
	if x.masks == nil || x.pos != 1 {
		t.Fatalf("index at %d (masks %v), want position 1", x.pos, x.masks != nil)
	}
	for _, tc := range []struct {
		path string
		want []int
	}{
		{"/api/x", []int{0, 4, 5}},
		{"/blog", []int{1, 4, 5}},
		{"/cdn/x", []int{2, 4, 5}},
		{"/CDN/x", []int{2, 4, 5}},
		{"/docs/a", []int{3, 4, 5}},
		{"/zzz", []int{4, 5}},
		{"/", nil}, // too short for position 1: every route
	} {
		if got := x.candidates(tc.path); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("candidates(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
	small := compileVH(t, `{name: v, domains: ["*"], routes: [{match: {prefix: /a}, route: {cluster: a}}]}`)
	if small.vhosts[0].idx.masks != nil {
		t.Error("a one-route virtual host got an index")
	}
	flat := compileVH(t, `{name: v, domains: ["*"], routes: [
  {match: {prefix: /}, route: {cluster: a}}, {match: {regex: ".*"}, route: {cluster: a}},
  {match: {prefix: /}, route: {cluster: b}}, {match: {prefix: /}, route: {cluster: c}}]}`)
	if flat.vhosts[0].idx.masks != nil {
		t.Error("routes without literals got an index")
	}
}

// candidates lists the route indexes the index lets Match try for path p,
// in order; nil means all.
func (x *routeIndex) candidates(p string) []int {
	if x.masks == nil || len(p) <= x.pos {
		return nil
	}
	var out []int
	c := int(p[x.pos])
	for i := 0; i < x.words*64; i++ {
		if x.masks[c*x.words+i>>6]&(1<<(i&63)) != 0 {
			out = append(out, i)
		}
	}
	return out
}
