#!/bin/bash
# httpd under any UID with GID 0. Its keytab is derived at start from a mounted secret
# (the KDC derives the principal's key from the same secret), so no keytab travels.
set -euo pipefail
IPABUILD_SERVICE=http
. /usr/local/lib/ipabuild/lib.sh

run=/tmp/ipabuild-http
principal="HTTP/http.$IPA_DOMAIN@$IPA_REALM"

ipabuild_ensure_user
umask 0077
mkdir -p "$run"

ipabuild_secret http-service-password >/dev/null  # fail early and clearly when absent
ipabuild_secret http-session-key >/dev/null
ipabuild_wait_tcp "${HTTP_KDC_HOST:-kdc}" "${HTTP_KDC_PORT:-8088}" \
    "the KDC of $IPA_REALM that knows $principal"

ipabuild_keytab "$principal" http-service-password "$run/http.keytab"

# The IPA CA's certificate (ipaserver's /etc/ipa/ca.crt, a link to $run/ca.crt): read
# from the directory, where the ca service publishes it, over GSSAPI as HTTP/, so
# Kerberos authenticates the directory that hands it over.
ca_dn="cn=CAcert,cn=ipa,cn=etc,$IPA_SUFFIX"
KRB5CCNAME=FILE:$run/http.ccache kinit -k -t "$run/http.keytab" "$principal" \
    || ipabuild_die "kinit as $principal with its derived keytab failed"
waited=0
until KRB5CCNAME=FILE:$run/http.ccache ldapsearch -N -Q -LLL -o ldif-wrap=no -Y GSSAPI \
        -H "ldap://ldap.$IPA_DOMAIN:3389" -s base -b "$ca_dn" 'cACertificate;binary' 2>/dev/null \
        | sed -n 's/^cACertificate;binary:: //p' | base64 -d 2>/dev/null \
        | openssl x509 -inform der -out "$run/ca.crt" 2>/dev/null; do
    [ $((waited % 30)) -eq 0 ] && ipabuild_log "waiting for the CA certificate at $ca_dn" \
        "(the ca service publishes it when it starts)"
    sleep 2
    waited=$((waited + 2))
done
ipabuild_log "IPA CA: $(openssl x509 -in "$run/ca.crt" -noout -subject)"

# mod_auth_gssapi seals session cookies with 32 raw bytes; derived from the bootstrap
# secret so that every restart (and replica) reads the sessions it issued.
ipabuild_secret http-session-key | openssl dgst -sha256 -binary >"$run/session.key"
# The users' delegated credentials (S4U2Proxy evidence) for the API, per request.
mkdir -p -m 0770 /run/ipa/ccaches || ipabuild_die "cannot create /run/ipa/ccaches as UID $(id -u) GID $(id -g): /run/ipa must be a tmpfs (emptyDir)"

if [ -r /run/secrets/http-tls-crt ] && [ -r /run/secrets/http-tls-key ]; then
    cp /run/secrets/http-tls-crt "$run/tls.crt"
    cp /run/secrets/http-tls-key "$run/tls.key"
else
    ipabuild_log "no http-tls-crt/http-tls-key secrets: using a self-signed certificate"
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=http.$IPA_DOMAIN" \
        -keyout "$run/tls.key" -out "$run/tls.crt" 2>/dev/null
fi

set +u
. /etc/apache2/envvars
set -u
export APACHE_RUN_DIR=$run APACHE_PID_FILE=$run/httpd.pid APACHE_LOCK_DIR=$run
export HTTP_CA_URL=${HTTP_CA_URL:-https://ca:8443}
ipabuild_log "starting httpd on 80/443 as UID $(id -u)"
exec /usr/sbin/apache2 -DFOREGROUND
