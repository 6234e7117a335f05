#!/bin/bash
# MIT krb5kdc and kadmind with FreeIPA's ipa-kdb under any UID with GID 0. The realm
# lives in the ldap service's IPA directory; ipa-kdb reaches it only over the LDAPI
# socket on the volume this container shares with ldap (SASL EXTERNAL: 389-ds maps this
# GID-0 peer to Directory Manager, as FreeIPA's root KDC is). No password on disk: the
# master key stash is rebuilt on tmpfs from the mounted secret at every start.
set -euo pipefail
IPABUILD_SERVICE=kdc
. /usr/local/lib/ipabuild/lib.sh

run=/tmp/ipabuild-kdc
socket=/run/ipa-ldapi/slapd-${IPA_REALM//./-}.socket
ldapi="ldapi://$(printf '%s' "$socket" | sed 's#/#%2F#g')"
ready=${KDC_DIRECTORY_READY:-ldap:3389}   # opens only once ldap's IPA setup is done
realm_dn="cn=$IPA_REALM,cn=kerberos,$IPA_SUFFIX"
admin_dn="uid=admin,cn=users,cn=accounts,$IPA_SUFFIX"

ipabuild_ensure_user
umask 0077
mkdir -p "$run"
sed -e "s#@RUN@#$run#" /usr/share/ipabuild/kdc.conf.in >"$run/kdc.conf"  # no PKINIT yet
cp /usr/share/ipabuild/krb5.conf.in "$run/krb5.conf"
export KRB5_CONFIG=$run/krb5.conf KRB5_KDC_PROFILE=$run/kdc.conf

# FreeIPA's installutils.kadmin: ipa-kdb refuses principals outside IPA's rules otherwise.
kadmin() { kadmin.local -x ipa-setup-override-restrictions "$@"; }
has_principal() { kadmin -q "getprinc $1" 2>/dev/null | grep -q '^Principal:'; }
directory() { ldapsearch -LLL -o ldif-wrap=no -Q -Y EXTERNAL -H "$ldapi" "$@"; }
master_key() { ipabuild_secret kdc-master-key; }

ipabuild_wait_tcp "${ready%%:*}" "${ready##*:}" "the IPA directory of realm $IPA_REALM"
waited=0
until [ -S "$socket" ] && directory -b "$realm_dn" -s base dn >/dev/null 2>&1; do
    [ $((waited % 10)) -ne 0 ] || ipabuild_log "waiting for $realm_dn over $socket" \
        "(the kdc must share ldap's ldapi volume and user namespace)"
    sleep 1
    waited=$((waited + 1))
    [ "$waited" -lt 120 ] || ipabuild_die "cannot reach the directory over LDAPI at $socket:" \
        "mount ldap's ldapi volume at /run/ipa-ldapi (Kubernetes: run in ldap's pod)"
done

if directory -b "$realm_dn" -s base krbMKey | grep -q '^krbMKey'; then
    ipabuild_log "realm $IPA_REALM found; stashing the master key"
    master_key | kdb5_util stash -f "$run/master.stash" >/dev/null
else
    # FreeIPA's KrbInstance.__init_ipa_kdb: the realm's keys through ipa-kdb itself.
    ipabuild_log "creating realm $IPA_REALM through ipa-kdb"
    printf '%s\n%s\n' "$(master_key)" "$(master_key)" |
        kdb5_util create -s -r "$IPA_REALM" -x ipa-setup-override-restrictions >/dev/null
fi

# Hosts, service entries and the HTTP/ -> ldap/ delegation rule (existing ones stay).
out=$(ldapmodify -c -Q -Y EXTERNAL -H "$ldapi" -f /usr/share/ipabuild/ipa-services.ldif 2>&1 || true)
if printf '%s\n' "$out" | grep '^ldap_' | grep -v 'Already exists (68)\|Type or value exists (20)'; then
    ipabuild_die "could not add the stack's hosts and services: $out"
fi

# Principal aliases (FreeIPA's service-add-principal: more krbPrincipalName values on the
# entry, krbCanonicalName unchanged): the names a client asks a ticket for once its
# resolver canonicalised the name it was given. The short name ("ldap", as /etc/hosts
# answers locally) and the name under each resolver search domain: dns.podman locally,
# <namespace>.svc.<cluster domain> in a pod, so Service DNS names work too. And the
# stack's one server name ($IPA_SERVER, short and full), which FreeIPA's clients use for
# LDAP and HTTP alike (ldap/ipa.example.test, HTTP/ipa.example.test), as on a master.
search_domains=$(awk '$1 == "search" || $1 == "domain" { for (i = 2; i <= NF; i++) print $i }' \
    /etc/resolv.conf 2>/dev/null | sort -u)
aliases=$(while read -r principal _; do
    case "$principal" in ''|'#'*) continue ;; esac
    kind=${principal%%/*} host=${principal#*/}; host=${host%@*}; short=${host%%.*}
    for name in "$short" $(printf "$short.%s\n" $search_domains) \
            "$IPA_SERVER" "${IPA_SERVER%%.*}" $(printf "${IPA_SERVER%%.*}.%s\n" $search_domains); do
        [ "$name" = "$host" ] && continue
        printf 'dn: krbprincipalname=%s,cn=services,cn=accounts,%s\nchangetype: modify\n' \
            "$principal" "$IPA_SUFFIX"
        printf 'add: krbPrincipalName\nkrbPrincipalName: %s/%s@%s\n\n' "$kind" "$name" "$IPA_REALM"
    done
done </usr/share/ipabuild/principals)
out=$(printf '%s\n' "$aliases" | ldapmodify -c -Q -Y EXTERNAL -H "$ldapi" 2>&1 || true)
if printf '%s\n' "$out" | grep '^ldap_' | grep -v 'Type or value exists (20)'; then
    ipabuild_die "could not add the service principals' aliases: $out"
