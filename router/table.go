package router

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"
	"strings"

	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/edge/message"
)

// Table is one compiled route config. It is immutable and safe for
// concurrent use.
type Table struct {
	// Name is the route config's name.
	Name string

	vhosts []VirtualHost
	// withPort indexes domains that carry a port and is searched with the
	// whole authority; noPort indexes the others and is searched with the
	// host alone.
	withPort hostSet
	noPort   hostSet
	// any is the "*" virtual host, or nil.
	any *VirtualHost
	mut mutations
}

// TLSRequirement is a virtual host's require_tls setting.
type TLSRequirement uint8

const (
	// TLSNone never redirects to https.
	TLSNone TLSRequirement = iota
	// TLSAll redirects every request that did not arrive over TLS.
	TLSAll
	// TLSExternalOnly redirects requests that did not arrive over TLS and
	// come from an external (untrusted) client.
	TLSExternalOnly
)

// String returns the config spelling of r.
func (r TLSRequirement) String() string {
	switch r {
	case TLSAll:
		return "all"
	case TLSExternalOnly:
		return "external_only"
	}
	return "none"
}

// VirtualHost is a compiled virtual host.
type VirtualHost struct {
	// Name is the virtual host's config name, for logs and stats.
	Name string
	// Index is the virtual host's position in the route config.
	Index int
	// Domains are the normalized (lower-cased, trailing dot dropped)
	// domains as configured.
	Domains []string
	// RequireTLS says which plain-text requests are redirected to https.
	RequireTLS TLSRequirement

	routes []Route
	idx    routeIndex
	mut    mutations
}

// Routes returns the virtual host's routes in match order. The slice is
// shared and must not be modified.
func (vh *VirtualHost) Routes() []Route { return vh.routes }

// RequiresRedirectToTLS reports whether a request must be answered with a
// redirect to https (see HTTPSLocation): tls says whether it arrived over
// TLS (or, from a trusted peer, whether the first hop did), external whether
// the client is external, as the XFF trust rules classify it.
func (vh *VirtualHost) RequiresRedirectToTLS(tls, external bool) bool {
	switch vh.RequireTLS {
	case TLSAll:
		return !tls
	case TLSExternalOnly:
		return !tls && external
	}
	return false
}

// VirtualHosts returns the table's virtual hosts in config order. The slice
// is shared and must not be modified.
func (t *Table) VirtualHosts() []VirtualHost { return t.vhosts }

// hostSet indexes one class of domains (with or without a port).
type hostSet struct {
	exact  map[string]*VirtualHost
	suffix []wildGroup // "*.foo.com": keyed by ".foo.com", longest first
	prefix []wildGroup // "foo.*": keyed by "foo.", longest first
}

// wildGroup holds the wildcard domains whose fixed part has length n.
type wildGroup struct {
	n int
	m map[string]*VirtualHost
}

// find returns the virtual host key selects in s, or nil. key is
// normalized (see normAuthority). It is generic so that an authority that is
// already normalized is looked up without a copy, and a normalized copy in a
// stack buffer without a conversion.
func find[K string | []byte](s *hostSet, key K) *VirtualHost {
	if vh, ok := s.exact[string(key)]; ok {
		return vh
	}
	for i := range s.suffix {
		g := &s.suffix[i]
		if g.n < len(key) {
			if vh, ok := g.m[string(key[len(key)-g.n:])]; ok {
				return vh
			}
		}
	}
	for i := range s.prefix {
		g := &s.prefix[i]
		if g.n < len(key) {
			if vh, ok := g.m[string(key[:g.n])]; ok {
				return vh
			}
		}
	}
	return nil
}

func (s *hostSet) add(kind byte, key string, vh *VirtualHost) {
	switch kind {
	case '=':
		if s.exact == nil {
			s.exact = map[string]*VirtualHost{}
		}
		s.exact[key] = vh
	case 's':
		s.suffix = addWild(s.suffix, key, vh)
	case 'p':
		s.prefix = addWild(s.prefix, key, vh)
	}
}

func addWild(gs []wildGroup, key string, vh *VirtualHost) []wildGroup {
	for i := range gs {
		if gs[i].n == len(key) {
			gs[i].m[key] = vh
			return gs
		}
	}
	gs = append(gs, wildGroup{n: len(key), m: map[string]*VirtualHost{key: vh}})
	slices.SortFunc(gs, func(a, b wildGroup) int { return cmp.Compare(b.n, a.n) })
	return gs
}

// splitPort splits an authority into host and port. An IPv6 literal keeps
// its brackets. hasPort is false when there is no ":port" part.
func splitPort(a string) (host, port string, hasPort bool) {
	if strings.HasPrefix(a, "[") {
		i := strings.IndexByte(a, ']')
		if i < 0 || i+1 >= len(a) || a[i+1] != ':' {
			return a, "", false
		}
		return a[:i+1], a[i+2:], true
	}
	i := strings.LastIndexByte(a, ':')
	if i < 0 {
		return a, "", false
	}
	return a[:i], a[i+1:], true
}

