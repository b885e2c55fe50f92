#!/usr/bin/env bash
# Measures edge's resident memory per idle keep-alive client connection,
# plain and TLS: opens N connections (default 10000), one request on each,
# holds them idle and reads the proxy's VmRSS before and after.
#   scripts/bench-idle-conns.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
n=${1:-10000}
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((n + 200)) ]; then
	echo "open-file limit $(ulimit -n) is below $((n + 200)); run with a smaller N" >&2
	exit 1
fi
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
go build -o "$tmp/edge" ./cmd/edge
go build -o "$tmp/idleconns" ./scripts/idleconns
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=localhost -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
cat >"$tmp/edge.yaml" <<CONF
admin: {address: ""}
listeners:
  - {name: plain, address: "127.0.0.1:18480", protocols: [http1], route_config: main}
  - name: tls
    address: 127.0.0.1:18481
    protocols: [http1, http2]
    route_config: main
    tls: {certificates: [{cert_file: $tmp/cert.pem, key_file: $tmp/key.pem}]}
route_configs:
  - name: main
    virtual_hosts:
      - {name: all, domains: ["*"], routes: [{match: {path: /ping}, direct_response: {status: 200, body: "pong"}}]}
clusters: []
CONF
# One fresh edge per case, so the second case does not reuse memory the
# first one freed.
measure() {
	GOMAXPROCS=1 "$tmp/edge" run -c "$tmp/edge.yaml" --log-level warn &
	pid=$!
	for _ in $(seq 50); do ss -Htln 'sport = :18481' | grep -q . && break; sleep 0.1; done
	"$tmp/idleconns" -n "$n" -pid $pid "$@"
	kill $pid
	wait $pid 2>/dev/null || true
}
measure -addr 127.0.0.1:18480
measure -addr 127.0.0.1:18481 -tls
