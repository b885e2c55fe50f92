// Package edge is the server: it compiles a config into listeners, route
// tables and clusters, runs the downstream connection manager and the
// forwarding core, and serves the admin API. It is the only package that
// wires the others together.
//
// A request's way, top-down through this package:
//
//	listen.go    accept, TLS handshake, protocol choice (ALPN, h2c preface),
//	             connection tracking and graceful shutdown
//	h1conn.go    edge's HTTP/1.1 connection loop (h1parse.go, h1body.go)
//	             -> message.Request; the connection is the responder
//	h2conn.go    edge's HTTP/2 codec (TLS and h2c) on x/net's Framer and
//	             hpack -> message.Request; each stream is the responder
//	http3.go     quic-go's HTTP/3 server on the UDP twin of a TLS listener,
//	             through the net/http adapter of nethttp.go
//	forward.go   listenerRuntime.serve: header policy (headers.go: XFF,
//	             internal/external, x-edge-*, XFCC, request id), ACME
//	             HTTP-01 answers, route match, then a local reply, a
//	             redirect, a direct response or forward: pick a cluster,
//	             run the tries (retry.go: hosts, per-try deadlines, back-off,
//	             body replay, circuit breakers), stream the response back
//	             (flushing streams, keeping trailers), or tunnel an upgrade
//	forward.go   access log line and stats (cluster.go: per-cluster stats)
//
// Everything a request reads is compiled once in New (server.go); nothing
// per request re-parses config or resolves names. The forwarding core sees
// only edge's own message types and a small responder interface, so a
// downstream codec can be replaced without touching it, the router or
// upstream.
package edge
