#!/usr/bin/env bash
# Runs the whole double-proxy topology on loopback with the real edge binary
# (docs/operations.md, "The loopback topology"):
#
#   curl --TLS--> edge POP --mTLS HTTP/2--> data-centre edge --mTLS HTTP/2--> sidecar a --HTTP/1.1--> service a
#                                                             --mTLS HTTP/2--> sidecar b --h2c------> service b
#
# The configs are configs/topology/*.yaml; the certificates are made by
# scripts/double-proxy-certs.sh plus a data-centre client certificate and
# the sidecars' server certificates, in a temporary directory.
#
#   scripts/topology.sh            start, send one request to each service, print what to try;
#                                  Ctrl-C stops everything
#   scripts/topology.sh --check    start, verify that requests to both services crossed every
#                                  hop, stop; exit 0 when they did, 1 otherwise
#   scripts/topology.sh --certs DIR
#                                  only write the certificates to DIR, their private keys (not
#                                  the CA's) readable by all: the docker compose containers run
#                                  as uid 65532
#
# Environment:
#   EDGE_BIN                 an edge binary to use (default: go build ./cmd/edge)
#   SERVICE_BIN              a scripts/topology/service binary (default: go build)
#   EDGE_TOPOLOGY_PORT_BASE  first of the loopback ports (default 17400; uses base+0 ... base+32)
#   TOPOLOGY_USER_ADDR       the user's source address (default 127.0.0.2 on Linux, else 127.0.0.1)
# Needs go (unless both binaries are given), curl and openssl.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH=$PATH:/usr/local/go/bin

mode=run
case "${1:-}" in
"") ;;
--check) mode=check ;;
--certs)
	mode=certs
	[ $# -eq 2 ] || { echo "usage: $0 --certs DIR" >&2; exit 2; }
	;;
-h | --help)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "$0: unknown option $1 (use --check, --certs DIR or --help)" >&2
	exit 2
	;;
esac

