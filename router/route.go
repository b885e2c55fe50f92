package router

import (
	"fmt"
	"net/url"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/edge/message"
)

// Kind is what a route does with a request it matches.
type Kind uint8

const (
	// Forward sends the request to a cluster (PickCluster).
	Forward Kind = iota + 1
	// Redirect answers with RedirectCode and RedirectLocation.
	Redirect
	// DirectResponse answers with Route.Status and Route.Body.
	DirectResponse
)

// String returns the config spelling of k's action.
func (k Kind) String() string {
	switch k {
	case Forward:
		return "route"
	case Redirect:
		return "redirect"
	case DirectResponse:
		return "direct_response"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Route is a compiled route: a match and one action. It is immutable.
type Route struct {
	// Name is the route's config name, or "".
	Name string
	// Index is the route's position in its virtual host, for logs and
	// stats when Name is "".
	Index int
	// Kind selects the action; only that action's fields are set.
	Kind Kind

	// HostRewrite, for Forward, replaces the Host sent upstream; "" keeps
	// it.
	HostRewrite string
	// AutoHostRewrite, for Forward, sends the chosen endpoint's host name as
	// Host.
	AutoHostRewrite bool
	// Timeout, for Forward, bounds the whole request, retries included;
	// 0 disables it.
	Timeout time.Duration
	// IdleTimeout, for Forward, bounds the time without activity on the
	// stream; 0 disables it.
	IdleTimeout time.Duration
	// Retry, for Forward, is the retry policy; nil means no retries.
	Retry *RetryPolicy

	// Status, for DirectResponse, is the response status.
	Status int
	// Body, for DirectResponse, is the response body ("" for none).
	Body string

	// match
	pathKind pathKind
	pattern  string // prefix or path; lower-cased when fold
	fold     bool   // case-insensitive prefix or path
	re       *regexp.Regexp
	rePrefix string // literal every path re matches starts with
	headers  []valueMatcher
	query    []valueMatcher

	// Forward
	clusters     []int    // cluster indexes
	cum          []uint64 // cumulative weights, for a weighted split
	total        uint64
	prefixRW     string
	hasPrefixRW  bool
	regexRW      *regexp.Regexp
	substitution string

	redirect *redirect
	mut      mutations
}

type pathKind uint8

const (
	matchPrefix pathKind = iota
	matchPath
	matchRegex
)

// matches reports whether the route's every criterion holds. p is the path
// without query, q the query without "?".
func (r *Route) matches(authority, p, q string, h *message.Header) bool {
	switch r.pathKind {
	case matchPrefix:
		if len(p) < len(r.pattern) {
			return false
		}
		if r.fold {
			if !equalFoldLower(p[:len(r.pattern)], r.pattern) {
				return false
			}
		} else if p[:len(r.pattern)] != r.pattern {
			return false
		}
	case matchPath:
		if r.fold {
			if !equalFoldLower(p, r.pattern) {
				return false
			}
		} else if p != r.pattern {
			return false
		}
	case matchRegex:
		if !strings.HasPrefix(p, r.rePrefix) || !r.re.MatchString(p) {
			return false
		}
	}
	for i := range r.headers {
		m := &r.headers[i]
		var v string
		var ok bool
		if m.authority {
			v, ok = authority, true
		} else {
			v, ok = headerValue(h, m.name)
		}
		if !m.test(v, ok) {
			return false
		}
	}
	for i := range r.query {
		m := &r.query[i]
		v, ok := queryValue(q, m.name)
		if !m.test(v, ok) {
			return false
		}
	}
	return true
}

// equalFoldLower reports whether s equals lower under ASCII case folding;
// lower is already lower-case.
func equalFoldLower(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

type matchKind uint8

const (
	matchPresent matchKind = iota
	matchExact
	matchValuePrefix
	matchValueRegex
)

// valueMatcher is a compiled header or query parameter matcher.
type valueMatcher struct {
	name      string
	kind      matchKind
	value     string
	re        *regexp.Regexp
	present   bool // for matchPresent: whether presence (true) or absence matches
	invert    bool
	authority bool // the header is host / :authority
}

// test applies m to a value v that is present when ok.
func (m *valueMatcher) test(v string, ok bool) bool {
	var res bool
	switch {
	case m.kind == matchPresent:
		res = ok == m.present
	case !ok:
		res = false
	case m.kind == matchExact:
		res = v == m.value
	case m.kind == matchValuePrefix:
		res = strings.HasPrefix(v, m.value)
	case m.kind == matchValueRegex:
		res = m.re.MatchString(v)
	}
	return res != m.invert
}

// headerValue returns name's value in h; several fields are joined with ","
// (which allocates), a single one is returned as is.
func headerValue(h *message.Header, name string) (string, bool) {
	if h == nil {
		return "", false
	}
	fs := h.Fields()
	for i := range fs {
		if fs[i].Name != name {
			continue
		}
		for j := i + 1; j < len(fs); j++ {
			if fs[j].Name == name {
				return joinValues(fs[i:], name), true
			}
		}
		return fs[i].Value, true
	}
	return "", false
}

func joinValues(fs []message.Field, name string) string {
	var b strings.Builder
	for _, f := range fs {
		if f.Name != name {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(f.Value)
	}
	return b.String()
}

// queryValue returns the value of the first parameter called name in the
// query q. Names and values with "%" or "+" are decoded (allocating); a
// parameter without "=" has the value "".
func queryValue(q, name string) (string, bool) {
	for q != "" {
		var part string
		if i := strings.IndexByte(q, '&'); i >= 0 {
			part, q = q[:i], q[i+1:]
		} else {
			part, q = q, ""
		}
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if k != name && !(needsDecode(k) && unescape(k) == name) {
			continue
		}
		if needsDecode(v) {
			v = unescape(v)
		}
		return v, true
	}
	return "", false
}

func needsDecode(s string) bool { return strings.ContainsAny(s, "%+") }

// unescape decodes a query component; a malformed one is used as written.
func unescape(s string) string {
	if d, err := url.QueryUnescape(s); err == nil {
		return d
	}
	return s
}

// PickCluster returns the index (in the clusters map given to Compile) of
// the cluster to forward to. For a weighted split, rnd % total weight picks
// the cluster by cumulative weight, so rnd values spread evenly over any
// range of total-weight length divide exactly by the weights. It returns -1
// for routes that do not forward.
func (r *Route) PickCluster(rnd uint64) int {
	if len(r.cum) == 0 {
		if len(r.clusters) == 0 {
			return -1
		}
		return r.clusters[0]
	}
	x := rnd % r.total
	lo, hi := 0, len(r.cum)-1
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if r.cum[mid] > x {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return r.clusters[lo]
}

// Rewrites reports whether RewritePath changes paths (prefix_rewrite or
// regex_rewrite is configured).
func (r *Route) Rewrites() bool { return r.hasPrefixRW || r.regexRW != nil }

// RewritePath returns the path to send upstream for path, the origin-form
// target (query included) this route matched. prefix_rewrite replaces the
// matched prefix (for path and regex routes, the whole path without query);
// regex_rewrite replaces every match of its pattern in the path without
// query, with Regexp.ReplaceAllString semantics. The query is kept, and a
// "/" is put in front of a result that would lack one. Without a rewrite, or
// for a path the route does not match, path is returned unchanged and
// nothing is allocated.
func (r *Route) RewritePath(path string) string {
	if !r.Rewrites() {
		return path
	}
	p, rest := path, ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		p, rest = path[:i], path[i:]
	}
	if r.hasPrefixRW {
		n, ok := r.matchedLen(p)
		if !ok {
			return path
		}
		// path[n:] is the rest of the path and the query: one allocation.
		return slash(r.prefixRW, path[n:]) + r.prefixRW + path[n:]
	}
	np := r.regexRW.ReplaceAllString(p, r.substitution)
	if np == p {
		return path
	}
	return slash(np, rest) + np + rest
}

// slash returns "/" if head+tail would not start with one, so that a
// rewritten path stays in origin form ("/strip/x" with prefix "/strip/"
// rewritten to "" becomes "/x").
func slash(head, tail string) string {
	if strings.HasPrefix(head, "/") || (head == "" && strings.HasPrefix(tail, "/")) {
		return ""
	}
	return "/"
}

// matchedLen returns how much of p (a path without query) the route's path
// specifier matched: the prefix for prefix routes, all of p otherwise. ok is
// false if p does not match.
func (r *Route) matchedLen(p string) (n int, ok bool) {
	switch r.pathKind {
	case matchPrefix:
		n = len(r.pattern)
		if len(p) < n || (r.fold && !equalFoldLower(p[:n], r.pattern)) || (!r.fold && p[:n] != r.pattern) {
			return 0, false
		}
		return n, true
	case matchPath:
		if (r.fold && !equalFoldLower(p, r.pattern)) || (!r.fold && p != r.pattern) {
			return 0, false
		}
	}
	return len(p), true
}

// redirect is a compiled redirect action.
type redirect struct {
	code         int
	https        bool
	host         string // host_redirect without its port
	hostPort     string
	hostHasPort  bool
	port         string // port_redirect, "" when unset
	path         string // path_redirect without its query, "" when unset
	pathQuery    string // path_redirect's query with "?", "" for none
	pathHasQuery bool
	prefixRW     string
	hasPrefixRW  bool
	stripQuery   bool
}

// RedirectCode returns the redirect status (301 by default), or 0 for a
// route that does not redirect.
func (r *Route) RedirectCode() int {
	if r.redirect == nil {
		return 0
	}
	return r.redirect.code
}

// RedirectLocation returns the absolute URL to redirect a request to, given
// the scheme it arrived with ("http" or "https"; "" means http), its
// authority and its origin-form path (query included), as Envoy's
// RedirectAction does:
//
//   - https_redirect sets the scheme to https and drops an explicit :80 or
//     :443 port (other ports are kept).
//   - host_redirect replaces the host; if it carries a port, that replaces
//     the port too.
//   - port_redirect replaces the port.
//   - A port equal to the final scheme's default (80 for http, 443 for
//     https) is omitted.
//   - path_redirect replaces the whole path; a query written in it replaces
//     the request's query (and survives strip_query). prefix_rewrite
//     replaces the matched prefix (for path and regex routes, the whole
//     path).
//   - strip_query drops the request's query.
//
// It returns "" for a route that does not redirect.
func (r *Route) RedirectLocation(scheme, authority, path string) string {
	rd := r.redirect
	if rd == nil {
		return ""
	}
	host, port, _ := splitPort(authority)
	if rd.https {
		scheme = "https"
		if port == "80" || port == "443" {
			port = ""
		}
	} else if scheme == "" {
		scheme = "http"
	}
	if rd.host != "" {
		host = rd.host
		if rd.hostHasPort {
			port = rd.hostPort
		}
	}
	if rd.port != "" {
		port = rd.port
	}
	if port == defaultPort(scheme) {
		port = ""
	}
	p, rest := path, ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		p, rest = path[:i], path[i:]
	}
	if rd.stripQuery {
		rest = ""
	}
	switch {
	case rd.path != "":
		p = rd.path
		if rd.pathHasQuery {
			rest = rd.pathQuery
		}
	case rd.hasPrefixRW:
		if n, ok := r.matchedLen(p); ok {
			return buildURL(scheme, host, port, rd.prefixRW, p[n:], rest)
		}
	}
	return buildURL(scheme, host, port, p, "", rest)
}

func defaultPort(scheme string) string {
	switch scheme {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}

// buildURL joins scheme://host[:port] and the path head+tail (with a "/"
// in front if it lacks one) and rest, with one allocation.
func buildURL(scheme, host, port, head, tail, rest string) string {
	sl := slash(head, tail)
	var b strings.Builder
	b.Grow(len(scheme) + 3 + len(host) + 1 + len(port) + len(sl) + len(head) + len(tail) + len(rest))
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	if port != "" {
		b.WriteByte(':')
		b.WriteString(port)
	}
	b.WriteString(sl)
	b.WriteString(head)
	b.WriteString(tail)
	b.WriteString(rest)
	return b.String()
}

// HTTPSLocation returns the https URL a require_tls redirect sends a
// plain-text request to: the same host and path (query included), with an
// explicit :80 or :443 port dropped and any other port kept.
func HTTPSLocation(authority, path string) string {
	host, port, _ := splitPort(authority)
	if port == "80" || port == "443" {
		port = ""
	}
	return buildURL("https", host, port, path, "", "")
}

// compileRoute fills r from cr, found at field path rp.
func (c *compiler) compileRoute(r *Route, cr *config.Route, idx int, rp string) {
	r.Name = cr.Name
	r.Index = idx
	r.mut = compileMutations(&cr.HeaderMutations)

	m := &cr.Match
	mp := rp + ".match"
	r.fold = m.CaseSensitive != nil && !*m.CaseSensitive
	switch {
	case m.Has("regex") || (m.Regex != "" && m.Prefix == "" && m.Path == ""):
		r.pathKind = matchRegex
		r.re = c.anchored(&m.Meta, "regex", mp, m.Regex)
		r.rePrefix = literalPrefix(m.Regex)
		r.fold = false
	case m.Has("path") || (m.Path != "" && m.Prefix == ""):
		r.pathKind = matchPath
		r.pattern = m.Path
	default:
		r.pathKind = matchPrefix
		r.pattern = m.Prefix
	}
	if r.fold {
		r.pattern = string(appendLower(nil, r.pattern))
	}
	for i := range m.Headers {
		vm := c.valueMatcher(&m.Headers[i], fmt.Sprintf("%s.headers[%d]", mp, i))
		vm.name = strings.ToLower(vm.name)
		vm.authority = vm.name == "host" || vm.name == ":authority"
		r.headers = append(r.headers, vm)
	}
	for i := range m.QueryParameters {
		r.query = append(r.query, c.valueMatcher(&m.QueryParameters[i], fmt.Sprintf("%s.query_parameters[%d]", mp, i)))
	}

	switch {
	case cr.Route != nil:
		r.Kind = Forward
		c.compileForward(r, cr.Route, rp+".route")
	case cr.Redirect != nil:
		r.Kind = Redirect
		r.redirect = compileRedirect(cr.Redirect)
	case cr.DirectResponse != nil:
		r.Kind = DirectResponse
		r.Status = cr.DirectResponse.Status
		r.Body = cr.DirectResponse.Body
	default:
		c.errorf(&cr.Meta, "", rp, "a route needs exactly one of route, redirect, direct_response")
	}
}

// anchored compiles expr so that it must match a whole string.
func (c *compiler) anchored(m *config.Meta, key, path, expr string) *regexp.Regexp {
	re, err := regexp.Compile("^(?:" + expr + ")$")
	if err != nil {
		c.errorf(m, key, path, "regex %q does not compile: %v", expr, err)
		return regexp.MustCompile("$^") // never matches; Compile fails anyway
	}
	return re
}

// literalPrefix returns a literal that every string expr matches in full
// must start with ("" if there is none), so that Match can skip a regex
// route with one compare. Only a case-sensitive literal at the start of the
// expression (after \A or a non-multiline ^) counts.
func literalPrefix(expr string) string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return ""
	}
	re = re.Simplify()
	subs := []*syntax.Regexp{re}
	if re.Op == syntax.OpConcat {
		subs = re.Sub
	}
	for _, sub := range subs {
		switch {
		case sub.Op == syntax.OpBeginText:
			continue
		case sub.Op == syntax.OpLiteral && sub.Flags&syntax.FoldCase == 0:
			return string(sub.Rune)
		}
		return ""
	}
	return ""
}

func (c *compiler) valueMatcher(h *config.HeaderMatch, path string) valueMatcher {
	vm := valueMatcher{name: h.Name, invert: h.Invert, present: true}
	switch {
	case h.Exact != nil:
		vm.kind, vm.value = matchExact, *h.Exact
	case h.Prefix != nil:
		vm.kind, vm.value = matchValuePrefix, *h.Prefix
	case h.Regex != nil:
		vm.kind = matchValueRegex
		vm.re = c.anchored(&h.Meta, "regex", path, *h.Regex)
	case h.Present != nil:
		vm.present = *h.Present
	}
	return vm
}

func (c *compiler) compileForward(r *Route, a *config.RouteAction, ap string) {
	r.HostRewrite = a.HostRewrite
	r.AutoHostRewrite = a.AutoHostRewrite
	r.Timeout = a.Timeout.D()
	r.IdleTimeout = a.IdleTimeout.D()
	if a.Cluster != "" {
		if i, ok := c.clusters[a.Cluster]; ok {
			r.clusters = []int{i}
		} else {
			c.errorf(&a.Meta, "cluster", ap, "unknown cluster %q", a.Cluster)
		}
	}
	if len(a.WeightedClusters) > 0 {
		for i := range a.WeightedClusters {
			w := &a.WeightedClusters[i]
			idx, ok := c.clusters[w.Name]
			if !ok {
				c.errorf(&w.Meta, "name", fmt.Sprintf("%s.weighted_clusters[%d]", ap, i), "unknown cluster %q", w.Name)
			}
			r.total += uint64(w.Weight)
			r.clusters = append(r.clusters, idx)
			r.cum = append(r.cum, r.total)
		}
		if r.total == 0 {
			c.errorf(&a.Meta, "weighted_clusters", ap, "weights sum to 0: give at least one cluster a positive weight")
			r.cum = nil
		}
	}
	if a.Cluster != "" && len(a.WeightedClusters) > 0 {
		c.errorf(&a.Meta, "weighted_clusters", ap, "set cluster or weighted_clusters, not both")
	}
	if a.Cluster == "" && len(a.WeightedClusters) == 0 {
		c.errorf(&a.Meta, "cluster", ap, "missing: name a cluster, or list weighted_clusters")
	}
	if a.PrefixRewrite != nil {
		r.prefixRW, r.hasPrefixRW = *a.PrefixRewrite, true
	}
	if rr := a.RegexRewrite; rr != nil {
		rrp := ap + ".regex_rewrite"
		re, err := regexp.Compile(rr.Pattern)
		if err != nil {
			c.errorf(&rr.Meta, "pattern", rrp, "regex %q does not compile: %v", rr.Pattern, err)
		} else if msg := checkSubstitution(re, rr.Substitution); msg != "" {
			c.errorf(&rr.Meta, "substitution", rrp, "%s", msg)
		} else {
			r.regexRW, r.substitution = re, rr.Substitution
		}
	}
	if p := a.RetryPolicy; p != nil {
		r.Retry = compileRetry(p)
	}
}

// checkSubstitution returns what is wrong with a regex_rewrite substitution
// for re, or "". It reads the template the way Regexp.Expand does, so it
// catches references that would silently expand to nothing.
func checkSubstitution(re *regexp.Regexp, tmpl string) string {
	for i := 0; i < len(tmpl); i++ {
		switch tmpl[i] {
		case '\\':
			if i+1 < len(tmpl) && '0' <= tmpl[i+1] && tmpl[i+1] <= '9' {
				return fmt.Sprintf(`substitution %q uses \%c: write ${%c} (Go regexp syntax)`, tmpl, tmpl[i+1], tmpl[i+1])
			}
		case '$':
			if i+1 < len(tmpl) && tmpl[i+1] == '$' {
				i++
				continue
			}
			name, n, braced := expandRef(tmpl[i+1:])
			if n == 0 {
				continue // Expand writes a lone "$" literally
			}
			i += n
			if num, ok := groupNumber(name); ok {
				if num > re.NumSubexp() {
					return fmt.Sprintf("substitution %q refers to group %d but the pattern has %d", tmpl, num, re.NumSubexp())
				}
				continue
			}
			if re.SubexpIndex(name) >= 0 {
				continue
			}
			if !braced && name[0] >= '0' && name[0] <= '9' {
				j := 0
				for j < len(name) && name[j] >= '0' && name[j] <= '9' {
					j++
				}
				return fmt.Sprintf("substitution %q: $%s is read as a group named %q; write ${%s}%s", tmpl, name, name, name[:j], name[j:])
			}
			return fmt.Sprintf("substitution %q refers to group %q, which the pattern does not define", tmpl, name)
		}
	}
	return ""
}

// expandRef reads a group reference after "$" as Regexp.Expand does: a name
// of letters, digits and "_", optionally in braces. n is the number of bytes
// consumed (0 if it is not a reference).
func expandRef(s string) (name string, n int, braced bool) {
	if strings.HasPrefix(s, "{") {
		braced = true
		s = s[1:]
	}
	i := 0
	for i < len(s) {
		ch, size := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsLetter(ch) && !unicode.IsDigit(ch) && ch != '_' {
			break
		}
		i += size
	}
	if i == 0 {
		return "", 0, false
	}
	name, n = s[:i], i
	if braced {
		if i >= len(s) || s[i] != '}' {
			return "", 0, false
		}
		n += 2
	}
	return name, n, braced
}

// groupNumber parses name as Expand does: decimal digits without a leading
// zero.
func groupNumber(name string) (int, bool) {
	if len(name) > 1 && name[0] == '0' {
		return 0, false
	}
	num := 0
	for i := 0; i < len(name); i++ {
		if name[i] < '0' || name[i] > '9' || num >= 1e8 {
			return 0, false
		}
		num = num*10 + int(name[i]-'0')
	}
	return num, true
}

func compileRedirect(cr *config.Redirect) *redirect {
	rd := &redirect{
		code:       cr.ResponseCode,
		https:      cr.HTTPSRedirect,
		stripQuery: cr.StripQuery,
	}
	if rd.code == 0 {
		rd.code = config.DefaultRedirectCode
	}
	if cr.HostRedirect != "" {
		rd.host, rd.hostPort, rd.hostHasPort = splitPort(cr.HostRedirect)
		if rd.hostPort == "" {
			rd.hostHasPort = false
		}
	}
	if cr.PortRedirect > 0 {
		rd.port = strconv.Itoa(cr.PortRedirect)
	}
	if cr.PathRedirect != "" {
		rd.path = cr.PathRedirect
		if i := strings.IndexByte(rd.path, '?'); i >= 0 {
			rd.path, rd.pathQuery, rd.pathHasQuery = rd.path[:i], rd.path[i:], true
			if rd.pathQuery == "?" {
				rd.pathQuery = ""
			}
		}
		if rd.path == "" {
			rd.path = "/"
		}
	}
	if cr.PrefixRewrite != nil {
		rd.prefixRW, rd.hasPrefixRW = *cr.PrefixRewrite, true
	}
	return rd
}
