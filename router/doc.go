// Package router is edge's pure routing logic: it compiles one
// config.RouteConfig into an immutable Table and matches requests against it.
//
// # Model
//
// A Table holds virtual hosts; a VirtualHost holds routes in config order; a
// Route is a match (one path specifier plus optional header and query
// parameter matchers) and exactly one action: Forward (to one cluster or a
// weighted split, with rewrites, timeouts and a retry policy), Redirect, or
// DirectResponse. Compile does every piece of work that does not depend on
// the request: domains are lower-cased and indexed, regular expressions are
// compiled and anchored, header names are lower-cased, weighted splits become
// cumulative weights, retry conditions become a bitmask and redirect parts are
// split and formatted. Table.Match then only reads.
//
// # Virtual host selection
//
// The authority (Host or :authority) is lower-cased and one trailing dot of
// its host part is dropped. Lookup follows Envoy: an exact domain (hash
// lookup), then suffix wildcards ("*.foo.com", "*-bar.foo.com") longest
// first, then prefix wildcards ("foo.*") longest first, then "*". A wildcard's
// "*" matches at least one character, so "*.foo.com" matches neither
// "foo.com" nor ".foo.com".
//
// Ports: a domain may carry a port ("example.com:8443", "*.example.com:8443",
// even "example.com:*" for any port). When the request's authority has a
// port, the domains that carry a port are searched first with the authority
// as written (exact, suffix, prefix); if none matches, the domains without a
// port are searched with the host alone (exact, suffix, prefix); "*" comes
// last. So "example.com" in domains matches "example.com:8443" unless a more
// specific entry lists that port, and an entry with a port never matches an
// authority without one ("example.com:443" does not match "example.com").
// Unlike a literal "with port, then without" retry, a port-less prefix
// wildcard ("example.*") never beats a port-less exact domain
// ("example.com") just because the request carried a port.
//
// # Route matching
//
// Routes are tried in order and the first whose every criterion matches wins
// (as in Envoy; there is no longest-prefix rule, so put specific routes
// first). The path specifiers are:
//
//   - prefix: the path without its query string starts with the value. Envoy
//     compares prefixes against the path including the query; edge does not,
//     so a prefix never has to account for "?". A prefix containing "?"
//     therefore never matches.
//   - path: the path without its query string equals the value.
//   - regex: a Go (RE2) regular expression that must match the whole path
//     without its query string (it is compiled as ^(?:expr)$).
//
// Matching is a scan in config order, narrowed by an index that keeps that
// order: every route has a required literal (its path or prefix, or the
// literal its regex starts with), and Compile picks the byte position that
// best separates a virtual host's literals. Match then tries only the routes
// whose literal allows the request path's byte at that position, in order,
// by walking a per-byte bitset. Regex routes whose literal prefix the path
// lacks are skipped without running the regex.
//
// case_sensitive (default true) applies to prefix and path, not regex; the
// insensitive compare folds ASCII letters byte by byte against a value
// lower-cased at compile time, so it allocates nothing.
//
// Header matchers (exact, prefix, regex over the whole value, present) run
// against the lower-cased header name; "host" and ":authority" match the
// authority passed to Match. A header that appears several times is matched
// against its values joined with "," (this joined form allocates; a single
// value does not). A missing header fails every matcher except present:
// false, and invert negates the result, so an inverted matcher matches a
// missing header. Query parameter matchers have the same kinds and apply to
// the first occurrence of the parameter in the query string; a parameter
// without "=" is present with an empty value. Names and values are
// percent-decoded (with "+" as space) only when they contain "%" or "+",
// which allocates; plain ones are compared in place.
//
// # Actions
//
// Forward routes pick a cluster with PickCluster from a random number the
// caller supplies, so the package holds no random source. RewritePath applies
// prefix_rewrite (the matched prefix, or for path and regex routes the whole
// path, is replaced) or regex_rewrite (Regexp.ReplaceAllString on the path
// without query; substitution groups are written ${1} or ${name}) and keeps
// the query; a "/" is put in front of a result that would lack one, so the
// path stays in origin form. Redirect routes build an absolute Location with
// RedirectLocation, following Envoy's RedirectAction (see that method).
// Header mutations are applied by Table.MutateRequest and MutateResponse:
// per level removals then additions, route level first, then virtual host,
// then route config; additions append.
//
// # Invariants
//
// A Table is immutable after Compile and safe for concurrent use by any
// number of goroutines. Match, PickCluster, RequiresRedirectToTLS and
// RewritePath without a configured rewrite allocate nothing; regex matchers
// allocate only if Go's regexp does (MatchString does not in steady state).
// Values returned by accessors (VirtualHosts, Routes) must be treated as
// read-only.
//
// # Non-goals
//
// The package does no I/O, starts no goroutines, does not log, does not read
// the clock and does not import net/http: it is called by package edge, which
// owns the request, the random source, retries and the wire.
package router