fi
ipabuild_log "service principal aliases:" \
    $(printf '%s\n' "$aliases" | sed -n 's/^krbPrincipalName: //p')

service_keysalts="aes256-sha2:normal aes128-sha2:normal aes256-cts:normal aes128-cts:normal"
# Keys of the service principals, from secrets (httpd and ns-slapd derive the same keys).
while read -r principal secret_name; do
    case "$principal" in ''|'#'*) continue ;; esac
    if kadmin -q "getprinc $principal" 2>/dev/null | grep -q '^Number of keys: 0'; then
        # The enctypes and (normal) salt ipabuild_keytab derives on the other side.
        printf 'cpw -e "%s" -pw %s %s\n' "$service_keysalts" \
            "$(ipabuild_secret "$secret_name")" "$principal" |
            kadmin >/dev/null 2>&1
        kadmin -q "getprinc $principal" 2>/dev/null | grep -q '^Number of keys: [1-9]' ||
            ipabuild_die "could not set the keys of $principal"
        ipabuild_log "set the keys of $principal"
    fi
done </usr/share/ipabuild/principals

# The anonymous principal (KrbInstance.add_anonymous_principal) and FreeIPA's ACI for it.
anonymous="WELLKNOWN/ANONYMOUS@$IPA_REALM"
if ! has_principal "$anonymous"; then
    kadmin -q "addprinc -randkey $anonymous" >/dev/null 2>&1
    has_principal "$anonymous" || ipabuild_die "could not create $anonymous"
    sed -e "s/\$SUFFIX/$IPA_SUFFIX/g" -e "s/\$REALM/$IPA_REALM/g" /usr/share/ipa/anon-princ-aci.ldif |
        ldapmodify -Q -Y EXTERNAL -H "$ldapi" >/dev/null
    ipabuild_log "created $anonymous"
fi

