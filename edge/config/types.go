package config

// Config is a whole edge configuration file.
type Config struct {
	Meta         `yaml:"-"`
	Admin        Admin         `yaml:"admin"`
	Listeners    []Listener    `yaml:"listeners"`
	RouteConfigs []RouteConfig `yaml:"route_configs"`
	Clusters     []Cluster     `yaml:"clusters"`

	// File is the path the config was read from ("" for the embedded
	// default); Dir is the directory relative paths resolve against.
	File string `yaml:"-"`
	Dir  string `yaml:"-"`
}

// Admin configures the admin HTTP server.
type Admin struct {
	Meta `yaml:"-"`
	// Address is host:port; "" disables the admin server. Default
	// 127.0.0.1:9901.
	Address string `yaml:"address"`
	// AllowNonLoopback must be true to bind the admin server to an address
	// other than loopback: it has no authentication.
	AllowNonLoopback bool `yaml:"allow_non_loopback"`
}

// Listener is one downstream listening socket and how it serves HTTP.
type Listener struct {
	Meta           `yaml:"-"`
	Name           string       `yaml:"name"`
	Address        string       `yaml:"address"`
	Protocols      []string     `yaml:"protocols"`
	RouteConfig    string       `yaml:"route_config"`
	TLS            *ListenerTLS `yaml:"tls"`
	XFFTrustedHops int          `yaml:"xff_trusted_hops"`
	Limits         Limits       `yaml:"limits"`
	Timeouts       Timeouts     `yaml:"timeouts"`
	AccessLog      *AccessLog   `yaml:"access_log"`
}

// ListenerTLS configures downstream TLS.
type ListenerTLS struct {
	Meta         `yaml:"-"`
	Certificates []CertificateFiles `yaml:"certificates"`
	ACME         *ACME              `yaml:"acme"`
	ClientAuth   *ClientAuth        `yaml:"client_auth"`
	MinVersion   string             `yaml:"min_version"`
}

