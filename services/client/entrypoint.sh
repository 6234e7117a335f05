#!/bin/bash
# The client toolbox: writes the configuration a FreeIPA client reads (default.conf,
# krb5.conf, the TLS anchor) under /tmp/ipa from the environment, then runs the command.
# Nothing is enrolled and nothing on the host is touched.
#   IPA_SERVER      the server name (the image's, from ipabuild.yaml: ipa.<domain>)
#   IPA_KDC         the KDC, host:port (default the server name's port 88)
#   IPA_KPASSWD     the password changing service, host:port (default the KDC's host, 464)
#   IPA_CA_FILE     the IPA CA's certificate (PEM) to trust; unset: the top of the chain
#                   the server presents at start is pinned (trust on first use), and said so
set -euo pipefail
conf=/tmp/ipa
server=${IPA_SERVER:-ipa.$IPA_DOMAIN}
kdc=${IPA_KDC:-$server:88}
uri="https://$server"  # port 443: the ipa CLI knows no other
log() { printf 'ipabuild-client: %s\n' "$*" >&2; }

mkdir -p "$conf"
cat >"$conf/default.conf" <<CONF
[global]
realm = $IPA_REALM
domain = $IPA_DOMAIN
basedn = $IPA_SUFFIX
server = $server
host = $(hostname -f 2>/dev/null || hostname)
xmlrpc_uri = $uri/ipa/xml
CONF
cat >"$conf/krb5.conf" <<CONF
[libdefaults]
    default_realm = $IPA_REALM
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
    dns_canonicalize_hostname = false
    forwardable = true
[realms]
    $IPA_REALM = {
        kdc = $kdc
        kpasswd_server = ${IPA_KPASSWD:-${kdc%:*}:464}
    }
[domain_realm]
    .$IPA_DOMAIN = $IPA_REALM
    $IPA_DOMAIN = $IPA_REALM
CONF

if [ -n "${IPA_CA_FILE:-}" ]; then
    cp "$IPA_CA_FILE" "$conf/ca.crt"
else
    # The last certificate of the chain httpd sends is the IPA CA that issued its own.
    if openssl s_client -showcerts -connect "$server:443" -servername "$server" </dev/null 2>/dev/null \
        | awk '/-----BEGIN CERTIFICATE-----/ { pem = "" } { pem = pem $0 "\n" }
               /-----END CERTIFICATE-----/ { last = pem } END { printf "%s", last }' \
        | openssl x509 >"$conf/ca.crt" 2>/dev/null; then
        log "trusting $(openssl x509 -in "$conf/ca.crt" -noout -subject), the top of the chain" \
            "$server presents now (set IPA_CA_FILE to pin the IPA CA instead)"
    else
        log "cannot reach $server:443 for its certificate; the ipa CLI will fail TLS"
    fi
fi
export IPA_CONFDIR=$conf KRB5_CONFIG=${KRB5_CONFIG:-$conf/krb5.conf} HOME=${HOME:-/tmp}
[ -w "$HOME" ] || export HOME=/tmp
exec "$@"
