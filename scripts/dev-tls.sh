#!/usr/bin/env bash
# Local dev certificates for `make run`: the edge's TLS listener, and mTLS from Envoy to
# the data-plane hosts.
#
#   scripts/dev-tls.sh [DIR]      DIR defaults to ${BULKHEAD_STATE_DIR:-.bulkhead}/tls
#
# Writes, once (again only when a file is missing or a leaf certificate expires within
# 30 days; existing CAs are kept):
#   ca.pem                the dev CA certificate: what clients pass to `curl --cacert`
#   ca-key.pem            its key (0600)
#   server.pem            the edge's certificate (leaf, then the CA), for localhost,
#                         bulkhead.localhost, *.bulkhead.localhost, 127.0.0.1 and ::1
#   server-key.pem        its key (0600)
#   mesh-ca.pem           the mesh CA: issues only the two certificates below
#   mesh-ca-key.pem       its key (0600)
#   host.pem              the data-plane hosts' certificate (serverAuth; leaf, then the
#                         mesh CA), for host.bulkhead.localhost and localhost (no IP
#                         addresses: Envoy's BoringSSL cannot check a leaf's IP against the
#                         CA's IP name constraints and refuses the chain, so reach the
#                         hosts by name): `bulkhead serve --tls-cert`
#   host-key.pem          its key (0600): `bulkhead serve --tls-key`
#   envoy-client.pem      Envoy's client certificate (clientAuth only; leaf, then the
#                         mesh CA), edge.bulkhead.localhost: the edge's UpstreamTlsContext
#   envoy-client-key.pem  its key (0600)
# The hosts trust mesh-ca.pem for client certificates (`--client-ca`), Envoy trusts it for
# the hosts' certificates. A second CA, not the dev CA, because the dev CA is the one people
# hand to curl or add to a trust store, and it signs a wildcard certificate the edge shows
# to everyone: nothing it issues should open the hosts, and its certificates should not
# pass as a host's. The mesh CA signs only Envoy's client certificate and the hosts' one.
# Both CAs are name-constrained to the local names above, so neither can vouch for any
# real host. Never commit this directory (.bulkhead/ is git-ignored).
set -euo pipefail

DIR=${1:-${BULKHEAD_STATE_DIR:-.bulkhead}/tls}
CA_DAYS=${DEV_TLS_CA_DAYS:-3650}
SERVER_DAYS=${DEV_TLS_SERVER_DAYS:-397}

command -v openssl >/dev/null || { echo "dev-tls: openssl is required" >&2; exit 1; }

LEAVES=(server host envoy-client)
complete() {
  for f in ca mesh-ca "${LEAVES[@]}"; do
    [ -s "$DIR/$f.pem" ] && [ -s "$DIR/$f-key.pem" ] || return 1
  done
  for f in "${LEAVES[@]}"; do
    openssl x509 -in "$DIR/$f.pem" -noout -checkend $((30 * 86400)) >/dev/null 2>&1 || return 1
  done
}
if complete; then
  exit 0
fi

umask 077
mkdir -p "$DIR"
chmod 700 "$DIR"
tmp=$(mktemp -d "$DIR/.new.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

CONSTRAINTS='nameConstraints = critical, permitted;DNS:localhost, permitted;DNS:bulkhead.localhost, permitted;IP:127.0.0.0/255.0.0.0, permitted;IP:0:0:0:0:0:0:0:1/FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF'
for ca in ca mesh-ca; do
  if [ "$ca" = ca ]; then cn="Bulkhead dev CA"; else cn="Bulkhead dev mesh CA"; fi
  cat >"$tmp/$ca.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
x509_extensions = ca_ext
[dn]
O = Bulkhead local development
CN = $cn
[ca_ext]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
$CONSTRAINTS
CNF
done

# leaf_cnf NAME CA CN EKU SAN: the request and extensions of one leaf certificate.
leaf_cnf() {
  cat >"$tmp/$1.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
[dn]
O = Bulkhead local development
CN = $3
[leaf_ext]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = $4
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $5
CNF
}
leaf_cnf server ca localhost serverAuth \
  "DNS:localhost, DNS:bulkhead.localhost, DNS:*.bulkhead.localhost, IP:127.0.0.1, IP:::1"
leaf_cnf host mesh-ca host.bulkhead.localhost serverAuth \
  "DNS:host.bulkhead.localhost, DNS:localhost"
leaf_cnf envoy-client mesh-ca edge.bulkhead.localhost clientAuth \
  "DNS:edge.bulkhead.localhost"
declare -A ISSUER=([server]=ca [host]=mesh-ca [envoy-client]=mesh-ca)

# Keep an existing CA (clients may already trust it); make one if there is none.
for ca in ca mesh-ca; do
  if [ -s "$DIR/$ca.pem" ] && [ -s "$DIR/$ca-key.pem" ] \
    && openssl x509 -in "$DIR/$ca.pem" -noout -checkend $((SERVER_DAYS * 86400)) >/dev/null 2>&1; then
    cp "$DIR/$ca.pem" "$DIR/$ca-key.pem" "$tmp/"
  else
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/$ca-key.pem" 2>/dev/null
    openssl req -new -x509 -config "$tmp/$ca.cnf" -key "$tmp/$ca-key.pem" -sha256 \
      -days "$CA_DAYS" -out "$tmp/$ca.pem"
  fi
done

# Leaves: a new key and certificate for each one missing or expiring, or whose CA is new;
# the others are kept as they are.
issued=()
for name in "${LEAVES[@]}"; do
  ca=${ISSUER[$name]}
  if [ -s "$DIR/$name.pem" ] && [ -s "$DIR/$name-key.pem" ] \
    && cmp -s "$tmp/$ca.pem" "$DIR/$ca.pem" \
    && openssl x509 -in "$DIR/$name.pem" -noout -checkend $((30 * 86400)) >/dev/null 2>&1; then
    continue
  fi
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/$name-key.pem" 2>/dev/null
  openssl req -new -config "$tmp/$name.cnf" -key "$tmp/$name-key.pem" -out "$tmp/$name.csr"
  openssl x509 -req -in "$tmp/$name.csr" -CA "$tmp/$ca.pem" -CAkey "$tmp/$ca-key.pem" \
    -CAcreateserial -CAserial "$tmp/$ca.srl" -sha256 -days "$SERVER_DAYS" \
    -extfile "$tmp/$name.cnf" -extensions leaf_ext -out "$tmp/$name.leaf.pem" 2>/dev/null
  cat "$tmp/$name.leaf.pem" "$tmp/$ca.pem" >"$tmp/$name.pem"
  openssl verify -CAfile "$tmp/$ca.pem" "$tmp/$name.leaf.pem" >/dev/null
  issued+=("$name")
done

for f in ca mesh-ca "${issued[@]}"; do
  chmod 600 "$tmp/$f-key.pem"
  chmod 644 "$tmp/$f.pem"
done
# Keys first, certificates last: a reader never sees a certificate without its key.
for f in ca mesh-ca "${issued[@]}"; do
  mv -f "$tmp/$f-key.pem" "$DIR/$f-key.pem"
done
for f in ca mesh-ca "${issued[@]}"; do
  mv -f "$tmp/$f.pem" "$DIR/$f.pem"
done
echo "dev-tls: wrote ${issued[*]} certificates to $DIR (trust the edge with: curl --cacert $DIR/ca.pem)" >&2