// CertificateFiles names a PEM certificate chain and its private key.
type CertificateFiles struct {
	Meta     `yaml:"-"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// ACME configures certificates obtained through ACME.
type ACME struct {
	Meta        `yaml:"-"`
	Email       string   `yaml:"email"`
	Directory   string   `yaml:"directory"`
	CARootFile  string   `yaml:"ca_root_file"`
	Domains     []string `yaml:"domains"`
	OnDemandAsk string   `yaml:"on_demand_ask"`
	Storage     string   `yaml:"storage"`
}

// ClientAuth configures verification of client certificates (mTLS).
type ClientAuth struct {
	Meta         `yaml:"-"`
	Mode         string   `yaml:"mode"`
	CAFile       string   `yaml:"ca_file"`
	AllowedSANs  []string `yaml:"allowed_sans"`
	PinnedSHA256 []string `yaml:"pinned_sha256"`
}

// Limits bound what one downstream connection may send.
type Limits struct {
	Meta                  `yaml:"-"`
	MaxRequestHeaderBytes Size `yaml:"max_request_header_bytes"`
	MaxRequestHeaders     int  `yaml:"max_request_headers"`
	MaxConcurrentStreams  int  `yaml:"max_concurrent_streams"`
}

// Timeouts bound how long a downstream connection may take.
type Timeouts struct {
	Meta           `yaml:"-"`
	RequestHeaders Duration `yaml:"request_headers"`
	Idle           Duration `yaml:"idle"`
}

// AccessLog configures one access log line per request.
type AccessLog struct {
	Meta   `yaml:"-"`
	Path   string `yaml:"path"`
	Format string `yaml:"format"`
}

// HeaderValue is a header to add.
type HeaderValue struct {
	Meta  `yaml:"-"`
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

// HeaderMutations are the header changes allowed at every routing level.
type HeaderMutations struct {
	RequestHeadersToAdd     []HeaderValue `yaml:"request_headers_to_add"`
	RequestHeadersToRemove  []string      `yaml:"request_headers_to_remove"`
	ResponseHeadersToAdd    []HeaderValue `yaml:"response_headers_to_add"`
	ResponseHeadersToRemove []string      `yaml:"response_headers_to_remove"`
}

// RouteConfig is a named set of virtual hosts a listener routes with.
type RouteConfig struct {
	Meta            `yaml:"-"`
	Name            string `yaml:"name"`
	HeaderMutations `yaml:",inline"`
	VirtualHosts    []VirtualHost `yaml:"virtual_hosts"`
}

// VirtualHost groups routes under a set of domains.
type VirtualHost struct {
	Meta            `yaml:"-"`
	Name            string   `yaml:"name"`
	Domains         []string `yaml:"domains"`
	RequireTLS      string   `yaml:"require_tls"`
	HeaderMutations `yaml:",inline"`
	Routes          []Route `yaml:"routes"`
}

// Route is a match and exactly one action.
type Route struct {
	Meta            `yaml:"-"`
	Name            string          `yaml:"name"`
	Match           RouteMatch      `yaml:"match"`
	Route           *RouteAction    `yaml:"route"`
	Redirect        *Redirect       `yaml:"redirect"`
	DirectResponse  *DirectResponse `yaml:"direct_response"`
	HeaderMutations `yaml:",inline"`
}

// RouteMatch selects requests. Exactly one of Prefix, Path and Regex is set.
type RouteMatch struct {
	Meta            `yaml:"-"`
	Prefix          string        `yaml:"prefix"`
	Path            string        `yaml:"path"`
	Regex           string        `yaml:"regex"`
	CaseSensitive   *bool         `yaml:"case_sensitive"`
	Headers         []HeaderMatch `yaml:"headers"`
	QueryParameters []HeaderMatch `yaml:"query_parameters"`
}

// HeaderMatch matches one header or query parameter by name. Exactly one of
// Exact, Prefix, Regex and Present is set; none means Present.
type HeaderMatch struct {
	Meta    `yaml:"-"`
	Name    string  `yaml:"name"`
	Exact   *string `yaml:"exact"`
	Prefix  *string `yaml:"prefix"`
	Regex   *string `yaml:"regex"`
	Present *bool   `yaml:"present"`
	Invert  bool    `yaml:"invert"`
}

// RouteAction forwards to a cluster.
type RouteAction struct {
	Meta             `yaml:"-"`
	Cluster          string            `yaml:"cluster"`
	WeightedClusters []WeightedCluster `yaml:"weighted_clusters"`
	PrefixRewrite    *string           `yaml:"prefix_rewrite"`
	RegexRewrite     *RegexRewrite     `yaml:"regex_rewrite"`
	HostRewrite      string            `yaml:"host_rewrite"`
	AutoHostRewrite  bool              `yaml:"auto_host_rewrite"`
	Timeout          Duration          `yaml:"timeout"`
	IdleTimeout      Duration          `yaml:"idle_timeout"`
	RetryPolicy      *RetryPolicy      `yaml:"retry_policy"`
}

// WeightedCluster is one share of a weighted split.
type WeightedCluster struct {
	Meta   `yaml:"-"`
	Name   string `yaml:"name"`
	Weight uint32 `yaml:"weight"`
}

// RegexRewrite rewrites the path with a regular expression.
type RegexRewrite struct {
	Meta         `yaml:"-"`
	Pattern      string `yaml:"pattern"`
	Substitution string `yaml:"substitution"`
}

// RetryPolicy says when and how to retry an upstream request.
type RetryPolicy struct {
	Meta                 `yaml:"-"`
	RetryOn              []string `yaml:"retry_on"`
	RetriableStatusCodes []int    `yaml:"retriable_status_codes"`
	NumRetries           int      `yaml:"num_retries"`
	PerTryTimeout        Duration `yaml:"per_try_timeout"`
	Backoff              Backoff  `yaml:"backoff"`
	BufferLimit          Size     `yaml:"buffer_limit"`
}

// Backoff bounds the delay between retries.
type Backoff struct {
	Meta         `yaml:"-"`
	BaseInterval Duration `yaml:"base_interval"`
	MaxInterval  Duration `yaml:"max_interval"`
}

// Redirect answers with a redirect built from the request's URL.
type Redirect struct {
	Meta          `yaml:"-"`
	HTTPSRedirect bool    `yaml:"https_redirect"`
	HostRedirect  string  `yaml:"host_redirect"`
	PortRedirect  int     `yaml:"port_redirect"`
	PathRedirect  string  `yaml:"path_redirect"`
	PrefixRewrite *string `yaml:"prefix_rewrite"`
	StripQuery    bool    `yaml:"strip_query"`
	ResponseCode  int     `yaml:"response_code"`
}

// DirectResponse answers with a fixed status and body.
type DirectResponse struct {
	Meta   `yaml:"-"`
	Status int    `yaml:"status"`
	Body   string `yaml:"body"`
}

// Cluster is a named group of upstream endpoints.
type Cluster struct {
	Meta             `yaml:"-"`
	Name             string            `yaml:"name"`
	Type             string            `yaml:"type"`
	Endpoints        []Endpoint        `yaml:"endpoints"`
	DNSRefreshRate   Duration          `yaml:"dns_refresh_rate"`
	Protocol         string            `yaml:"protocol"`
	ConnectTimeout   Duration          `yaml:"connect_timeout"`
	LBPolicy         string            `yaml:"lb_policy"`
	HashPolicy       []HashPolicy      `yaml:"hash_policy"`
	TLS              *UpstreamTLS      `yaml:"tls"`
	HTTP1            HTTP1Options      `yaml:"http1"`
	HTTP2            HTTP2Options      `yaml:"http2"`
	HealthCheck      *HealthCheck      `yaml:"health_check"`
	OutlierDetection *OutlierDetection `yaml:"outlier_detection"`
	CircuitBreakers  CircuitBreakers   `yaml:"circuit_breakers"`
}

// Endpoint is one upstream address: host:port (an IP for static clusters, a
// DNS name for DNS clusters). In YAML it is either a plain "host:port"
// string or a mapping with address and weight.
type Endpoint struct {
	Meta    `yaml:"-"`
	Address string `yaml:"address"`
	Weight  uint32 `yaml:"weight"`
}

// HashPolicy names what ring_hash and maglev hash on. Exactly one is set.
type HashPolicy struct {
	Meta     `yaml:"-"`
	Header   string `yaml:"header"`
	Cookie   string `yaml:"cookie"`
	SourceIP bool   `yaml:"source_ip"`
}

// UpstreamTLS configures TLS to a cluster's endpoints.
type UpstreamTLS struct {
	Meta               `yaml:"-"`
	ServerName         string `yaml:"server_name"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// HTTP1Options tunes HTTP/1.1 upstream pools.
type HTTP1Options struct {
	Meta `yaml:"-"`
	// MaxIdleConnections bounds idle pooled connections per endpoint.
	MaxIdleConnections int      `yaml:"max_idle_connections"`
	IdleTimeout        Duration `yaml:"idle_timeout"`
}

// HTTP2Options tunes HTTP/2 upstream pools.
type HTTP2Options struct {
	Meta               `yaml:"-"`
	ConnectionsPerHost int      `yaml:"connections_per_host"`
	KeepaliveInterval  Duration `yaml:"keepalive_interval"`
	KeepaliveTimeout   Duration `yaml:"keepalive_timeout"`
}

// HealthCheck configures active health checking.
type HealthCheck struct {
	Meta               `yaml:"-"`
	Path               string   `yaml:"path"`
	TCP                bool     `yaml:"tcp"`
	Interval           Duration `yaml:"interval"`
	Timeout            Duration `yaml:"timeout"`
	UnhealthyThreshold int      `yaml:"unhealthy_threshold"`
	HealthyThreshold   int      `yaml:"healthy_threshold"`
}

// OutlierDetection configures passive ejection of failing hosts.
type OutlierDetection struct {
	Meta                      `yaml:"-"`
	Consecutive5xx            int      `yaml:"consecutive_5xx"`
	ConsecutiveGatewayFailure int      `yaml:"consecutive_gateway_failure"`
	Interval                  Duration `yaml:"interval"`
	BaseEjectionTime          Duration `yaml:"base_ejection_time"`
	MaxEjectionPercent        int      `yaml:"max_ejection_percent"`
}

// CircuitBreakers bound a cluster's concurrency.
type CircuitBreakers struct {
	Meta               `yaml:"-"`
	MaxConnections     int `yaml:"max_connections"`
	MaxPendingRequests int `yaml:"max_pending_requests"`
	MaxRequests        int `yaml:"max_requests"`
	MaxRetries         int `yaml:"max_retries"`
}
