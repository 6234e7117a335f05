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
ipabuild_wait_tcp "${HTTP_KDC_HOST:-kdc}" "${HTTP_KDC_PORT:-8088}" \
    "the KDC of $IPA_REALM that knows $principal"

ipabuild_keytab "$principal" http-service-password "$run/http.keytab"

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
ipabuild_log "starting httpd on 8080/8443 as UID $(id -u)"
exec /usr/sbin/apache2 -DFOREGROUND
