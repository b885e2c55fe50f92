package config

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults, written once here and in docs/config.md.
const (
	DefaultAdminAddress          = "127.0.0.1:9901"
	DefaultMaxRequestHeaderBytes = 60 << 10
	DefaultMaxRequestHeaders     = 100
	DefaultMaxConcurrentStreams  = 250
	DefaultRequestHeadersTimeout = 10 * time.Second
	DefaultIdleTimeout           = 5 * time.Minute
	DefaultRouteTimeout          = 15 * time.Second
	DefaultConnectTimeout        = 5 * time.Second
	DefaultDNSRefreshRate        = 5 * time.Second
	DefaultHTTP1IdleTimeout      = 60 * time.Second
	DefaultHTTP1MaxIdle          = 1024
	DefaultHTTP2ConnsPerHost     = 1
	DefaultKeepaliveInterval     = 30 * time.Second
	DefaultKeepaliveTimeout      = 15 * time.Second
	DefaultCircuitBreakerLimit   = 1024
	DefaultMaxRetries            = 3
	DefaultNumRetries            = 1
	DefaultRetryBaseInterval     = 25 * time.Millisecond
	DefaultRetryBufferLimit      = 1 << 20
	DefaultRedirectCode          = 301
	MaxDirectResponseBody        = 64 << 10
	DefaultAccessLogFormat       = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-EDGE-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"`
)

func setDuration(m *Meta, key string, d *Duration, def time.Duration) {
	if !m.Has(key) {
		*d = Duration(def)
	}
}

func setInt[T ~int | ~int64 | ~uint32](m *Meta, key string, v *T, def T) {
	if !m.Has(key) {
		*v = def
	}
}

