// Command client is a small HTTP client for images that have no shell and
// no curl (the edge image is FROM scratch): the client container of
// docker-compose.yml, and the exec probes and hooks of the Kubernetes
// manifests in configs/kubernetes.
//
//	client -cacert ca.crt -servername example.com https://pop:8443/a/hello
//	client -q http://127.0.0.1:9901/ready                      # a readiness probe
//	client -q -X POST -sleep 10s http://127.0.0.1:9901/drain_listeners   # a preStop hook
//
// It requests each URL in turn and prints the body (with -i the status line
// and headers first). It exits 0 when every answer was 2xx, 1 otherwise,
// and 2 on bad usage.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

// headerFlags collects repeated -H "name: value" flags.
type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, "; ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

// options are the parsed command line.
type options struct {
	method     string
	headers    http.Header
	caFile     string
	certFile   string
	keyFile    string
	serverName string
	http1      bool
	http2      bool
	timeout    time.Duration
	wait       time.Duration
	quiet      bool
	include    bool
	sleep      time.Duration
	urls       []string
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(2)
	}
	os.Exit(run(o))
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	o := &options{headers: http.Header{}}
	var hdrs headerFlags
	fs.StringVar(&o.method, "X", "GET", "request method")
	fs.Var(&hdrs, "H", `request header "name: value" (repeatable)`)
	fs.StringVar(&o.caFile, "cacert", "", "PEM file of the CA the server's certificate must chain to (default: system roots)")
	fs.StringVar(&o.certFile, "cert", "", "PEM client certificate (mTLS); needs -key")
	fs.StringVar(&o.keyFile, "key", "", "PEM key of -cert")
	fs.StringVar(&o.serverName, "servername", "", "TLS server name to send and verify (default: the URL's host)")
	fs.BoolVar(&o.http1, "http1", false, "speak HTTP/1.1 only")
	fs.BoolVar(&o.http2, "http2", false, "speak HTTP/2 only (over TLS by ALPN; on http:// URLs cleartext h2c with prior knowledge)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "bound on each request")
	fs.DurationVar(&o.wait, "wait", 0, "retry a URL (every 250ms) until it answers 2xx or this much time has passed")
	fs.BoolVar(&o.quiet, "q", false, "print nothing on success")
	fs.BoolVar(&o.include, "i", false, "print the status line and response headers before the body")
	fs.DurationVar(&o.sleep, "sleep", 0, "sleep this long after the requests (a preStop hook that holds the pod while it drains)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: client [flags] URL...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.urls = fs.Args()
	if len(o.urls) == 0 {
		return nil, errors.New("name at least one URL")
	}
	if o.http1 && o.http2 {
		return nil, errors.New("-http1 and -http2 exclude each other")
	}
	if (o.certFile == "") != (o.keyFile == "") {
		return nil, errors.New("-cert and -key go together")
	}
	for _, h := range hdrs {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf(`-H %q: write "name: value"`, h)
		}
		o.headers.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	return o, nil
}

func run(o *options) int {
	tr, err := transport(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 2
	}
	defer tr.CloseIdleConnections()
	code := 0
	for _, u := range o.urls {
		if err := fetch(tr, o, u); err != nil {
			fmt.Fprintf(os.Stderr, "client: %s %s: %v\n", o.method, u, err)
			code = 1
		}
	}
	time.Sleep(o.sleep)
	return code
}

// transport builds the HTTP transport the flags ask for.
func transport(o *options) (*http.Transport, error) {
	tc := &tls.Config{ServerName: o.serverName}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("-cacert: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-cacert %s: no PEM certificate in it", o.caFile)
		}
	}
	if o.certFile != "" {
		c, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return nil, fmt.Errorf("-cert/-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	var p http.Protocols
	switch {
	case o.http1:
		p.SetHTTP1(true)
	case o.http2:
		p.SetHTTP2(true)
		p.SetUnencryptedHTTP2(true)
	default:
		p.SetHTTP1(true)
		p.SetHTTP2(true)
	}
	return &http.Transport{
		TLSClientConfig:   tc,
		Protocols:         &p,
		ForceAttemptHTTP2: !o.http1,
	}, nil
}

// answer is one response, read whole.
type answer struct {
	proto  string
	status string
	code   int
	header http.Header
	body   []byte
}

// fetch requests one URL, retrying within -wait, and prints the answer:
// a 2xx to stdout (unless -q), anything else to stderr.
func fetch(tr *http.Transport, o *options, url string) error {
	deadline := time.Now().Add(o.wait)
	for {
		a, err := once(tr, o, url)
		if err == nil && a.code/100 == 2 {
			if !o.quiet {
				a.print(os.Stdout, o.include)
			}
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return err
			}
			a.print(os.Stderr, true)
			return fmt.Errorf("status %d", a.code)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// once sends one request and reads the whole answer.
func once(tr *http.Transport, o *options, url string) (*answer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, o.method, url, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range o.headers {
		req.Header[k] = slices.Clone(v)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	return &answer{proto: resp.Proto, status: resp.Status, code: resp.StatusCode, header: resp.Header, body: body}, nil
}

// print writes the answer's body, after its status line and headers when
// head is set.
func (a *answer) print(w io.Writer, head bool) {
	if head {
		fmt.Fprintf(w, "%s %s\n", a.proto, a.status)
		a.header.Write(w)
		fmt.Fprintln(w)
	}
	w.Write(a.body)
}
