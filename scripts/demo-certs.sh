#!/usr/bin/env bash
# Makes a throwaway CA and a certificate for configs/front-proxy.yaml in
# configs/certs/ (git-ignored). Needs openssl.
set -euo pipefail
dir=$(cd "$(dirname "$0")/../configs" && pwd)/certs
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
	-subj "/CN=edge demo CA" -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-subj "/CN=localhost" -keyout front-proxy.key -out front-proxy.csr 2>/dev/null
openssl x509 -req -in front-proxy.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
	-extfile <(printf "subjectAltName=DNS:localhost,IP:127.0.0.1") -out front-proxy.crt 2>/dev/null
rm -f front-proxy.csr ca.srl
echo "wrote $dir/{ca.crt,front-proxy.crt,front-proxy.key}"
