#!/usr/bin/env bash
# A local dev CA and a server certificate for the edge's TLS listener (make run).
#
#   scripts/dev-tls.sh [DIR]      DIR defaults to ${BULKHEAD_STATE_DIR:-.bulkhead}/tls
#
# Writes, once (again only when a file is missing or the server certificate expires
# within 30 days):
#   ca.pem          the dev CA certificate: what clients pass to `curl --cacert`
#   ca-key.pem      its key (0600)
#   server.pem      the edge's certificate (leaf, then the CA), for localhost,
#                   bulkhead.localhost, *.bulkhead.localhost, 127.0.0.1 and ::1
#   server-key.pem  its key (0600)
# The CA is name-constrained to those names, so even if someone adds ca.pem to a
# trust store it cannot vouch for any real host. Never commit this directory
# (.bulkhead/ is git-ignored).
set -euo pipefail

DIR=${1:-${BULKHEAD_STATE_DIR:-.bulkhead}/tls}
CA_DAYS=${DEV_TLS_CA_DAYS:-3650}
SERVER_DAYS=${DEV_TLS_SERVER_DAYS:-397}

command -v openssl >/dev/null || { echo "dev-tls: openssl is required" >&2; exit 1; }

complete() {
  for f in ca.pem ca-key.pem server.pem server-key.pem; do
    [ -s "$DIR/$f" ] || return 1
  done
  openssl x509 -in "$DIR/server.pem" -noout -checkend $((30 * 86400)) >/dev/null 2>&1
}
if complete; then
  exit 0
fi

umask 077
mkdir -p "$DIR"
chmod 700 "$DIR"
tmp=$(mktemp -d "$DIR/.new.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/ca.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = ca_ext
[dn]
O = Bulkhead local development
CN = Bulkhead dev CA
[ca_ext]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
nameConstraints = critical, permitted;DNS:localhost, permitted;DNS:bulkhead.localhost, permitted;IP:127.0.0.0/255.0.0.0, permitted;IP:0:0:0:0:0:0:0:1/FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF
CNF

cat >"$tmp/server.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
O = Bulkhead local development
CN = localhost
[server_ext]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:localhost, DNS:bulkhead.localhost, DNS:*.bulkhead.localhost, IP:127.0.0.1, IP:::1
CNF

# Keep an existing CA (clients may already trust it); make one if there is none.
if [ -s "$DIR/ca.pem" ] && [ -s "$DIR/ca-key.pem" ] \
  && openssl x509 -in "$DIR/ca.pem" -noout -checkend $((SERVER_DAYS * 86400)) >/dev/null 2>&1; then
  cp "$DIR/ca.pem" "$DIR/ca-key.pem" "$tmp/"
else
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/ca-key.pem" 2>/dev/null
  openssl req -new -x509 -config "$tmp/ca.cnf" -key "$tmp/ca-key.pem" -sha256 \
    -days "$CA_DAYS" -out "$tmp/ca.pem"
fi

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/server-key.pem" 2>/dev/null
openssl req -new -config "$tmp/server.cnf" -key "$tmp/server-key.pem" -out "$tmp/server.csr"
openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca-key.pem" \
  -CAcreateserial -CAserial "$tmp/ca.srl" -sha256 -days "$SERVER_DAYS" \
  -extfile "$tmp/server.cnf" -extensions server_ext -out "$tmp/leaf.pem" 2>/dev/null
cat "$tmp/leaf.pem" "$tmp/ca.pem" >"$tmp/server.pem"
openssl verify -CAfile "$tmp/ca.pem" "$tmp/leaf.pem" >/dev/null

chmod 600 "$tmp/ca-key.pem" "$tmp/server-key.pem"
chmod 644 "$tmp/ca.pem" "$tmp/server.pem"
# Keys first, certificates last: a reader never sees a certificate without its key.
for f in ca-key.pem server-key.pem ca.pem server.pem; do
  mv -f "$tmp/$f" "$DIR/$f"
done
echo "dev-tls: wrote a dev CA and a server certificate to $DIR (trust it with: curl --cacert $DIR/ca.pem)" >&2