# certs DIR: the double-proxy certificates, plus the data centre's client
# certificate toward the sidecars and each sidecar's server certificate.
certs() {
	local dir=$1
	"$root/scripts/double-proxy-certs.sh" "$dir" >/dev/null
	(
		cd "$dir"
		leaf() { # name subject san usage
			openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
				-subj "/CN=$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
			openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
				-extfile <(printf "subjectAltName=%s\nextendedKeyUsage=%s\n" "$3" "$4") -out "$1.crt" 2>/dev/null
			rm -f "$1.csr"
		}
		leaf dc-client dc.edge.internal "DNS:dc.edge.internal,URI:spiffe://edge.internal/datacenter" clientAuth
		leaf sidecar-a sidecar-a.edge.internal "DNS:sidecar-a.edge.internal,IP:127.0.0.1" serverAuth
		leaf sidecar-b sidecar-b.edge.internal "DNS:sidecar-b.edge.internal,IP:127.0.0.1" serverAuth
		rm -f ./*.srl
	)
}

if [ "$mode" = certs ]; then
	certs "$2"
	# Demo keys only: the containers run as another user than the files'
	# owner. The CA's key stays private: no container needs it.
	for key in "$2"/*.key; do
		[ "$(basename "$key")" = ca.key ] || chmod a+r "$key"
	done
	echo "wrote the topology's demo certificates to $2"
	exit 0
fi

base=${EDGE_TOPOLOGY_PORT_BASE:-17400}
default_base=17400
if ! [[ $base =~ ^[0-9]+$ ]] || [ "$base" -lt 1024 ] || [ "$base" -gt 65503 ]; then
	echo "$0: EDGE_TOPOLOGY_PORT_BASE=$base: give a port number from 1024 to 65503" >&2
	exit 2
fi
if [ -z "${TOPOLOGY_USER_ADDR:-}" ]; then
	TOPOLOGY_USER_ADDR=127.0.0.1
	[ "$(uname -s)" = Linux ] && TOPOLOGY_USER_ADDR=127.0.0.2 # all of 127/8 is local on Linux
fi
user=$TOPOLOGY_USER_ADDR
pop_port=$((base + 0)) pop_admin=$((base + 1))
dc_port=$((base + 10)) dc_admin=$((base + 11))
a_port=$((base + 20)) a_admin=$((base + 21)) a_service=$((base + 22))
b_port=$((base + 30)) b_admin=$((base + 31)) b_service=$((base + 32))

tmp=$(mktemp -d "${TMPDIR:-/tmp}/edge-topology.XXXXXX")
pids=() names=()
cleanup() {
	local i pid n
	trap - EXIT INT TERM
	# Stop in reverse start order: the POP first, the services last.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
	done
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		pid=${pids[i]}
		for ((n = 0; n < 100; n++)); do # up to 10s each
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "${names[i]} (pid $pid) did not stop in 10s; killing it" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	[ ${#pids[@]} -eq 0 ] || echo "stopped ${names[*]}"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
	echo "FAIL: $*" >&2
	local f
	for f in "$tmp"/logs/*.log; do
		[ -s "$f" ] || continue
		echo "--- last lines of $(basename "$f")" >&2
		tail -n 15 "$f" >&2
	done
	exit 1
}

for port in $pop_port $pop_admin $dc_port $dc_admin $a_port $a_admin $a_service $b_port $b_admin $b_service; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		fail "127.0.0.1:$port is in use; choose other ports with EDGE_TOPOLOGY_PORT_BASE"
	fi
done

# Binaries.
edge=${EDGE_BIN:-}
service=${SERVICE_BIN:-}
if [ -z "$edge" ] || [ -z "$service" ]; then
	echo "building edge and the demo service..."
	if [ -z "$edge" ]; then
		(cd "$root" && go build -o "$tmp/edge" ./cmd/edge) || fail "go build ./cmd/edge"
		edge=$tmp/edge
	fi
	if [ -z "$service" ]; then
		(cd "$root" && go build -o "$tmp/service" ./scripts/topology/service) || fail "go build ./scripts/topology/service"
		service=$tmp/service
	fi
fi

# Certificates and configs, with the ports moved when the base is not the
# default (two passes through a placeholder, so a new port never matches an
# old one).
certs "$tmp/certs"
mkdir -p "$tmp/logs"
for f in pop datacenter sidecar-a sidecar-b; do
	sed_args=()
	for off in 0 1 10 11 20 21 22 30 31 32; do
		sed_args+=(-e "s/127\.0\.0\.1:$((default_base + off))/127.0.0.1:@PORT$off@/g") # 5 digits: never a prefix of another port
	done
	for off in 0 1 10 11 20 21 22 30 31 32; do
		sed_args+=(-e "s/@PORT$off@/$((base + off))/g")
	done
	sed "${sed_args[@]}" "$root/configs/topology/$f.yaml" >"$tmp/$f.yaml"
	"$edge" validate -c "$tmp/$f.yaml" >/dev/null 2>"$tmp/logs/validate-$f.log" ||
		fail "configs/topology/$f.yaml does not validate: $(cat "$tmp/logs/validate-$f.log")"
done

start() { # name command...
	local name=$1
	shift
	"$@" >"$tmp/logs/$name.log" 2>&1 &
	pids+=($!)
	names+=("$name")
}

# wait_ready NAME URL: poll a readiness URL for up to 15s while the process lives.
wait_ready() {
	local name=$1 url=$2 i pid=${pids[${#pids[@]} - 1]}
	for ((i = 0; i < 300; i++)); do
		curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || fail "$name exited before it was ready"
		sleep 0.05
	done
	fail "$name not ready at $url after 15s"
}

# Start from the back: services, sidecars, data centre, POP.
start service-a "$service" -name a -addr "127.0.0.1:$a_service"
wait_ready service-a "http://127.0.0.1:$a_service/"
start service-b "$service" -name b -addr "127.0.0.1:$b_service"
wait_ready service-b "http://127.0.0.1:$b_service/"
# Each edge gets its own hot restart control socket and shared stats: its
# --base-id is its listener's port, unique on this machine, and the control
# sockets live in this run's directory.
export EDGE_RUNTIME_DIR=$tmp/run
for e in sidecar-a:$a_port:$a_admin sidecar-b:$b_port:$b_admin datacenter:$dc_port:$dc_admin pop:$pop_port:$pop_admin; do
	IFS=: read -r name port admin <<<"$e"
	start "$name" "$edge" run -c "$tmp/$name.yaml" --base-id "$port" --drain-time 2s --parent-shutdown-time 5s
	wait_ready "$name" "http://127.0.0.1:$admin/ready"
done
echo "running: ${names[*]} (logs in $tmp/logs)"

ca=$tmp/certs/ca.crt
# request PATH PROTOCOL-FLAG: one request from the user's address through every hop.
request() {
	curl -sS --fail-with-body --max-time 10 --interface "$user" --cacert "$ca" "$2" \
		"https://localhost:$pop_port$1"
}

# check_answer SERVICE ANSWER PROTO: the evidence that the request crossed every hop.
check_answer() {
	local svc=$1 answer=$2 proto=$3 want ok=1
	for want in \
		"\"service\": \"$svc\"" \
		"\"path\": \"/$svc/hello\"" \
		"\"proto\": \"$proto\"" \
		"\"x_forwarded_for\": \"$user, 127.0.0.1, 127.0.0.1\"" \
		"\"x_forwarded_proto\": \"https\"" \
		"\"x_forwarded_client_cert_elements\": 2" \
		"\"hops\": \"pop, datacenter, sidecar-$svc\""; do
		if ! grep -qF -- "$want" <<<"$answer"; then
			echo "service $svc: the answer lacks $want" >&2
			ok=0
		fi
	done
	for want in "DNS=pop.edge.internal" "DNS=dc.edge.internal"; do
		if ! grep -q "\"x_forwarded_client_cert\": \".*$want" <<<"$answer"; then
			echo "service $svc: x-forwarded-client-cert does not name $want" >&2
			ok=0
		fi
	done
	if [ $ok = 1 ]; then
		echo "ok: service $svc: user $user -> pop -> datacenter -> sidecar-$svc -> service $svc ($proto);" \
			"x-forwarded-for \"$user, 127.0.0.1, 127.0.0.1\"; x-forwarded-client-cert names the POP and the data centre"
	fi
	[ $ok = 1 ]
}

# stat ADMIN NAME: one counter from an edge's /stats.
stat() {
	curl -fsS --max-time 2 "http://127.0.0.1:$1/stats" | sed -n "s/^$2: //p"
}

echo
echo "== one request through every hop to each service"
failed=0
echo "\$ curl --http1.1 --interface $user --cacert ca.crt https://localhost:$pop_port/a/hello"
answer_a=$(request /a/hello --http1.1) || fail "the request to service a failed: $answer_a"
echo "$answer_a"
echo "\$ curl --http2 --interface $user --cacert ca.crt https://localhost:$pop_port/b/hello"
answer_b=$(request /b/hello --http2) || fail "the request to service b failed: $answer_b"
echo "$answer_b"

if [ "$mode" = check ]; then
	echo
	echo "== checks"
	check_answer a "$answer_a" HTTP/1.1 || failed=1
	check_answer b "$answer_b" HTTP/2.0 || failed=1
	for e in pop:$pop_admin:users datacenter:$dc_admin:pops sidecar-a:$a_admin:mesh sidecar-b:$b_admin:mesh; do
		IFS=: read -r name admin listener <<<"$e"
		n=$(stat "$admin" "edge_http_downstream_rq_xx.listener=$listener.response_code_class=2xx")
		hs=$(stat "$admin" "edge_listener_downstream_tls_handshake_total.listener=$listener")
		want=1
		case $name in pop | datacenter) want=2 ;; esac
		if [ "${n:-0}" -ge $want ] && [ "${hs:-0}" -ge 1 ]; then
			echo "ok: $name answered $n requests with 2xx on listener $listener after $hs TLS handshakes"
		else
			echo "$name: ${n:-no} 2xx answers (want $want) and ${hs:-no} TLS handshakes on listener $listener" >&2
			failed=1
		fi
	done
	if curl -sS -o /dev/null --max-time 5 --cacert "$ca" "https://127.0.0.1:$dc_port/a/hello" 2>/dev/null; then
		echo "the data centre answered a client without a POP certificate" >&2
		failed=1
	else
		echo "ok: the data centre refuses a client without a POP certificate"
	fi
	if curl -sS -o /dev/null --max-time 5 --cacert "$ca" --cert "$tmp/certs/pop-client.crt" --key "$tmp/certs/pop-client.key" \
		"https://127.0.0.1:$a_port/a/hello" 2>/dev/null; then
		echo "sidecar a answered a client that is not the data centre" >&2
		failed=1
	else
		echo "ok: sidecar a refuses a client that is not the data centre"
	fi
	if [ $failed = 0 ]; then
		echo "PASS: requests to both services crossed every hop"
		exit 0
	fi
	fail "some checks failed (see above)"
fi

cat <<EOF

== try it (certificates in $tmp/certs)
  curl --cacert $ca https://localhost:$pop_port/a/hello
  curl --cacert $ca --http2 'https://localhost:$pop_port/b/anything?q=1'
  curl --cacert $ca -i https://localhost:$pop_port/c/      # no such service: the data centre answers 404
  curl --cacert $ca https://127.0.0.1:$dc_port/a/          # refused: no POP client certificate
  curl -s http://127.0.0.1:$pop_admin/stats | grep -E 'rq_xx|cx_total'   # POP stats (admin)
  curl -s http://127.0.0.1:$dc_admin/stats/prometheus | grep edge_cluster_upstream_rq_xx
  curl -s http://127.0.0.1:$a_admin/clusters                # sidecar a's view of its service
Admin APIs: pop $pop_admin, datacenter $dc_admin, sidecar-a $a_admin, sidecar-b $b_admin.
Stop with Ctrl-C.
EOF
wait
