#!/usr/bin/env bash
# Regenerates the TLS fixtures the tests use (shared/testkit/fixtures/tls): a CA,
# a server certificate for localhost / 127.0.0.1, a client certificate signed by
# the CA, and a second "rogue" CA with a client certificate of its own, which a
# server trusting only the first CA must refuse. Test material only: the keys are
# public in this repository and valid for 100 years so the tests never expire.
set -euo pipefail
out="${1:-$(dirname "$0")/../shared/testkit/fixtures/tls}"
mkdir -p "$out"
cd "$out"
days=36500

ca() { # name, subject
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days $days \
    -keyout "$1.key" -out "$1.pem" -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

leaf() { # name, ca, subject, extendedKeyUsage, subjectAltName
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$1.key" -out "$1.csr" -subj "/CN=$3" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' "$4" "$5" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial \
    -days $days -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

ca ca "retention test CA"
ca rogue-ca "retention rogue CA"
leaf server ca "localhost" serverAuth "DNS:localhost,IP:127.0.0.1"
leaf client ca "service:winback" clientAuth "DNS:winback.retention.test"
leaf rogue-client rogue-ca "service:rogue" clientAuth "DNS:rogue.retention.test"
rm -f ./*.srl rogue-ca.key ca.key
# Keys as PKCS#8, which every PEM reader accepts.
for k in server client rogue-client; do
  openssl pkcs8 -topk8 -nocrypt -in "$k.key" -out "$k.key.p8" && mv "$k.key.p8" "$k.key"
done
echo "TLS fixtures written to $out"
