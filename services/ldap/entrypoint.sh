#!/bin/bash
# 389-ds under any UID with GID 0 with FreeIPA's directory: on first start create the
# instance on the empty /data volume, then let FreeIPA's installer steps make it an IPA
# directory (ipa_directory.py init); afterwards start the existing instance, first
# applying FreeIPA's updates when the image's framework is newer than the volume's.
set -euo pipefail
IPABUILD_SERVICE=ldap
. /usr/local/lib/ipabuild/lib.sh

instance=${IPA_REALM//./-}   # FreeIPA's server ID: ipa-kdb and ipaldap derive it too
data=/data
config=/etc/dirsrv/slapd-$instance   # a link into the volume
marker=$data/.ipabuild-initialised
# On the volume only the kdc shares; FreeIPA (ipaplatform, ipa-kdb) is built to look here.
socket=/run/ipa-ldapi/slapd-$instance.socket
ldapi_url="ldapi://$(printf '%s' "$socket" | sed 's#/#%2F#g')"
ipa_directory() { python3 /usr/local/lib/ipabuild/ipa_directory.py "$@"; }

ipabuild_ensure_user
umask 0007
mkdir -p /tmp/ipa-directory

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
    # ns-slapd runs under slapd_tls.py, which installs the certificate the IPA CA issues
    # for ldap (once the ca service runs) and restarts ns-slapd to serve it.
    # TLS (on $secure_port) starts with the IPA CA's first certificate for ldap.
    SLAPD_SECURE_PORT=$secure_port \
        exec python3 /usr/local/lib/ipabuild/slapd_tls.py "$config" "$ldapi_url" -- \
        /usr/sbin/ns-slapd -D "$config" -i "$data/run/slapd-$instance.pid" -d 266354688
}

init_port=13389   # instance.inf's port: nobody outside expects it
secure_port=3636  # the spec's ldaps port

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
    local secret_file inf
    secret_file=$(mktemp /tmp/dm.XXXXXX)
    ipabuild_secret ldap-dm-password >"$secret_file"
    inf=$(mktemp /tmp/instance.XXXXXX.inf)
    # The inf holds the password only for dscreate's lifetime, in a 0600 file on tmpfs.
    sed -e "s/@INSTANCE@/$instance/g" -e "s/@USER@/$(id -un)/" -e "s/@GROUP@/$(id -gn)/" \
        -e "s/@DM_PASSWORD@/$(sed 's/[&/\]/\\&/g' "$secret_file")/" \
        /usr/share/ipabuild/instance.inf.in >"$inf"
    ipabuild_log "creating instance '$instance' under $data as UID $(id -u) GID $(id -g)"
    mkdir -p "$data/config" "$data/db" "$data/etc/default" "$data/var-lib-ipa/sysrestore" \
        "$data/var-lib-ipa/sysupgrade" "$data/log/ipa"
    # /etc/dirsrv is a link to $data/etc/dirsrv: the instance's config and its NSS
    # database live on the volume, never in the image.
    cp -r /usr/share/ipabuild/dirsrv-etc "$data/etc/dirsrv"
    # lib389 uses container paths (ldapi URI, no systemd, no pid file under /run) only
    # when this file exists; configparser reads it, so '%' is written '%%'.
    printf '[localhost]\nldapi = %s\n' "$(printf '%s' "$ldapi_url" | sed 's/%/%%/g')" \
        >"$data/config/container.inf"
    dscreate -j from-file "$inf" >&2 || { rm -f "$inf" "$secret_file"; \
        ipabuild_die "dscreate failed; the log above says why"; }
    rm -f "$inf" "$secret_file"
    # FreeIPA's certmap.conf step replaces the file dscreate wrote read-only.
    chmod u+w "$config/certmap.conf"
    ipabuild_log "instance '$instance' created; FreeIPA's directory steps follow"
    ipa_directory init || ipabuild_die "FreeIPA's directory setup failed (its step is named above)"
    # Only now may clients reach the directory on its real port.
    sed -i "s/^nsslapd-port: $init_port\$/nsslapd-port: 3389/" "$config/dse.ldif"
    grep -q '^nsslapd-port: 3389$' "$config/dse.ldif" || ipabuild_die "could not set port 3389"
    date -u +%Y-%m-%dT%H:%M:%SZ >"$marker"
    ipabuild_log "IPA directory '$instance' ready"
}

if ! check_existing_data; then
    initialise
elif [ ! -e "$marker" ]; then
    ipabuild_die "instance on $data was never fully initialised (no $marker); remove the" \
        "volume and start again"
else
    ipabuild_log "starting existing instance '$instance' from $data"
    ipa_directory upgrade || ipabuild_die "FreeIPA's update of the existing directory failed"
fi
start_foreground
