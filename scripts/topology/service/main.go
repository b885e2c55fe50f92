// Command service is the demo service of the double-proxy topology
// (scripts/topology.sh, docker-compose.yml): an HTTP/1.1 and cleartext
// HTTP/2 (h2c, prior knowledge) server that answers every request with a
// JSON description of what reached it: its own name, the request path and
// protocol, the forwarding headers each proxy hop adds, and every header.
//
//	service -name a -addr 127.0.0.1:8080
//
// Each field of the answer is on its own line, so a shell script can check
// one with grep. It stops gracefully on SIGINT or SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// answer is what the service reports about a request. Field order is the
// order of the JSON output.
type answer struct {
	Service                string            `json:"service"`
	Path                   string            `json:"path"`
	Proto                  string            `json:"proto"`
	Host                   string            `json:"host"`
	Peer                   string            `json:"peer"`
	XForwardedFor          string            `json:"x_forwarded_for"`
	XForwardedProto        string            `json:"x_forwarded_proto"`
	XForwardedClientCert   string            `json:"x_forwarded_client_cert"`
	XForwardedClientCertNo int               `json:"x_forwarded_client_cert_elements"`
	XRequestID             string            `json:"x_request_id"`
	Hops                   string            `json:"hops"`
	Headers                map[string]string `json:"headers"`
}

// hopHeader is the header each edge of the topology adds with its route
// config's request_headers_to_add, naming itself.
const hopHeader = "X-Topology-Hop"

func main() {
	name := flag.String("name", "service", "the name the service answers with")
	addr := flag.String("addr", "127.0.0.1:8080", "host:port to listen on")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*name, *addr, logger); err != nil {
		logger.Error("service stopped", "name", *name, "err", err)
		os.Exit(1)
	}
}

func run(name, addr string, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another process using the port?)", addr, err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge, as edge's http2 clusters speak it
	srv := &http.Server{
		Handler:           handler(name),
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("service listening", "name", name, "address", ln.Addr().String(), "protocols", "http1, h2c")
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// handler answers every request with an answer as indented JSON.
func handler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := answer{
			Service:              name,
			Path:                 r.URL.RequestURI(),
			Proto:                r.Proto,
			Host:                 r.Host,
			Peer:                 r.RemoteAddr,
			XForwardedFor:        strings.Join(r.Header.Values("X-Forwarded-For"), ", "),
			XForwardedProto:      r.Header.Get("X-Forwarded-Proto"),
			XForwardedClientCert: strings.Join(r.Header.Values("X-Forwarded-Client-Cert"), ","),
			XRequestID:           r.Header.Get("X-Request-Id"),
			Hops:                 strings.Join(r.Header.Values(hopHeader), ", "),
			Headers:              make(map[string]string, len(r.Header)),
		}
		if a.XForwardedClientCert != "" {
			a.XForwardedClientCertNo = countXFCCElements(a.XForwardedClientCert)
		}
		for k, v := range r.Header {
			a.Headers[strings.ToLower(k)] = strings.Join(v, ", ")
		}
		body, err := json.MarshalIndent(a, "", "  ")
		if err != nil {
			http.Error(w, "encoding the answer: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(body, '\n'))
	})
}

// countXFCCElements counts the comma-separated elements of an
// x-forwarded-client-cert value (one per proxy that verified its peer's
// certificate), skipping commas inside quoted values.
func countXFCCElements(v string) int {
	n, quoted := 1, false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				n++
			}
		}
	}
	return n
}
