#!/bin/sh
# Generates throwaway certificates for test_tls into OUTDIR: a CA, and an EC
# P-256 and an RSA 2048 leaf for "localhost" signed by it, plus an unrelated
# EC key for the mismatch test.  Nothing here is secret or reused.
# Usage: gen_tls_certs.sh OPENSSL OUTDIR
set -eu
openssl=$1
out=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$openssl" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$work/ca-key.pem" -out "$out/ca-cert.pem" -days 3650 -subj "/CN=gtmd test CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    2>/dev/null

cat > "$work/leaf.cnf" <<'CNF'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost
CNF

leaf() {
    name=$1
    serial=$2
    shift 2
    "$openssl" req -new -newkey "$@" -nodes -keyout "$out/$name-key.pem" \
        -out "$work/$name.csr" -subj /CN=localhost 2>/dev/null
    "$openssl" x509 -req -in "$work/$name.csr" -CA "$out/ca-cert.pem" -CAkey "$work/ca-key.pem" \
        -set_serial "$serial" -days 3650 -extfile "$work/leaf.cnf" -out "$work/$name-cert.pem" 2>/dev/null
    cat "$work/$name-cert.pem" "$out/ca-cert.pem" > "$out/$name-chain.pem"
}

leaf ec 2 ec -pkeyopt ec_paramgen_curve:P-256
leaf rsa 3 rsa:2048
"$openssl" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/other-ec-key.pem" 2>/dev/null
"$openssl" pkey -in "$out/ec-key.pem" -aes256 -passout pass:test-only -out "$out/encrypted-ec-key.pem"
