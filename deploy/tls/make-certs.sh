#!/usr/bin/env bash
# Make a private CA and the TLS certificates of a Dask cluster: one for the scheduler, one shared
# by the workers, one for the client (coron3-dask).  EC P-256 keys, SHA-256 signatures.
#
#   deploy/tls/make-certs.sh OUT_DIR [HOST ...]
#
# HOSTs (default: localhost 127.0.0.1) go into the subjectAltName of the scheduler and worker
# certificates: list every name and address the cluster's machines are reached by.  Dask checks
# that a peer's certificate is signed by the CA, not its host name, but other TLS clients do.
# Writes into OUT_DIR: ca.pem ca.key scheduler.pem scheduler.key worker.pem worker.key
# client.pem client.key (keys mode 600).  An existing OUT_DIR/ca.pem + ca.key is reused, so a
# second run (new hosts) signs new certificates with the same CA.  deploy/tls/README.md shows
# how to start a TLS-only cluster with them.
# Environment: COR3_TLS_DAYS (validity, default 365), OPENSSL (default: openssl).
set -euo pipefail

if (($# < 1)) || [[ $1 == -* ]]; then
    echo "usage: $0 OUT_DIR [HOST ...]   (HOST default: localhost 127.0.0.1)" >&2
    exit 2
fi
out=$1
shift
hosts=("$@")
((${#hosts[@]})) || hosts=(localhost 127.0.0.1)
days=${COR3_TLS_DAYS:-365}
openssl=${OPENSSL:-openssl}

san=""
for host in "${hosts[@]}"; do
    if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then kind=IP; else kind=DNS; fi
    san+="${san:+,}$kind:$host"
done

mkdir -p "$out"
umask 077  # private keys readable by their owner only
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# a config of our own: the system openssl.cnf's defaults do not leak into the certificates
cat >"$tmp/openssl.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = coron3-dask
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
# scheduler and workers both accept connections and open them (to each other)
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF

new_key() {
    "$openssl" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}

if [[ -f $out/ca.pem && -f $out/ca.key ]]; then
    echo "make-certs: reusing the CA in $out" >&2
else
    new_key "$out/ca.key"
    "$openssl" req -x509 -new -config "$tmp/openssl.cnf" -extensions ca -key "$out/ca.key" \
        -subj "/CN=coron3-dask CA" -sha256 -days "$days" -out "$out/ca.pem"
fi

for role in scheduler worker client; do
    if [[ $role == client ]]; then extensions=client; else extensions=server; fi
    new_key "$out/$role.key"
    "$openssl" req -new -config "$tmp/openssl.cnf" -key "$out/$role.key" -subj "/CN=coron3-dask $role" \
        -out "$tmp/$role.csr"
    "$openssl" x509 -req -in "$tmp/$role.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" \
        -set_serial "0x$("$openssl" rand -hex 16)" -sha256 -days "$days" \
        -extfile "$tmp/openssl.cnf" -extensions "$extensions" -out "$out/$role.pem" 2>"$tmp/x509.log" ||
        { cat "$tmp/x509.log" >&2; exit 1; }
    "$openssl" verify -CAfile "$out/ca.pem" "$out/$role.pem" >/dev/null
done
chmod 644 "$out"/*.pem
echo "make-certs: wrote ca, scheduler, worker and client certificates to $out (SAN $san)" >&2
