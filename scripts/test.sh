#!/usr/bin/env bash
# Runs every test: formatting, vet, then all packages with the race detector.
# Needs Go (>= 1.26) and curl; .ci/run installs them on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

unformatted=$(gofmt -l $(find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt needed on: $unformatted" >&2
	exit 1
fi
go vet ./...
go test -race -count=1 -timeout 20m "$@" ./...