# admin's keys: ipa-pwd-extop makes them from the password (DsInstance.change_admin_password).
if ! directory -b "$admin_dn" -s base '(krbPrincipalKey=*)' dn | grep -q '^dn'; then
    pwfile=$(mktemp /tmp/admin.XXXXXX)
    ipabuild_secret admin-password >"$pwfile"
    ldappasswd -Q -Y EXTERNAL -H "$ldapi" -T "$pwfile" "$admin_dn" >/dev/null ||
        { rm -f "$pwfile"; ipabuild_die "could not set admin's password"; }
    rm -f "$pwfile"
    ipabuild_log "admin@$IPA_REALM has its keys (ipa-pwd-extop)"
fi

# The KDC's service entry under the server's master entry (ipa-services.ldif), where the
# ca service publishes the PKINIT certificate and `ipa pkinit-status` looks.
kdc_entry="cn=KDC,cn=$IPA_SERVER,cn=masters,cn=ipa,cn=etc,$IPA_SUFFIX"

# PKINIT (anonymous PKINIT: FAST armor, `kinit -n`): the certificate the ca service had
# Dogtag issue for the key derived from kdc-pkinit-key-seed, and the IPA CA as anchor.
keys() { python3 /usr/local/lib/ipabuild/derived_keys.py "$@"; }
pkinit_files() {  # $1: the directory to write kdc.crt, kdc.key and ca.pem into
    local found
    found=$(directory -b "$kdc_entry" -s base 'userCertificate;binary')
    # None yet: say so without starting Python (this runs every second until PKINIT is on).
    case "$found" in *"userCertificate;binary::"*) ;; *) return 1 ;; esac
    mkdir -p "$1"
    printf '%s\n' "$found" | keys select kdc-pkinit-key-seed kdc-pkinit "$1/kdc.crt" || return 1
    keys key kdc-pkinit-key-seed kdc-pkinit "$1/kdc.key" || return 1
    # Every valid CA certificate, newest first: after the CA's renewal, old and new.
    directory -b "cn=CAcert,cn=ipa,cn=etc,$IPA_SUFFIX" -s base 'cACertificate;binary' |
        python3 /usr/local/lib/ipabuild/derived_keys.py anchors "$1/ca.pem"
}
kdc_conf() {  # $1: on | off
    local lines=""
    [ "$1" = on ] && lines="pkinit_identity = FILE:$run/kdc.crt,$run/kdc.key\\n        pkinit_anchors = FILE:$run/ca.pem\\n        pkinit_pool = FILE:$run/ca.pem\\n        pkinit_indicator = pkinit"
    sed -e "s#@RUN@#$run#" -e "s#^\( *\)\# @PKINIT@.*#\1$lines#" /usr/share/ipabuild/kdc.conf.in >"$run/kdc.conf"
}
served() {  # $1: on | off, what krb5kdc serves, for the health check: written once it runs
    echo "$1" >"$run/pkinit"
}
pkinit_enabled() {  # FreeIPA's pkinitEnabled marker, what `ipa pkinit-status` reads
    printf 'dn: %s\nchangetype: modify\nadd: ipaConfigString\nipaConfigString: pkinitEnabled\n' \
        "$kdc_entry" | ldapmodify -Q -Y EXTERNAL -H "$ldapi" >/dev/null 2>&1 || true
}

# OTP (FreeIPA's ipa-otpd.socket + ipa-otpd@.service): the KDC's OTP preauth sends a RADIUS
# request per login to this socket; each connection gets its own ipa-otpd on stdin/stdout
# (Accept=true), which reads the user's tokens over LDAPI and checks password+code by a
# bind as the user (389-ds's ipa-pwd-extop). systemd-socket-activate passes on only the
# variables named with -E.
rm -f "$run/DEFAULT.socket"
ipabuild_log "OTP: ipa-otpd per connection on $run/DEFAULT.socket"
systemd-socket-activate --listen="$run/DEFAULT.socket" --accept --inetd \
    -E LC_ALL=C.UTF-8 -E KRB5_CONFIG /usr/libexec/ipa/ipa-otpd "$ldapi" &

