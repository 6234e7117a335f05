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
# The monolith starts this as root, as upstream starts httpd: the master keeps root and
# its workers (mod_auth_gssapi, the WSGI daemons) switch to www-data in group 0, which
# then uses what this script writes for them (keytab and ccache, RA agent, session key;
# upstream's workers reach the keytab through gssproxy, which the monolith lacks).
[ "$(id -u)" -ne 0 ] || umask 0007
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
# The KDC answers only while its database does: on a fresh stack ldap restarts once, to
# serve the certificate the IPA CA issued it, and a kinit in that window fails.
# HTTP/'s ticket, into the ccache httpd's workers share. Made aside and renamed into place
# whole: when the master runs as root (the monolith) the workers (group 0) must find it
# group-readable at every moment, and kinit makes a new file with mode 0600.
http_kinit() {
    KRB5CCNAME=FILE:$run/http.ccache.next kinit -k -t "$run/http.keytab" "$principal" || return 1
    if [ "$(id -u)" -eq 0 ]; then chmod g+rw "$run/http.ccache.next"; fi
    mv -f "$run/http.ccache.next" "$run/http.ccache"
}
tries=0
until http_kinit; do
    tries=$((tries + 1))
    [ "$tries" -lt 30 ] || ipabuild_die "kinit as $principal with its derived keytab failed"
    sleep 2
done
# Every valid value, newest first (derived_keys.py anchors): once the CA's certificate is
# renewed the entry holds the old and the new one, and both are trusted, as in FreeIPA's
# /etc/ipa/ca.crt, until the old one expires.
ca_certificates() {  # $1: the file to write
    KRB5CCNAME=FILE:$run/http.ccache ldapsearch -N -Q -LLL -o ldif-wrap=no -Y GSSAPI \
        -H "ldap://ldap.$IPA_DOMAIN:3389" -s base -b "$ca_dn" 'cACertificate;binary' \
        2>/dev/null | python3 /usr/local/lib/ipabuild/derived_keys.py anchors "$1"
}
# The chain httpd sends, leaf first, then the newest CA certificate.
tls_chain() {
    { cat "$run/tls-leaf.crt"; openssl x509 -in "$run/ca.crt"; } >"$run/tls.crt.next" &&
        mv -f "$run/tls.crt.next" "$run/tls.crt"
}
waited=0
until ca_certificates "$run/ca.crt"; do
    [ $((waited % 30)) -eq 0 ] && ipabuild_log "waiting for the CA certificate at $ca_dn" \
        "(the ca service publishes it when it starts)"
    sleep 2
    waited=$((waited + 2))
done
ipabuild_log "IPA CA: $(openssl x509 -in "$run/ca.crt" -noout -subject)"
# The IPA CA joins OpenSSL's default trust for httpd and ipaserver, as ipa-server-install
# adds it to the system's store (tasks.insert_ca_certs_into_systemwide_ca_store): ipaldap
# opens some connections (the old-password check of `ipa passwd`) with no CA file of its
# own, i.e. OpenSSL's default verify locations. The root is read-only: a file on tmpfs.
cat /etc/ssl/certs/ca-certificates.crt "$run/ca.crt" >"$run/ca-certificates.crt"
export SSL_CERT_FILE=$run/ca-certificates.crt

# mod_auth_gssapi seals session cookies with 32 raw bytes; derived from the bootstrap
# secret so that every restart (and replica) reads the sessions it issued.
ipabuild_secret http-session-key | openssl dgst -sha256 -binary >"$run/session.key"
# The users' delegated credentials (S4U2Proxy evidence) for the API, per request.
mkdir -p -m 0770 /run/ipa/ccaches || ipabuild_die "cannot create /run/ipa/ccaches as UID $(id -u) GID $(id -g): /run/ipa must be a tmpfs (emptyDir)"

# Keys derived from bootstrap secrets (derived_keys.py), certificates issued by the IPA CA:
# the ca service derives the same keys, has Dogtag certify them and publishes the
# certificates in the directory, where they are read as HTTP/ (GSSAPI).
keys() { python3 /usr/local/lib/ipabuild/derived_keys.py "$@"; }
# newest_certificate LABEL SEED DN OUT: the newest valid certificate at DN for the key,
# once (exit 1: none yet; 2: no key).
newest_certificate() {
    local found
    found=$(KRB5CCNAME=FILE:$run/http.ccache ldapsearch -N -Q -LLL -o ldif-wrap=no -Y GSSAPI \
        -H "ldap://ldap.$IPA_DOMAIN:3389" -s base -b "$3" 'userCertificate;binary' 2>/dev/null)
    # No value yet: say so without starting Python (this runs every half second).
    case "$found" in *"userCertificate;binary::"*) ;; *) return 1 ;; esac
    printf '%s\n' "$found" | keys select "$2" "$1" "$4"
}
# fetch_certificate LABEL SEED DN OUT: the same, waiting until the ca service issued it
# (looking every half second: on a new stack httpd's start waits for it).
fetch_certificate() {
    local said=-30
    until newest_certificate "$@"; do
        [ $? -eq 2 ] && ipabuild_die "cannot derive the $1 key (the line above says why)"
        if [ $((SECONDS - said)) -ge 30 ]; then
            ipabuild_log "waiting for the $1 certificate at $3 (the ca service issues it" \
                "when it starts)"
            said=$SECONDS
        fi
        sleep 0.5
    done
}

