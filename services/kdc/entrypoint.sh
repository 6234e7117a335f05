#!/bin/bash
# MIT krb5kdc under any UID with GID 0. The realm lives in the ldap service (kldap); this
# container keeps no state: stash files are rebuilt on tmpfs from mounted secrets.
set -euo pipefail
IPABUILD_SERVICE=kdc
. /usr/local/lib/ipabuild/lib.sh

run=/tmp/ipabuild-kdc
uri=${KDC_LDAP_URI:-ldap://ldap:3389}
hostport=${uri#ldap://}
host=${hostport%%:*}
port=${hostport##*:}
[ "$port" != "$hostport" ] || port=389
bind_dn="cn=Directory Manager"

ipabuild_ensure_user
umask 0077
mkdir -p "$run"
sed -e "s#@LDAP_URI@#$uri#" -e "s#@RUN@#$run#" /usr/share/ipabuild/kdc.conf.in >"$run/kdc.conf"
cp /usr/share/ipabuild/krb5.conf.in "$run/krb5.conf"
export KRB5_CONFIG=$run/krb5.conf KRB5_KDC_PROFILE=$run/kdc.conf

dm_password=$(ipabuild_secret ldap-dm-password)
master_key=$(ipabuild_secret kdc-master-key)

ipabuild_wait_tcp "$host" "$port" "the directory that stores realm $IPA_REALM"
# An open port is not a ready directory: 389-ds answers during its first-start setup
# before the final Directory Manager password holds. Wait for a real bind.
waited=0
until ldapsearch -LLL -x -H "$uri" -D "$bind_dn" -y <(printf '%s' "$dm_password") \
        -b "" -s base namingContexts >/dev/null 2>&1; do
    [ $((waited % 10)) -ne 0 ] || ipabuild_log "waiting for $uri to accept the Directory Manager bind"
    sleep 1
    waited=$((waited + 1))
done

# The KDC's LDAP bind password, stashed where kdc.conf says (stdin: never argv).
printf '%s\n%s\n' "$dm_password" "$dm_password" |
    kdb5_ldap_util -H "$uri" stashsrvpw -f "$run/ldap.stash" "$bind_dn" >/dev/null

realm_dn="cn=$IPA_REALM,cn=krbcontainer,$IPA_SUFFIX"
if ldapsearch -LLL -x -H "$uri" -D "$bind_dn" -y <(printf '%s' "$dm_password") \
        -b "$realm_dn" -s base dn >/dev/null 2>&1; then
    ipabuild_log "realm $IPA_REALM found in $uri; stashing the master key"
    printf '%s\n' "$master_key" | kdb5_util stash -f "$run/master.stash" >/dev/null
else
    ipabuild_log "creating realm $IPA_REALM under $IPA_SUFFIX in $uri"
    printf '%s\n%s\n' "$master_key" "$master_key" |
        kdb5_ldap_util -H "$uri" -D "$bind_dn" -w "$dm_password" \
            create -subtrees "$IPA_SUFFIX" -r "$IPA_REALM" -s >/dev/null
fi
unset dm_password master_key

ipabuild_ensure_principals /usr/share/ipabuild/principals

ipabuild_log "starting krb5kdc for $IPA_REALM (port 8088 tcp+udp)"
exec /usr/sbin/krb5kdc -n