ipabuild_log "starting kadmind (kpasswd 8464, kadmin 8749) and krb5kdc for $IPA_REALM (8088)"
/usr/sbin/kadmind -nofork &
# krb5kdc reads its PKINIT identity only at start. On a new stack the KDC starts before
# the CA, so without a certificate (password logins only); later the ca service's renewer
# publishes renewed certificates beside the old ones. So krb5kdc runs as this shell's
# child, and every few seconds until PKINIT is on, then every IPABUILD_CERT_POLL seconds
# (default 300), the newest valid certificate for the KDC's key is fetched aside; when
# it differs from the one served, it replaces it (renamed into place) and krb5kdc
# restarts (a fraction of a second; its state is all in the directory).
poll=${IPABUILD_CERT_POLL:-300}
if pkinit_files "$run"; then
    kdc_conf on && served on && pkinit_enabled
    ipabuild_log "PKINIT on: $(openssl x509 -in "$run/kdc.crt" -noout -subject -serial -enddate | tr '\n' ' ')"
    interval=$poll
else
    kdc_conf off && served off
    ipabuild_log "PKINIT off until the ca service publishes the KDC's certificate at $kdc_entry"
    # Every second: on a new stack the switch (a krb5kdc restart) then falls within the
    # CA's last seconds of setup and http's start, before `ipabuild up` reports the stack
    # healthy, not after, where a client's first kinit would meet it (seen at a 5 s poll).
    interval=1
fi
# krb5kdc (ipa-kdb) reads the realm's master key from the directory when it starts and
# gives up for good when LDAPI does not answer: start it only once the realm answers (on
# a new stack ldap restarts once, to serve its IPA certificate, just as the KDC's own
# certificate arrives).
start_krb5kdc() {
    local tries=0
    until directory -b "$realm_dn" -s base dn >/dev/null 2>&1 || [ "$tries" -ge 240 ]; do
        sleep 0.5
        tries=$((tries + 1))
    done
    /usr/sbin/krb5kdc -n &
    kdc=$!
}
start_krb5kdc
trap 'kill "$kdc" 2>/dev/null; wait "$kdc"; exit 0' TERM INT  # a clean stop, as with exec
while kill -0 "$kdc" 2>/dev/null; do
    # Wake for the next look or as soon as krb5kdc ends (then this container ends with
    # it and its restart policy starts it again, as when krb5kdc ran by exec).
    sleep "$interval" & sleeper=$!
    wait -n "$kdc" "$sleeper" || true
    kill -0 "$kdc" 2>/dev/null || { kill "$sleeper" 2>/dev/null; break; }
    pkinit_files "$run/next" 2>/dev/null || continue
    # A new stack: the CA publishes this certificate a moment before ldap's own, for
    # which ldap restarts; switch after that restart (at most 2 minutes' wait), not
    # during it.
    if [ "$(cat "$run/pkinit")" = off ] && [ "${held:=0}" -lt $((120 / interval)) ] &&
            ! openssl s_client -connect "${ready%%:*}:${ready##*:}" -starttls ldap \
              -CAfile "$run/next/ca.pem" -verify_return_error </dev/null >/dev/null 2>&1; then
        held=$((held + 1))
        continue
    fi
    if [ "$(cat "$run/pkinit")" = on ] && cmp -s "$run/next/kdc.crt" "$run/kdc.crt" &&
            cmp -s "$run/next/ca.pem" "$run/ca.pem"; then
        continue
    fi
    for file in kdc.key ca.pem kdc.crt; do mv -f "$run/next/$file" "$run/$file"; done
    kdc_conf on && pkinit_enabled
    ipabuild_log "PKINIT certificate $(openssl x509 -in "$run/kdc.crt" -noout -serial -enddate | tr '\n' ' '): restarting krb5kdc to serve it"
    kill "$kdc"; wait "$kdc" || true
    start_krb5kdc
    served on  # the health check says "settling" until then (healthcheck.sh)
    interval=$poll
done
wait "$kdc"