// normAuthority appends to buf the authority a lower-cased, with one trailing
// dot of its host part and an empty port dropped. hostLen is the length of
// the host part; it equals len(key) when there is no port.
func normAuthority(buf []byte, a string) (key []byte, hostLen int) {
	host, port, hasPort := splitPort(a)
	if len(host) > 1 && host[len(host)-1] == '.' {
		host = host[:len(host)-1]
	}
	key = appendLower(buf, host)
	hostLen = len(key)
	if hasPort && port != "" {
		key = append(key, ':')
		key = appendLower(key, port)
	}
	return key, hostLen
}

// appendLower appends s to b with ASCII letters lower-cased.
func appendLower(b []byte, s string) []byte {
	n := len(b)
	b = append(b, s...)
	for i := n; i < len(b); i++ {
		if c := b[i]; 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return b
}

// hostBufSize covers any DNS name (253) with a port; longer authorities are
// still handled, with one allocation.
const hostBufSize = 264

// VirtualHost returns the virtual host selected for authority, or nil. See
// the package documentation for the order.
func (t *Table) VirtualHost(authority string) *VirtualHost {
	host, port, hasPort := splitPort(authority)
	if !hasUpper(authority) && !strings.HasSuffix(host, ".") && (!hasPort || port != "") {
		return selectHost(t, authority, len(host))
	}
	var buf [hostBufSize]byte
	key, hostLen := normAuthority(buf[:0], authority)
	return selectHost(t, key, hostLen)
}

// selectHost looks up a normalized authority whose host part is
// key[:hostLen].
func selectHost[K string | []byte](t *Table, key K, hostLen int) *VirtualHost {
	if hostLen < len(key) {
		if vh := find(&t.withPort, key); vh != nil {
			return vh
		}
		key = key[:hostLen]
	}
	if vh := find(&t.noPort, key); vh != nil {
		return vh
	}
	return t.any
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// Match picks the virtual host for authority (Host or :authority, any case,
// maybe with a port) and the first route, in order, whose every criterion
// matches path (origin form, query included) and h (which may be nil).
// vh == nil means no virtual host matched; r == nil with vh != nil means no
// route did. Both answers are a 404 for the caller. Match allocates nothing
// unless a matcher needs to join a repeated header or decode a query
// parameter.
func (t *Table) Match(authority, path string, h *message.Header) (vh *VirtualHost, r *Route) {
	vh = t.VirtualHost(authority)
	if vh == nil {
		return nil, nil
	}
	p, q := splitQuery(path)
	if x := &vh.idx; x.masks != nil && len(p) > x.pos {
		// Only the routes whose required literal allows p's byte at
		// x.pos, still in config order.
		c := int(p[x.pos])
		for wi, w := range x.masks[c*x.words : (c+1)*x.words] {
			for w != 0 {
				i := wi<<6 | bits.TrailingZeros64(w)
				w &= w - 1
				if vh.routes[i].matches(authority, p, q, h) {
					return vh, &vh.routes[i]
				}
			}
		}
		return vh, nil
	}
	for i := range vh.routes {
		if vh.routes[i].matches(authority, p, q, h) {
			return vh, &vh.routes[i]
		}
	}
	return vh, nil
}

// splitQuery splits an origin-form request target into path and query (the
// query without its "?").
func splitQuery(target string) (path, query string) {
	if i := strings.IndexByte(target, '?'); i >= 0 {
		return target[:i], target[i+1:]
	}
	return target, ""
}

// MutateRequest applies the request header mutations of r, then vh, then the
// route config to h: per level removals, then additions (appended). vh and r
// may be nil (no virtual host or no route matched).
func (t *Table) MutateRequest(h *message.Header, vh *VirtualHost, r *Route) {
	if r != nil {
		r.mut.request.apply(h)
	}
	if vh != nil {
		vh.mut.request.apply(h)
	}
	t.mut.request.apply(h)
}

// MutateResponse applies the response header mutations of r, then vh, then
// the route config to h, as MutateRequest does for requests. It applies to
// every response the route produces, direct responses and redirects
// included.
func (t *Table) MutateResponse(h *message.Header, vh *VirtualHost, r *Route) {
	if r != nil {
		r.mut.response.apply(h)
	}
	if vh != nil {
		vh.mut.response.apply(h)
	}
	t.mut.response.apply(h)
}

// mutations are one level's header changes, names lower-cased.
type mutations struct {
	request, response headerOps
}

type headerOps struct {
	remove []string
	add    []message.Field
}

func (o *headerOps) apply(h *message.Header) {
	for _, n := range o.remove {
		h.Del(n)
	}
	for _, f := range o.add {
		h.Add(f.Name, f.Value)
	}
}

func compileMutations(hm *config.HeaderMutations) mutations {
	ops := func(add []config.HeaderValue, remove []string) headerOps {
		var o headerOps
		for _, n := range remove {
			o.remove = append(o.remove, strings.ToLower(n))
		}
		for _, hv := range add {
			o.add = append(o.add, message.Field{Name: strings.ToLower(hv.Name), Value: hv.Value})
		}
		return o
	}
	return mutations{
		request:  ops(hm.RequestHeadersToAdd, hm.RequestHeadersToRemove),
		response: ops(hm.ResponseHeadersToAdd, hm.ResponseHeadersToRemove),
	}
}

// compiler carries what every part of Compile needs to report an error.
type compiler struct {
	cfg      *config.Config
	clusters map[string]int
	errs     config.Errors
}

func (c *compiler) errorf(m *config.Meta, key, path, format string, args ...any) {
	if key != "" {
		path += "." + key
	}
	c.errs = append(c.errs, c.cfg.Errorf(m.KeyPos(key), path, format, args...))
}

// Compile builds a Table from rc, found at field path path (such as
// "route_configs[0]") in cfg. clusters maps a cluster name to its index in
// the caller's cluster slice; PickCluster returns those indexes. The config
// is expected to be validated already, so errors are rare (a cluster missing
// from clusters, a regex_rewrite substitution naming a group the pattern
// does not have); they are config.Errors pointing into the file.
func Compile(cfg *config.Config, rc *config.RouteConfig, path string, clusters map[string]int) (*Table, error) {
	if cfg == nil {
		cfg = &config.Config{}
	}
	c := &compiler{cfg: cfg, clusters: clusters}
	t := &Table{
		Name:   rc.Name,
		vhosts: make([]VirtualHost, len(rc.VirtualHosts)),
		mut:    compileMutations(&rc.HeaderMutations),
	}
	seen := map[string]string{}
	for i := range rc.VirtualHosts {
		cv := &rc.VirtualHosts[i]
		vp := fmt.Sprintf("%s.virtual_hosts[%d]", path, i)
		vh := &t.vhosts[i]
		vh.Name = cv.Name
		vh.Index = i
		vh.mut = compileMutations(&cv.HeaderMutations)
		switch cv.RequireTLS {
		case "all":
			vh.RequireTLS = TLSAll
		case "external_only":
			vh.RequireTLS = TLSExternalOnly
		case "", "none":
			vh.RequireTLS = TLSNone
		default:
			c.errorf(&cv.Meta, "require_tls", vp, "unknown value %q: use none, all or external_only", cv.RequireTLS)
		}
		for _, d := range cv.Domains {
			c.addDomain(t, vh, cv, vp, d, seen)
		}
		vh.routes = make([]Route, len(cv.Routes))
		for j := range cv.Routes {
			c.compileRoute(&vh.routes[j], &cv.Routes[j], j, fmt.Sprintf("%s.routes[%d]", vp, j))
		}
		vh.idx = buildIndex(vh.routes)
	}
	if len(c.errs) > 0 {
		return nil, c.errs
	}
	return t, nil
}

func (c *compiler) addDomain(t *Table, vh *VirtualHost, cv *config.VirtualHost, vp, d string, seen map[string]string) {
	if d == "*" {
		if t.any != nil {
			c.errorf(&cv.Meta, "domains", vp, "domain \"*\" is also claimed by virtual host %q: only one virtual host may catch every host", t.any.Name)
			return
		}
		t.any = vh
		vh.Domains = append(vh.Domains, d)
		return
	}
	var kind byte = '='
	body := d
	switch {
	case strings.HasPrefix(d, "*"):
		kind, body = 's', d[1:]
	case strings.HasSuffix(d, "*"):
		kind, body = 'p', d[:len(d)-1]
	}
	if body == "" || strings.Contains(body, "*") {
		c.errorf(&cv.Meta, "domains", vp, "domain %q: '*' may only start or end a domain (*.example.com, www.*)", d)
		return
	}
	var key []byte
	var hostLen int
	if kind == 'p' {
		// The fixed part of a prefix wildcard may end in ":" (any port)
		// or "." (any top-level name); keep it as written.
		key, hostLen = appendLower(nil, body), len(body)
		if _, _, hasPort := splitPort(body); hasPort {
			hostLen = 0
		}
	} else {
		key, hostLen = normAuthority(nil, body)
	}
	norm := string(key)
	full := norm
	switch kind {
	case 's':
		full = "*" + norm
	case 'p':
		full = norm + "*"
	}
	if other, dup := seen[full]; dup {
		c.errorf(&cv.Meta, "domains", vp, "domain %q is also claimed by virtual host %q: each domain may appear once per route config", d, other)
		return
	}
	seen[full] = vh.Name
	vh.Domains = append(vh.Domains, full)
	if hostLen < len(key) {
		t.withPort.add(kind, norm, vh)
	} else {
		t.noPort.add(kind, norm, vh)
	}
}