# IPA's RA agent: ipaserver's Dogtag plugin authenticates to the CA with it
# (/var/lib/ipa/ra-agent.{pem,key} link here).
keys key ra-agent-key-seed ra-agent "$run/ra-agent.key" \
    || ipabuild_die "cannot derive the RA agent key (the line above says why)"
ra_dn="cn=ipaCert,cn=ca_renewal,cn=ipa,cn=etc,$IPA_SUFFIX"
fetch_certificate ra-agent ra-agent-key-seed "$ra_dn" "$run/ra-agent.pem"
ipabuild_log "RA agent: $(openssl x509 -in "$run/ra-agent.pem" -noout -subject -serial)"

tls_dn="krbprincipalname=$principal,cn=services,cn=accounts,$IPA_SUFFIX"
own_tls=yes
if [ -r /run/secrets/http-tls-crt ] && [ -r /run/secrets/http-tls-key ]; then
    own_tls=no
    ipabuild_log "TLS: the certificate from the secrets http-tls-crt/http-tls-key"
    cp /run/secrets/http-tls-crt "$run/tls.crt"
    cp /run/secrets/http-tls-key "$run/tls.key"
else
    keys key http-tls-key-seed http-tls "$run/tls.key" \
        || ipabuild_die "cannot derive the TLS key (the line above says why)"
    fetch_certificate http-tls http-tls-key-seed "$tls_dn" "$run/tls-leaf.crt"
    # The chain a client needs, leaf first: SSLCertificateFile sends all of it.
    tls_chain
    ipabuild_log "TLS: $(openssl x509 -in "$run/tls-leaf.crt" -noout -subject -issuer)"
fi

if [ "$(id -u)" -eq 0 ]; then  # the monolith: see umask above (the TLS key stays root's)
    chmod g+rw "$run/http.keytab" "$run/ra-agent.key"
fi
set +u
. /etc/apache2/envvars
set -u
export APACHE_RUN_DIR=$run APACHE_PID_FILE=$run/httpd.pid APACHE_LOCK_DIR=$run
[ "$(id -u)" -ne 0 ] || export APACHE_RUN_GROUP=root
export HTTP_CA_URL=${HTTP_CA_URL:-https://ca:8443}
ipabuild_log "starting httpd on 80/443 as UID $(id -u)"
/usr/sbin/apache2 -DFOREGROUND &
httpd=$!
trap 'kill -TERM "$httpd" 2>/dev/null; wait "$httpd"; exit 0' TERM INT  # as with exec

# Renewed certificates: the ca service's renewer publishes them beside the old ones.
# Every IPABUILD_CERT_POLL seconds (default 300) the newest of each is fetched aside;
# one that differs from the file in use replaces it whole (renamed into place), and
# httpd restarts gracefully (SIGUSR1: requests in flight finish, new ones get the new
# TLS certificate; ipaserver reads the RA agent's files per request to the CA).
# refreshed LABEL SEED DN FILE: exit 0 when FILE now holds a newer certificate.
refreshed() {
    newest_certificate "$1" "$2" "$3" "$4.next" 2>/dev/null || return 1
    if cmp -s "$4.next" "$4"; then rm -f "$4.next"; return 1; fi
    mv -f "$4.next" "$4"
    ipabuild_log "$1: $(openssl x509 -in "$4" -noout -serial -enddate | tr '\n' ' ')"
}
poll=${IPABUILD_CERT_POLL:-300}
while kill -0 "$httpd" 2>/dev/null; do
    # Wake for the next look or as soon as httpd ends (then this container ends with it
    # and its restart policy starts it again, as when httpd ran by exec).
    sleep "$poll" & sleeper=$!
    wait -n "$httpd" "$sleeper" || true
    kill -0 "$httpd" 2>/dev/null || { kill "$sleeper" 2>/dev/null; break; }
    # A fresh ticket each round (the first one's lifetime ends after a day).
    http_kinit 2>/dev/null || continue
    changed=""
    if ca_certificates "$run/ca.crt.next" && ! cmp -s "$run/ca.crt.next" "$run/ca.crt"; then
        mv -f "$run/ca.crt.next" "$run/ca.crt"
        cat /etc/ssl/certs/ca-certificates.crt "$run/ca.crt" >"$run/ca-certificates.crt.next" &&
            mv -f "$run/ca-certificates.crt.next" "$run/ca-certificates.crt"
        ipabuild_log "IPA CA: $(openssl x509 -in "$run/ca.crt" -noout -serial -enddate | tr '\n' ' ')"
        changed="IPA CA"
    fi
    rm -f "$run/ca.crt.next"
    refreshed ra-agent ra-agent-key-seed "$ra_dn" "$run/ra-agent.pem" &&
        changed="$changed${changed:+, }RA agent"
    if [ "$own_tls" = yes ] && { refreshed http-tls http-tls-key-seed "$tls_dn" "$run/tls-leaf.crt" ||
            [ "${changed%%,*}" = "IPA CA" ]; }; then
        tls_chain
        changed="$changed${changed:+, }TLS"
    fi
    [ -n "$changed" ] || continue
    ipabuild_log "renewed certificate ($changed) installed: httpd restarts gracefully"
    kill -USR1 "$httpd" 2>/dev/null || true
done
wait "$httpd"