func (c *Config) setDefaults() {
	if !c.Admin.Has("address") {
		c.Admin.Address = DefaultAdminAddress
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if !l.Has("protocols") {
			l.Protocols = []string{"http1", "http2"}
		}
		setInt(&l.Limits.Meta, "max_request_header_bytes", &l.Limits.MaxRequestHeaderBytes, DefaultMaxRequestHeaderBytes)
		setInt(&l.Limits.Meta, "max_request_headers", &l.Limits.MaxRequestHeaders, DefaultMaxRequestHeaders)
		setInt(&l.Limits.Meta, "max_concurrent_streams", &l.Limits.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
		setDuration(&l.Timeouts.Meta, "request_headers", &l.Timeouts.RequestHeaders, DefaultRequestHeadersTimeout)
		setDuration(&l.Timeouts.Meta, "idle", &l.Timeouts.Idle, DefaultIdleTimeout)
		if t := l.TLS; t != nil {
			if t.MinVersion == "" {
				t.MinVersion = "1.2"
			}
			if t.ClientAuth != nil && t.ClientAuth.Mode == "" {
				t.ClientAuth.Mode = "require"
			}
		}
		if a := l.AccessLog; a != nil {
			if a.Path == "" {
				a.Path = "stdout"
			}
			if a.Format == "" {
				a.Format = DefaultAccessLogFormat
			}
		}
	}
	for i := range c.RouteConfigs {
		for j := range c.RouteConfigs[i].VirtualHosts {
			vh := &c.RouteConfigs[i].VirtualHosts[j]
			if vh.RequireTLS == "" {
				vh.RequireTLS = "none"
			}
			for k := range vh.Routes {
				r := &vh.Routes[k]
				if a := r.Route; a != nil {
					setDuration(&a.Meta, "timeout", &a.Timeout, DefaultRouteTimeout)
					if p := a.RetryPolicy; p != nil {
						setInt(&p.Meta, "num_retries", &p.NumRetries, DefaultNumRetries)
						setDuration(&p.Backoff.Meta, "base_interval", &p.Backoff.BaseInterval, DefaultRetryBaseInterval)
						setDuration(&p.Backoff.Meta, "max_interval", &p.Backoff.MaxInterval, 10*p.Backoff.BaseInterval.D())
						setInt(&p.Meta, "buffer_limit", &p.BufferLimit, DefaultRetryBufferLimit)
					}
				}
				if rd := r.Redirect; rd != nil && rd.ResponseCode == 0 {
					rd.ResponseCode = DefaultRedirectCode
				}
			}
		}
	}
	for i := range c.Clusters {
		cl := &c.Clusters[i]
		if cl.Type == "" {
			cl.Type = "static"
		}
		if cl.Protocol == "" {
			cl.Protocol = "http1"
		}
		if cl.LBPolicy == "" {
			cl.LBPolicy = "round_robin"
		}
		for j := range cl.Endpoints {
			e := &cl.Endpoints[j]
			setInt(&e.Meta, "weight", &e.Weight, 1)
		}
		setDuration(&cl.Meta, "connect_timeout", &cl.ConnectTimeout, DefaultConnectTimeout)
		setDuration(&cl.Meta, "dns_refresh_rate", &cl.DNSRefreshRate, DefaultDNSRefreshRate)
		setInt(&cl.HTTP1.Meta, "max_idle_connections", &cl.HTTP1.MaxIdleConnections, DefaultHTTP1MaxIdle)
		setDuration(&cl.HTTP1.Meta, "idle_timeout", &cl.HTTP1.IdleTimeout, DefaultHTTP1IdleTimeout)
		setInt(&cl.HTTP2.Meta, "connections_per_host", &cl.HTTP2.ConnectionsPerHost, DefaultHTTP2ConnsPerHost)
		setDuration(&cl.HTTP2.Meta, "keepalive_interval", &cl.HTTP2.KeepaliveInterval, DefaultKeepaliveInterval)
		setDuration(&cl.HTTP2.Meta, "keepalive_timeout", &cl.HTTP2.KeepaliveTimeout, DefaultKeepaliveTimeout)
		cb := &cl.CircuitBreakers
		setInt(&cb.Meta, "max_connections", &cb.MaxConnections, DefaultCircuitBreakerLimit)
		setInt(&cb.Meta, "max_pending_requests", &cb.MaxPendingRequests, DefaultCircuitBreakerLimit)
		setInt(&cb.Meta, "max_requests", &cb.MaxRequests, DefaultCircuitBreakerLimit)
		setInt(&cb.Meta, "max_retries", &cb.MaxRetries, DefaultMaxRetries)
		if h := cl.HealthCheck; h != nil {
			setDuration(&h.Meta, "interval", &h.Interval, 5*time.Second)
			setDuration(&h.Meta, "timeout", &h.Timeout, time.Second)
			setInt(&h.Meta, "unhealthy_threshold", &h.UnhealthyThreshold, 3)
			setInt(&h.Meta, "healthy_threshold", &h.HealthyThreshold, 2)
		}
		if o := cl.OutlierDetection; o != nil {
			setInt(&o.Meta, "consecutive_5xx", &o.Consecutive5xx, 5)
			setDuration(&o.Meta, "interval", &o.Interval, 10*time.Second)
			setDuration(&o.Meta, "base_ejection_time", &o.BaseEjectionTime, 30*time.Second)
			setInt(&o.Meta, "max_ejection_percent", &o.MaxEjectionPercent, 10)
		}
	}
}

// validator collects errors with positions.
type validator struct {
	c    *Config
	errs *Errors
}

func (v *validator) at(m *Meta, key, path, format string, args ...any) {
	if key != "" {
		path += "." + key
	}
	v.errs.add(v.c.File, m.KeyPos(key), path, fmt.Sprintf(format, args...))
}

func oneOf(s string, allowed ...string) bool { return slices.Contains(allowed, s) }

func (c *Config) validate(errs *Errors) {
	v := &validator{c: c, errs: errs}
	v.admin()
	clusters := make(map[string]bool, len(c.Clusters))
	for i := range c.Clusters {
		v.cluster(i, clusters)
	}
	routeConfigs := make(map[string]bool, len(c.RouteConfigs))
	for i := range c.RouteConfigs {
		v.routeConfig(i, routeConfigs, clusters)
	}
	if len(c.Listeners) == 0 {
		v.errs.add(c.File, c.Pos(), "listeners", "no listeners: add at least one, e.g. {name: public, address: 0.0.0.0:8080, route_config: main}")
	}
	listeners := map[string]bool{}
	addrs := map[string]string{}
	for i := range c.Listeners {
		v.listener(i, listeners, addrs, routeConfigs)
	}
}

func (v *validator) admin() {
	a := &v.c.Admin
	if a.Address == "" {
		return
	}
	host, _, err := net.SplitHostPort(a.Address)
	if err != nil {
		v.at(&a.Meta, "address", "admin", "invalid address %q: write host:port, e.g. %s", a.Address, DefaultAdminAddress)
		return
	}
	ip, err := netip.ParseAddr(host)
	loopback := host == "localhost" || (err == nil && ip.IsLoopback())
	if !loopback && !a.AllowNonLoopback {
		v.at(&a.Meta, "address", "admin", "%q is not a loopback address; the admin API has no authentication, so bind it to 127.0.0.1 or set allow_non_loopback: true", a.Address)
	}
}

func (v *validator) listener(i int, names map[string]bool, addrs map[string]string, routeConfigs map[string]bool) {
	l := &v.c.Listeners[i]
	path := fmt.Sprintf("listeners[%d]", i)
	if l.Name == "" {
		v.at(&l.Meta, "name", path, "missing: give the listener a unique name")
	} else if names[l.Name] {
		v.at(&l.Meta, "name", path, "duplicate listener name %q: names must be unique", l.Name)
	}
	names[l.Name] = true
	if _, port, err := net.SplitHostPort(l.Address); err != nil || port == "" {
		v.at(&l.Meta, "address", path, "invalid address %q: write host:port, e.g. 0.0.0.0:8080", l.Address)
	} else if other, dup := addrs[l.Address]; dup && port != "0" {
		v.at(&l.Meta, "address", path, "address %s is also used by listener %q: give each listener its own port", l.Address, other)
	} else {
		addrs[l.Address] = l.Name
	}
	if len(l.Protocols) == 0 {
		v.at(&l.Meta, "protocols", path, "empty: list at least one of http1, http2, http3")
	}
	seen := map[string]bool{}
	for _, p := range l.Protocols {
		switch {
		case !oneOf(p, "http1", "http2", "http3"):
			v.at(&l.Meta, "protocols", path, "unknown protocol %q: use http1, http2 or http3", p)
		case seen[p]:
			v.at(&l.Meta, "protocols", path, "protocol %q listed twice", p)
		case p == "http3" && l.TLS == nil:
			v.at(&l.Meta, "protocols", path, "http3 needs tls: add a tls section or remove http3")
		}
		seen[p] = true
	}
	if l.RouteConfig == "" {
		v.at(&l.Meta, "route_config", path, "missing: name a route_configs entry")
	} else if !routeConfigs[l.RouteConfig] {
		v.at(&l.Meta, "route_config", path, "unknown route_config %q: define it under route_configs or fix the name%s", l.RouteConfig, known(routeConfigs))
	}
	if l.XFFTrustedHops < 0 {
		v.at(&l.Meta, "xff_trusted_hops", path, "must be 0 or more")
	}
	lim := &l.Limits
	if lim.MaxRequestHeaderBytes < 1024 {
		v.at(&lim.Meta, "max_request_header_bytes", path+".limits", "%d is too small: allow at least 1KiB", lim.MaxRequestHeaderBytes)
	}
	if lim.MaxRequestHeaders < 1 {
		v.at(&lim.Meta, "max_request_headers", path+".limits", "must be at least 1")
	}
	if lim.MaxConcurrentStreams < 1 {
		v.at(&lim.Meta, "max_concurrent_streams", path+".limits", "must be at least 1")
	}
	if l.Timeouts.RequestHeaders == 0 {
		v.at(&l.Timeouts.Meta, "request_headers", path+".timeouts", "0 would let a slow client hold a connection forever (slowloris); set a positive duration such as 10s")
	}
	if t := l.TLS; t != nil {
		tp := path + ".tls"
		if len(t.Certificates) == 0 && t.ACME == nil {
			v.at(&t.Meta, "certificates", tp, "a tls section needs certificates or acme")
		}
		for j := range t.Certificates {
			cf := &t.Certificates[j]
			cp := fmt.Sprintf("%s.certificates[%d]", tp, j)
			if cf.CertFile == "" {
				v.at(&cf.Meta, "cert_file", cp, "missing: name a PEM certificate file")
			}
			if cf.KeyFile == "" {
				v.at(&cf.Meta, "key_file", cp, "missing: name the certificate's PEM private key file")
			}
		}
		if !oneOf(t.MinVersion, "1.2", "1.3") {
			v.at(&t.Meta, "min_version", tp, "unsupported TLS version %q: use \"1.2\" or \"1.3\"", t.MinVersion)
		}
		if a := t.ACME; a != nil {
			if len(a.Domains) == 0 && a.OnDemandAsk == "" {
				v.at(&a.Meta, "domains", tp+".acme", "list the domains to obtain certificates for, or set on_demand_ask")
			}
		}
		if ca := t.ClientAuth; ca != nil {
			cp := tp + ".client_auth"
			if !oneOf(ca.Mode, "none", "request", "require") {
				v.at(&ca.Meta, "mode", cp, "unknown mode %q: use none, request or require", ca.Mode)
			}
			if ca.Mode != "none" && ca.CAFile == "" {
				v.at(&ca.Meta, "ca_file", cp, "missing: name the PEM CA bundle client certificates must chain to")
			}
		}
	}
	if a := l.AccessLog; a != nil {
		if a.Path == "" {
			v.at(&a.Meta, "path", path+".access_log", "missing: use stdout, stderr or a file path")
		}
	}
}

func known(m map[string]bool) string {
	if len(m) == 0 {
		return ""
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return " (defined: " + strings.Join(names, ", ") + ")"
}

func (v *validator) routeConfig(i int, names, clusters map[string]bool) {
	rc := &v.c.RouteConfigs[i]
	path := fmt.Sprintf("route_configs[%d]", i)
	if rc.Name == "" {
		v.at(&rc.Meta, "name", path, "missing: give the route config a unique name")
	} else if names[rc.Name] {
		v.at(&rc.Meta, "name", path, "duplicate route_config name %q: names must be unique", rc.Name)
	}
	names[rc.Name] = true
	v.mutations(&rc.Meta, &rc.HeaderMutations, path)
	domains := map[string]string{}
	vhNames := map[string]bool{}
	if len(rc.VirtualHosts) == 0 {
		v.at(&rc.Meta, "virtual_hosts", path, "no virtual_hosts: add one with domains: [\"*\"] to route every host")
	}
	for j := range rc.VirtualHosts {
		vh := &rc.VirtualHosts[j]
		vp := fmt.Sprintf("%s.virtual_hosts[%d]", path, j)
		if vh.Name == "" {
			v.at(&vh.Meta, "name", vp, "missing: give the virtual host a name")
		} else if vhNames[vh.Name] {
			v.at(&vh.Meta, "name", vp, "duplicate virtual host name %q in this route config", vh.Name)
		}
		vhNames[vh.Name] = true
		if len(vh.Domains) == 0 {
			v.at(&vh.Meta, "domains", vp, "empty: list at least one domain, or \"*\" for any")
		}
		for _, d := range vh.Domains {
			ld := strings.ToLower(d)
			if err := checkDomain(ld); err != "" {
				v.at(&vh.Meta, "domains", vp, "domain %q: %s", d, err)
				continue
			}
			if other, dup := domains[ld]; dup {
				v.at(&vh.Meta, "domains", vp, "domain %q is also claimed by virtual host %q: each domain may appear once per route config", d, other)
			}
			domains[ld] = vh.Name
		}
		if !oneOf(vh.RequireTLS, "none", "all", "external_only") {
			v.at(&vh.Meta, "require_tls", vp, "unknown value %q: use none, all or external_only", vh.RequireTLS)
		}
		v.mutations(&vh.Meta, &vh.HeaderMutations, vp)
		for k := range vh.Routes {
			v.route(&vh.Routes[k], fmt.Sprintf("%s.routes[%d]", vp, k), clusters)
		}
	}
}

// checkDomain returns what is wrong with a virtual host domain, or "".
func checkDomain(d string) string {
	switch {
	case d == "":
		return "empty"
	case d == "*":
		return ""
	case strings.Count(d, "*") > 1:
		return "at most one '*' is allowed, at the start or the end"
	case strings.Contains(d[1:len(d)-1], "*"):
		return "'*' may only start or end a domain (*.example.com, www.*)"
	case strings.ContainsAny(d, " /?#@"):
		return "not a host name"
	}
	return ""
}

func (v *validator) mutations(m *Meta, hm *HeaderMutations, path string) {
	for i, h := range hm.RequestHeadersToAdd {
		v.headerToAdd(&hm.RequestHeadersToAdd[i].Meta, h, fmt.Sprintf("%s.request_headers_to_add[%d]", path, i))
	}
	for i, h := range hm.ResponseHeadersToAdd {
		v.headerToAdd(&hm.ResponseHeadersToAdd[i].Meta, h, fmt.Sprintf("%s.response_headers_to_add[%d]", path, i))
	}
	for _, n := range hm.RequestHeadersToRemove {
		if !validHeaderName(n) || n[0] == ':' || strings.EqualFold(n, "host") {
			v.at(m, "request_headers_to_remove", path, "cannot remove %q: name a regular header (not host or a pseudo-header)", n)
		}
	}
	for _, n := range hm.ResponseHeadersToRemove {
		if !validHeaderName(n) || n[0] == ':' {
			v.at(m, "response_headers_to_remove", path, "cannot remove %q: name a regular header", n)
		}
	}
}

func (v *validator) headerToAdd(m *Meta, h HeaderValue, path string) {
	switch {
	case !validHeaderName(h.Name):
		v.at(m, "name", path, "invalid header name %q: use letters, digits and - only", h.Name)
	case strings.EqualFold(h.Name, "host") || h.Name[0] == ':':
		v.at(m, "name", path, "%q cannot be set this way: use host_rewrite for the host", h.Name)
	case strings.ContainsAny(h.Value, "\r\n\x00"):
		v.at(m, "value", path, "header values may not contain CR, LF or NUL")
	}
}

func validHeaderName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func (v *validator) regex(m *Meta, key, path, expr string) {
	if _, err := regexp.Compile(expr); err != nil {
		v.at(m, key, path, "regex %q does not compile: %v", expr, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
}

func (v *validator) route(r *Route, path string, clusters map[string]bool) {
	actions := 0
	for _, set := range []bool{r.Route != nil, r.Redirect != nil, r.DirectResponse != nil} {
		if set {
			actions++
		}
	}
	if actions != 1 {
		v.at(&r.Meta, "", path, "a route needs exactly one of route, redirect, direct_response (has %d)", actions)
	}
	m := &r.Match
	mp := path + ".match"
	specs := 0
	for _, k := range []string{"prefix", "path", "regex"} {
		if m.Has(k) {
			specs++
		}
	}
	if specs != 1 {
		v.at(&r.Meta, "match", path, "a match needs exactly one of prefix, path, regex (use prefix: / to match everything)")
	}
	if m.Has("path") && !strings.HasPrefix(m.Path, "/") {
		v.at(&m.Meta, "path", mp, "%q must start with /", m.Path)
	}
	if m.Has("prefix") && !strings.HasPrefix(m.Prefix, "/") {
		v.at(&m.Meta, "prefix", mp, "%q must start with /", m.Prefix)
	}
	if m.Has("regex") {
		v.regex(&m.Meta, "regex", mp, m.Regex)
	}
	for i := range m.Headers {
		v.headerMatch(&m.Headers[i], fmt.Sprintf("%s.headers[%d]", mp, i))
	}
	for i := range m.QueryParameters {
		v.headerMatch(&m.QueryParameters[i], fmt.Sprintf("%s.query_parameters[%d]", mp, i))
	}
	v.mutations(&r.Meta, &r.HeaderMutations, path)
	if a := r.Route; a != nil {
		v.routeAction(a, path+".route", clusters)
	}
	if rd := r.Redirect; rd != nil {
		rp := path + ".redirect"
		if !oneOf(strconv.Itoa(rd.ResponseCode), "301", "302", "303", "307", "308") {
			v.at(&rd.Meta, "response_code", rp, "%d is not a redirect code: use 301, 302, 303, 307 or 308", rd.ResponseCode)
		}
		if rd.PathRedirect != "" && rd.PrefixRewrite != nil {
			v.at(&rd.Meta, "prefix_rewrite", rp, "set path_redirect or prefix_rewrite, not both")
		}
		if rd.PathRedirect != "" && !strings.HasPrefix(rd.PathRedirect, "/") {
			v.at(&rd.Meta, "path_redirect", rp, "%q must start with /", rd.PathRedirect)
		}
		if rd.Has("port_redirect") && (rd.PortRedirect < 1 || rd.PortRedirect > 65535) {
			v.at(&rd.Meta, "port_redirect", rp, "%d is not a port: use 1-65535", rd.PortRedirect)
		}
		if strings.ContainsAny(rd.HostRedirect, "/?#@ ") {
			v.at(&rd.Meta, "host_redirect", rp, "%q is not a host name", rd.HostRedirect)
		}
	}
	if d := r.DirectResponse; d != nil {
		dp := path + ".direct_response"
		if d.Status < 100 || d.Status > 599 {
			v.at(&d.Meta, "status", dp, "status %d out of range: use 100-599", d.Status)
		}
		if len(d.Body) > MaxDirectResponseBody {
			v.at(&d.Meta, "body", dp, "body is %d bytes; direct responses are limited to %d", len(d.Body), MaxDirectResponseBody)
		}
	}
}

func (v *validator) headerMatch(h *HeaderMatch, path string) {
	if h.Name == "" {
		v.at(&h.Meta, "name", path, "missing: name the header or parameter to match")
	}
	n := 0
	for _, set := range []bool{h.Exact != nil, h.Prefix != nil, h.Regex != nil, h.Present != nil} {
		if set {
			n++
		}
	}
	if n > 1 {
		v.at(&h.Meta, "", path, "set at most one of exact, prefix, regex, present")
	}
	if h.Regex != nil {
		v.regex(&h.Meta, "regex", path, *h.Regex)
	}
}

var retryOn = []string{"5xx", "gateway-error", "connect-failure", "reset", "refused-stream", "retriable-4xx", "retriable-status-codes"}

func (v *validator) routeAction(a *RouteAction, path string, clusters map[string]bool) {
	switch {
	case a.Cluster != "" && len(a.WeightedClusters) > 0:
		v.at(&a.Meta, "weighted_clusters", path, "set cluster or weighted_clusters, not both")
	case a.Cluster == "" && len(a.WeightedClusters) == 0:
		v.at(&a.Meta, "cluster", path, "missing: name a cluster, or list weighted_clusters")
	case a.Cluster != "" && !clusters[a.Cluster]:
		v.at(&a.Meta, "cluster", path, "unknown cluster %q: define it under clusters or fix the name%s", a.Cluster, known(clusters))
	}
	var sum uint64
	for i := range a.WeightedClusters {
		w := &a.WeightedClusters[i]
		wp := fmt.Sprintf("%s.weighted_clusters[%d]", path, i)
		if !clusters[w.Name] {
			v.at(&w.Meta, "name", wp, "unknown cluster %q: define it under clusters or fix the name%s", w.Name, known(clusters))
		}
		sum += uint64(w.Weight)
	}
	if len(a.WeightedClusters) > 0 && sum == 0 {
		v.at(&a.Meta, "weighted_clusters", path, "weights sum to 0: give at least one cluster a positive weight")
	}
	if a.PrefixRewrite != nil && a.RegexRewrite != nil {
		v.at(&a.Meta, "regex_rewrite", path, "set prefix_rewrite or regex_rewrite, not both")
	}
	if rr := a.RegexRewrite; rr != nil {
		v.regex(&rr.Meta, "pattern", path+".regex_rewrite", rr.Pattern)
	}
	if a.HostRewrite != "" && a.AutoHostRewrite {
		v.at(&a.Meta, "auto_host_rewrite", path, "set host_rewrite or auto_host_rewrite, not both")
	}
	if p := a.RetryPolicy; p != nil {
		pp := path + ".retry_policy"
		for _, c := range p.RetryOn {
			if !oneOf(c, retryOn...) {
				v.at(&p.Meta, "retry_on", pp, "unknown condition %q: use %s", c, strings.Join(retryOn, ", "))
			}
		}
		for _, code := range p.RetriableStatusCodes {
			if code < 100 || code > 599 {
				v.at(&p.Meta, "retriable_status_codes", pp, "%d is not an HTTP status", code)
			}
		}
		if p.NumRetries < 0 {
			v.at(&p.Meta, "num_retries", pp, "must be 0 or more")
		}
		if p.Backoff.Has("base_interval") && p.Backoff.BaseInterval == 0 {
			v.at(&p.Backoff.Meta, "base_interval", pp+".backoff", "must be positive, e.g. 25ms")
		}
		if p.Backoff.MaxInterval < p.Backoff.BaseInterval {
			v.at(&p.Backoff.Meta, "max_interval", pp+".backoff", "%s is below base_interval %s", p.Backoff.MaxInterval, p.Backoff.BaseInterval)
		}
	}
}

func (v *validator) cluster(i int, names map[string]bool) {
	c := &v.c.Clusters[i]
	path := fmt.Sprintf("clusters[%d]", i)
	if c.Name == "" {
		v.at(&c.Meta, "name", path, "missing: give the cluster a unique name")
	} else if names[c.Name] {
		v.at(&c.Meta, "name", path, "duplicate cluster name %q: names must be unique", c.Name)
	}
	names[c.Name] = true
	if !oneOf(c.Type, "static", "strict_dns", "logical_dns") {
		v.at(&c.Meta, "type", path, "unknown type %q: use static, strict_dns or logical_dns", c.Type)
	}
	if !oneOf(c.Protocol, "http1", "http2") {
		v.at(&c.Meta, "protocol", path, "unknown protocol %q: use http1 or http2", c.Protocol)
	}
	if !oneOf(c.LBPolicy, "round_robin", "least_request", "random", "ring_hash", "maglev") {
		v.at(&c.Meta, "lb_policy", path, "unknown lb_policy %q: use round_robin, least_request, random, ring_hash or maglev", c.LBPolicy)
	}
	if len(c.Endpoints) == 0 {
		v.at(&c.Meta, "endpoints", path, "no endpoints: list at least one host:port")
	}
	if c.Type == "logical_dns" && len(c.Endpoints) > 1 {
		v.at(&c.Meta, "endpoints", path, "a logical_dns cluster has exactly one endpoint (a DNS name); use strict_dns for several")
	}
	for j := range c.Endpoints {
		e := &c.Endpoints[j]
		ep := fmt.Sprintf("%s.endpoints[%d]", path, j)
		host, port, err := net.SplitHostPort(e.Address)
		if err != nil || host == "" {
			v.errs.add(v.c.File, e.Pos(), ep, fmt.Sprintf("invalid endpoint %q: write host:port", e.Address))
			continue
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			v.errs.add(v.c.File, e.Pos(), ep, fmt.Sprintf("invalid port in %q: use 1-65535", e.Address))
		}
		if _, err := netip.ParseAddr(host); err != nil && c.Type == "static" {
			v.errs.add(v.c.File, e.Pos(), ep, fmt.Sprintf("%q is not an IP address: a static cluster needs IP:port; use type: strict_dns for DNS names", e.Address))
		}
		if e.Weight == 0 {
			v.at(&e.Meta, "weight", ep, "weight must be at least 1")
		}
	}
	if c.ConnectTimeout == 0 {
		v.at(&c.Meta, "connect_timeout", path, "must be positive, e.g. 1s")
	}
	if c.Type != "static" && c.DNSRefreshRate < Duration(100*time.Millisecond) {
		v.at(&c.Meta, "dns_refresh_rate", path, "%s is too short: use at least 100ms", c.DNSRefreshRate)
	}
	needHash := c.LBPolicy == "ring_hash" || c.LBPolicy == "maglev"
	if len(c.HashPolicy) > 0 && !needHash {
		v.at(&c.Meta, "hash_policy", path, "hash_policy only applies to lb_policy ring_hash or maglev")
	}
	for j := range c.HashPolicy {
		h := &c.HashPolicy[j]
		n := 0
		for _, set := range []bool{h.Header != "", h.Cookie != "", h.SourceIP} {
			if set {
				n++
			}
		}
		if n != 1 {
			v.at(&h.Meta, "", fmt.Sprintf("%s.hash_policy[%d]", path, j), "set exactly one of header, cookie, source_ip")
		}
	}
	if t := c.TLS; t != nil {
		if (t.CertFile == "") != (t.KeyFile == "") {
			v.at(&t.Meta, "key_file", path+".tls", "cert_file and key_file go together: set both for mTLS or neither")
		}
	}
	if c.HTTP2.ConnectionsPerHost < 1 {
		v.at(&c.HTTP2.Meta, "connections_per_host", path+".http2", "must be at least 1")
	}
	if c.HTTP1.MaxIdleConnections < 0 {
		v.at(&c.HTTP1.Meta, "max_idle_connections", path+".http1", "must be 0 or more")
	}
	cb := &c.CircuitBreakers
	for _, f := range []struct {
		key string
		v   int
	}{{"max_connections", cb.MaxConnections}, {"max_pending_requests", cb.MaxPendingRequests}, {"max_requests", cb.MaxRequests}} {
		if f.v < 1 {
			v.at(&cb.Meta, f.key, path+".circuit_breakers", "must be at least 1")
		}
	}
	if cb.MaxRetries < 0 {
		v.at(&cb.Meta, "max_retries", path+".circuit_breakers", "must be 0 or more")
	}
	if h := c.HealthCheck; h != nil {
		hp := path + ".health_check"
		if (h.Path == "") == !h.TCP {
			v.at(&h.Meta, "path", hp, "set path (HTTP check) or tcp: true, exactly one")
		}
		if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
			v.at(&h.Meta, "path", hp, "%q must start with /", h.Path)
		}
		if h.Interval == 0 || h.Timeout == 0 {
			v.at(&h.Meta, "interval", hp, "interval and timeout must be positive")
		}
		if h.UnhealthyThreshold < 1 || h.HealthyThreshold < 1 {
			v.at(&h.Meta, "unhealthy_threshold", hp, "thresholds must be at least 1")
		}
	}
	if o := c.OutlierDetection; o != nil {
		if o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100 {
			v.at(&o.Meta, "max_ejection_percent", path+".outlier_detection", "use 0-100")
		}
	}
}
