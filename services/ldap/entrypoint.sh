#!/bin/bash
# 389-ds under any UID with GID 0: create the instance on an empty /data volume on first
# start (idempotently), start from the existing instance afterwards, run in the foreground.
set -euo pipefail
IPABUILD_SERVICE=ldap
. /usr/local/lib/ipabuild/lib.sh

instance=${LDAP_INSTANCE:-localhost}
data=/data
config=/etc/dirsrv/slapd-$instance   # a link into the volume
marker=$data/.ipabuild-initialised
ldapi_url="ldapi://$(printf '%s' "$data/run/slapd-$instance.socket" | sed 's#/#%2F#g')"

ipabuild_ensure_user
umask 0007

start_foreground() {
    mkdir -p "$data/run/lock" "$data/log"
    if [ -s "${IPABUILD_SECRETS_DIR:-/run/secrets}/ldap-service-password" ]; then
        mkdir -p /tmp/ipabuild-ldap
        ipabuild_keytab "ldap/ldap.$IPA_DOMAIN@$IPA_REALM" ldap-service-password \
            /tmp/ipabuild-ldap/ldap.keytab
        export KRB5_KTNAME=FILE:/tmp/ipabuild-ldap/ldap.keytab
        ipabuild_log "SASL/GSSAPI enabled for ldap/ldap.$IPA_DOMAIN@$IPA_REALM"
    else
        ipabuild_log "no ldap-service-password secret: SASL/GSSAPI binds disabled"
    fi
    exec /usr/sbin/ns-slapd -D "$config" -i "$data/run/slapd-$instance.pid" -d 266354688
}

init_port=13389   # instance.inf's port: nobody outside expects it

dm_bind_ok() {
    ldapsearch -LLL -x -H ldap://127.0.0.1:$init_port -D "cn=Directory Manager" -y "$1" \
        -b "" -s base namingContexts >/dev/null 2>&1
}

check_existing_data() {
    if [ -e "$config/dse.ldif" ]; then
        # 389-ds/NSS files are owner-only (dse.ldif 0640, key4.db 0600): same UID only.
        [ "$(stat -L -c %u "$config/dse.ldif")" = "$(id -u)" ] && return 0
        ipabuild_die "an instance exists on $data but UID $(id -u) cannot use it (owner" \
            "$(stat -L -c %u:%g "$config/dse.ldif")); run with the UID that created it or" \
            "re-own the volume (podman -v NAME:/data:U)"
    fi
    if [ -n "$(ls -A "$data" 2>/dev/null | grep -v '^lost+found$' || true)" ]; then
        ipabuild_die "$data holds data that is not a 389-ds instance of ipabuild; refusing" \
            "to overwrite it (mount an empty volume, or the volume of an existing instance)"
    fi
    [ -w "$data" ] || ipabuild_die "$data is not writable by UID $(id -u) GID $(id -g)"
    return 1
}

initialise() {
    local secret_file inf pidfile pid tries=0
    secret_file=$(mktemp /tmp/dm.XXXXXX)
    ipabuild_secret ldap-dm-password >"$secret_file"
    inf=$(mktemp /tmp/instance.XXXXXX.inf)
    # The inf holds the password only for dscreate's lifetime, in a 0600 file on tmpfs.
    sed -e "s/@INSTANCE@/$instance/g" -e "s/@USER@/$(id -un)/" -e "s/@GROUP@/$(id -gn)/" \
        -e "s/@DM_PASSWORD@/$(sed 's/[&/\]/\\&/g' "$secret_file")/" \
        /usr/share/ipabuild/instance.inf.in >"$inf"
    ipabuild_log "creating instance '$instance' under $data as UID $(id -u) GID $(id -g)"
    mkdir -p "$data/config" "$data/db" "$data/etc/default"
    # /etc/dirsrv is a link to $data/etc/dirsrv: the instance's config and dscreate's
    # self-signed CA (ssca) live on the volume, never in the image.
    cp -r /usr/share/ipabuild/dirsrv-etc "$data/etc/dirsrv"
    # lib389 uses container paths (ldapi URI, no systemd, no pid file under /run) only
    # when this file exists; configparser reads it, so '%' is written '%%'.
    printf '[localhost]\nldapi = %s\n' "$(printf '%s' "$ldapi_url" | sed 's/%/%%/g')" \
        >"$data/config/container.inf"
    dscreate -j from-file "$inf" >&2 || { rm -f "$inf" "$secret_file"; \
        ipabuild_die "dscreate failed; the log above says why"; }
    rm -f "$inf"

    pidfile=$data/run/slapd-$instance.pid
    mkdir -p "$data/run/lock"
    /usr/sbin/ns-slapd -D "$config" -i "$pidfile" &
    # dscreate's temporary instance answers before the final password holds: wait for
    # two Directory Manager binds in a row.
    until dm_bind_ok "$secret_file" && dm_bind_ok "$secret_file"; do
        tries=$((tries + 1))
        [ "$tries" -lt 60 ] || ipabuild_die "instance did not accept the Directory Manager bind"
        sleep 0.5
    done
    ldapmodify -x -H ldap://127.0.0.1:$init_port -D "cn=Directory Manager" -y "$secret_file" \
        -f /usr/share/ipabuild/kerberos.ldif >/dev/null
    ldapadd -x -c -H ldap://127.0.0.1:$init_port -D "cn=Directory Manager" -y "$secret_file" \
        -f /usr/share/ipabuild/base-tree.ldif >/dev/null
    rm -f "$secret_file"
    # ns-slapd daemonised itself: stop it through its pid file and wait until it is gone.
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ]; then
        kill -TERM "$pid"
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
    # Only now may clients reach the directory on its real port.
    sed -i "s/^nsslapd-port: $init_port\$/nsslapd-port: 3389/" "$config/dse.ldif"
    grep -q '^nsslapd-port: 3389$' "$config/dse.ldif" || ipabuild_die "could not set port 3389"
    date -u +%Y-%m-%dT%H:%M:%SZ >"$marker"
    ipabuild_log "instance '$instance' created; Kerberos schema and base tree loaded"
}

if ! check_existing_data; then
    initialise
elif [ ! -e "$marker" ]; then
    ipabuild_die "instance on $data was never fully initialised (no $marker); remove the" \
        "volume and start again"
else
    ipabuild_log "starting existing instance '$instance' from $data"
fi
start_foreground
