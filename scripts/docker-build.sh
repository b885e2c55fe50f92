#!/usr/bin/env bash
# Builds the edge container image (Dockerfile) from static binaries built
# here first, so the image needs no base image and no compiler:
#   bin/docker/rootfs/usr/local/bin/edge      the proxy
#   bin/docker/rootfs/usr/local/bin/service   the topology's demo service (scripts/topology/service)
#   bin/docker/rootfs/usr/local/bin/client    a small HTTP client for probes, hooks and the
#                                             compose client container (scripts/topology/client)
#   bin/docker/rootfs/etc/ssl/certs/ca-certificates.crt   this machine's CA bundle, for ACME and
#                                             upstream TLS with system roots
#
#   scripts/docker-build.sh [IMAGE]           default IMAGE: edge:dev
#
# GOARCH picks another architecture (GOARCH=arm64 scripts/docker-build.sh).
# Needs Go and docker.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
image=${1:-edge:dev}

out=bin/docker
rm -rf "$out"
mkdir -p "$out/rootfs/usr/local/bin" "$out/rootfs/etc/ssl/certs" "$out/rootfs/tmp" "$out/state"
chmod 1777 "$out/rootfs/tmp"  # the hot restart control socket's directory goes here
chmod 0700 "$out/state"       # becomes /var/lib/edge, the image user's data (ACME storage)
for cmd in edge:./cmd/edge service:./scripts/topology/service client:./scripts/topology/client; do
	CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o "$out/rootfs/usr/local/bin/${cmd%%:*}" "${cmd#*:}"
done
bundle=
for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
	if [ -s "$f" ]; then
		bundle=$f
		break
	fi
done
[ -n "$bundle" ] || { echo "no CA bundle found on this machine (install ca-certificates)" >&2; exit 1; }
cp "$bundle" "$out/rootfs/etc/ssl/certs/ca-certificates.crt"

docker build -t "$image" .
echo "built $image; try: docker run --rm --network host $image   (then curl http://127.0.0.1:8080/ping)"
