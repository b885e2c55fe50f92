package accesslog

// Flags are Envoy's response flags: why a request ended as it did, beyond
// its status code. Set them with |=; the zero value means none.
type Flags uint32

// The response flags, in the order Envoy prints them. Each comment gives
// the short code %RESPONSE_FLAGS% writes.
const (
	// NoHealthyUpstream (UH): the cluster had no healthy host to pick.
	NoHealthyUpstream Flags = 1 << iota
	// UpstreamRequestTimeout (UT): the route's timeout or a per-try timeout
	// expired waiting for the upstream.
	UpstreamRequestTimeout
	// LocalReset (LR): edge reset the stream itself.
	LocalReset
	// UpstreamRemoteReset (UR): the upstream reset the stream.
	UpstreamRemoteReset
	// UpstreamConnectionFailure (UF): connecting to the upstream failed.
	UpstreamConnectionFailure
	// UpstreamConnectionTermination (UC): the upstream connection closed
	// before the response was complete.
	UpstreamConnectionTermination
	// UpstreamOverflow (UO): a circuit breaker refused the request.
	UpstreamOverflow
	// NoRoute (NR): no route (or no virtual host) matched.
	NoRoute
	// RateLimited (RL): a rate limit refused the request.
	RateLimited
	// UnauthorizedExternalService (UAEX): an external authorization
	// service refused the request.
	UnauthorizedExternalService
	// DownstreamConnectionTermination (DC): the client went away before the
	// response was complete.
	DownstreamConnectionTermination
	// UpstreamRetryLimitExceeded (URX): retries ran out (num_retries or the
	// circuit breaker's max_retries).
	UpstreamRetryLimitExceeded
	// StreamIdleTimeout (SI): the stream was idle longer than allowed.
	StreamIdleTimeout
	// InvalidRequestHeaders (IH): the request carried invalid x-edge-*
	// headers.
	InvalidRequestHeaders
	// DownstreamProtocolError (DPE): the client broke the HTTP protocol.
	DownstreamProtocolError
	// UpstreamMaxStreamDurationReached (UMSDR): the upstream stream lasted
	// longer than its maximum.
	UpstreamMaxStreamDurationReached
	// DurationTimeout (DT): the request lasted longer than its maximum.
	DurationTimeout
	// UpstreamProtocolError (UPE): the upstream broke the HTTP protocol.
	UpstreamProtocolError
	// NoClusterFound (NC): the route named a cluster that does not exist.
	NoClusterFound
	// OverloadManager (OM): edge shed the request under overload.
	OverloadManager
	// DNSResolutionFailure (DF): resolving the upstream's name failed.
	DNSResolutionFailure

	flagCount = iota
)

// flagCodes are the short codes, indexed by bit.
var flagCodes = [flagCount]string{
	"UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "RL", "UAEX", "DC",
	"URX", "SI", "IH", "DPE", "UMSDR", "DT", "UPE", "NC", "OM", "DF",
}

// Has reports whether every flag in g is set in f.
func (f Flags) Has(g Flags) bool { return f&g == g }

// String returns Envoy's comma-separated short codes, such as "UF,URX", or
// "-" when no flag is set.
func (f Flags) String() string { return string(f.appendTo(nil)) }

// appendTo appends f as String formats it.
func (f Flags) appendTo(b []byte) []byte {
	if f == 0 {
		return append(b, '-')
	}
	first := true
	for i := 0; i < flagCount; i++ {
		if f&(1<<i) == 0 {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		b = append(b, flagCodes[i]...)
		first = false
	}
	if first { // only unknown bits
		b = append(b, '-')
	}
	return b
}
