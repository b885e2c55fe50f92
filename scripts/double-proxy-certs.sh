#!/usr/bin/env bash
# Makes a demo CA and every certificate the double-proxy example needs, in
# configs/double-proxy/certs/ (git-ignored), or in the directory given as
# the first argument:
#   ca.crt                 the demo CA both hops trust
#   pop-frontend.{crt,key} the POP's certificate for users (localhost, example.com)
#   pop-client.{crt,key}   the POP's client certificate toward the data centre
#                          (SAN pop.edge.internal)
#   dc.{crt,key}           the data centre's server certificate (dc.edge.internal)
#   rogue-client.{crt,key} a client certificate from another CA, for tests
# Needs openssl.
set -euo pipefail
out=${1:-$(cd "$(dirname "$0")/.." && pwd)/configs/double-proxy/certs}
mkdir -p "$out"
cd "$out"
days=365

ca() { # name subject
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days $days \
		-subj "/CN=$2" -keyout "$1.key" -out "$1.crt" 2>/dev/null
}
leaf() { # name ca subject san usage
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-subj "/CN=$3" -keyout "$1.key" -out "$1.csr" 2>/dev/null
	openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial -days $days \
		-extfile <(printf "subjectAltName=%s\nextendedKeyUsage=%s\n" "$4" "$5") -out "$1.crt" 2>/dev/null
	rm -f "$1.csr"
}

ca ca "edge demo CA"
leaf pop-frontend ca localhost "DNS:localhost,DNS:example.com,IP:127.0.0.1" serverAuth
leaf pop-client ca pop.edge.internal "DNS:pop.edge.internal,URI:spiffe://edge.internal/pop" clientAuth
leaf dc ca dc.edge.internal "DNS:dc.edge.internal,IP:127.0.0.1" serverAuth
ca rogue-ca "rogue CA"
leaf rogue-client rogue-ca pop.edge.internal "DNS:pop.edge.internal" clientAuth
rm -f ./*.srl rogue-ca.key
echo "wrote certificates to $out"
