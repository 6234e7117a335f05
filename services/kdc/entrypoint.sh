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
# krb5kdc with PKINIT (anonymous PKINIT: FAST armor, `kinit -n`) once the ca service has
# published the KDC's certificate, restarted for a renewed one: kdc_pkinit.py says how.
exec python3 /usr/local/lib/ipabuild/kdc_pkinit.py "$run" -- /usr/sbin/krb5kdc -n
