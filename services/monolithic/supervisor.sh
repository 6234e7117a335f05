#!/bin/bash
# The monolith's supervisor: 389-ds, krb5kdc, Dogtag (Tomcat) and httpd in one container,
# started as root inside it, the way the upstream FreeIPA container runs them under
# systemd. Only ever run in a user namespace of its own (container root is an
# unprivileged host UID). The daemons switch users themselves as on a FreeIPA server:
# ns-slapd to dirsrv, httpd's workers to www-data, Tomcat to pkiuser.
#
# First start (empty /data): create the 389-ds instance, load the Kerberos schema and the
# base tree, create the realm, run pkispawn. Every start: derive the service keytabs from
# the mounted secrets, ensure the principals, start the four daemons, then wait. When
# one daemon dies the others are stopped and the container exits non-zero; SIGTERM stops
# them all (httpd, Tomcat, krb5kdc first, the directory last) and exits 0.
set -euo pipefail
IPABUILD_SERVICE=monolith
. /usr/local/lib/ipabuild/lib.sh

data=/data
run=/run/ipabuild
slapd_config=/etc/dirsrv/slapd-localhost          # a link into /data
slapd_pidfile=$data/run/slapd-localhost.pid
ca_instance=pki-tomcat
ca_hostname=ca.$IPA_DOMAIN
ca_base_dn=${CA_LDAP_BASE_DN:-o=ipaca}
marker_ldap=$data/.ipabuild-ldap
marker_kdc=$data/.ipabuild-kdc
marker_ca=$data/.ipabuild-ca
marker_all=$data/.ipabuild-initialised
dm_file=$run/dm-password                          # 0600 on tmpfs, for ldap tools' -y

declare -A pids=()

[ "$(id -u)" = 0 ] || ipabuild_die "the monolith's supervisor starts its daemons as root" \
    "inside a user namespace (ipabuild up --mode monolithic); UID $(id -u) cannot"

umask 0022
mkdir -p "$run/http" /run/lock /run/dirsrv /run/apache2 /run/lock/apache2
install -m 0600 /dev/null "$dm_file"
ipabuild_secret ldap-dm-password >"$dm_file"

# --- helpers ------------------------------------------------------------------------

dm_bind_ok() {
    ldapsearch -LLL -x -H ldap://127.0.0.1:3389 -D "cn=Directory Manager" -y "$dm_file" \
        -b "" -s base namingContexts >/dev/null 2>&1
}

wait_for() {  # wait_for WHAT SECONDS COMMAND...
    local what=$1 limit=$2 waited=0
    shift 2
    until "$@"; do
        [ "$waited" -lt "$limit" ] || ipabuild_die "$what: not ready after ${limit}s"
        [ $((waited % 10)) -ne 0 ] || ipabuild_log "waiting for $what"
        sleep 1
        waited=$((waited + 1))
    done
}

# configparser value: '%' is its interpolation character.
cfg_value() { printf '%s' "$1" | sed -e 's/%/%%/g' -e 's/[&|\\]/\\&/g'; }

stamp() { date -u +%Y-%m-%dT%H:%M:%SZ >"$1"; }

# --- the existing data --------------------------------------------------------------

check_data() {
    if [ -e "$marker_all" ]; then
        ipabuild_log "starting from the existing state on $data (initialised $(cat "$marker_all"))"
        return 0
    fi
    if [ -e "$slapd_config/dse.ldif" ] && [ ! -e "$marker_ldap" ]; then
        ipabuild_die "a 389-ds instance exists on $data but was never fully initialised;" \
            "remove the volume and start again"
    fi
    if [ ! -e "$marker_ldap" ] &&
        [ -n "$(ls -A "$data" 2>/dev/null | grep -v '^lost+found$' || true)" ]; then
        ipabuild_die "$data holds data that is not the monolith's; refusing to overwrite it" \
            "(mount an empty volume, or the volume of an existing monolith)"
    fi
    ipabuild_log "first start: initialising on $data (directory, realm, CA; a few minutes)"
}

# --- 389-ds -------------------------------------------------------------------------

create_directory() {
    local inf ldapi_url
    inf=$(umask 077; mktemp /tmp/instance.XXXXXX.inf)
    sed -e "s/@DM_PASSWORD@/$(sed 's/[&/\]/\\&/g' "$dm_file")/" \
        /usr/share/ipabuild/instance.inf.in >"$inf"
    mkdir -p "$data/config" "$data/etc/default"
    cp -a /usr/share/ipabuild/dirsrv-etc "$data/etc/dirsrv"   # keeps dirsrv:dirsrv 0750
    # lib389 uses container paths (ldapi URI, no systemd) only when this file exists;
    # configparser reads it, so '%' is written '%%'.
    ldapi_url="ldapi://$(printf '%s' "$data/run/slapd-localhost.socket" | sed 's#/#%2F#g')"
    printf '[localhost]\nldapi = %s\n' "$(printf '%s' "$ldapi_url" | sed 's/%/%%/g')" \
        >"$data/config/container.inf"
    ipabuild_log "creating the 389-ds instance (suffix $IPA_SUFFIX)"
    dscreate -j from-file "$inf" >&2 || { rm -f "$inf"; ipabuild_die "dscreate failed; see above"; }
    rm -f "$inf"
}

start_directory() {
    mkdir -p "$data/run/lock" "$data/log"
    chown dirsrv:dirsrv "$data/run" "$data/run/lock" "$data/log"
    (
        export KRB5_KTNAME=FILE:$run/ldap.keytab
        exec /usr/sbin/ns-slapd -D "$slapd_config" -i "$slapd_pidfile" -d 266354688
    ) &
    pids[ns-slapd]=$!
    wait_for "the directory to accept the Directory Manager bind" 120 dm_bind_ok
    # During first start a temporary instance may answer before the final password holds.
    wait_for "a second Directory Manager bind" 30 dm_bind_ok
    ipabuild_log "ns-slapd is up on 3389 (pid ${pids[ns-slapd]})"
}

populate_directory() {
    ldapmodify -x -H ldap://127.0.0.1:3389 -D "cn=Directory Manager" -y "$dm_file" \
        -f /usr/share/ipabuild/kerberos.ldif >/dev/null
    ldapadd -x -c -H ldap://127.0.0.1:3389 -D "cn=Directory Manager" -y "$dm_file" \
        -f /usr/share/ipabuild/base-tree.ldif >/dev/null || true
    stamp "$marker_ldap"
    ipabuild_log "Kerberos schema and base tree loaded"
}

# --- Kerberos -----------------------------------------------------------------------

create_realm() {
    local master
    master=$(ipabuild_secret kdc-master-key)
    mkdir -p "$data/krb5kdc"
    chmod 0700 "$data/krb5kdc"
    ipabuild_log "creating realm $IPA_REALM under $IPA_SUFFIX"
    printf '%s\n%s\n' "$master" "$master" |
        kdb5_ldap_util -H ldap://127.0.0.1:3389 -D "cn=Directory Manager" -w "$(cat "$dm_file")" \
            create -subtrees "$IPA_SUFFIX" -r "$IPA_REALM" -s >/dev/null
    printf '%s\n%s\n' "$(cat "$dm_file")" "$(cat "$dm_file")" |
        kdb5_ldap_util -H ldap://127.0.0.1:3389 stashsrvpw -f "$data/krb5kdc/ldap.stash" \
            "cn=Directory Manager" >/dev/null
    stamp "$marker_kdc"
}

# Keys derive from the same secrets the principals were created with: no keytab is kept.
write_keytabs() {
    ipabuild_keytab "ldap/ldap.$IPA_DOMAIN@$IPA_REALM" ldap-service-password "$run/ldap.keytab"
    chown dirsrv:dirsrv "$run/ldap.keytab" && chmod 0400 "$run/ldap.keytab"
    ipabuild_keytab "HTTP/http.$IPA_DOMAIN@$IPA_REALM" http-service-password "$run/http/http.keytab"
    chown www-data:www-data "$run/http/http.keytab" && chmod 0400 "$run/http/http.keytab"
}

kdc_up() { (exec 3<>/dev/tcp/127.0.0.1/8088) 2>/dev/null; }

start_kdc() {
    /usr/sbin/krb5kdc -n &
    pids[krb5kdc]=$!
    wait_for "krb5kdc on 8088" 30 kdc_up
    ipabuild_log "krb5kdc is up on 8088 tcp+udp (pid ${pids[krb5kdc]})"
}

# --- Dogtag -------------------------------------------------------------------------

create_ca() {
    local cfg admin p12
    admin=$(ipabuild_secret ca-admin-password)
    p12=$(ipabuild_secret ca-pkcs12-password)
    mkdir -p "$data/pki/etc" "$data/pki/lib" "$data/pki/log"
    cp -an /usr/share/ipabuild/etc-pki/. "$data/pki/etc/"
    mkdir -p "$data/pki/etc/dogtag" "$data/pki/etc/systemd/pki-tomcatd.target.wants"
    if ! getent hosts "$ca_hostname" >/dev/null; then
        printf '127.0.0.1 %s\n' "$ca_hostname" >>/etc/hosts ||
            ipabuild_die "$ca_hostname does not resolve and /etc/hosts is not writable"
    fi
    cfg=$(umask 077; mktemp /tmp/pkispawn.XXXXXX.cfg)
    sed -e "s|@CA_HOSTNAME@|$(cfg_value "$ca_hostname")|g" \
        -e "s|@LDAP_HOST@|127.0.0.1|g" -e "s|@LDAP_PORT@|3389|g" \
        -e "s|@BASE_DN@|$(cfg_value "$ca_base_dn")|g" \
        -e "s|@DM_PASSWORD@|$(cfg_value "$(cat "$dm_file")")|g" \
        -e "s|@ADMIN_PASSWORD@|$(cfg_value "$admin")|g" \
        -e "s|@PKCS12_PASSWORD@|$(cfg_value "$p12")|g" \
        /usr/share/ipabuild/pkispawn.cfg.in >"$cfg"
    unset admin p12
    ipabuild_log "running pkispawn (database $ca_base_dn in the local directory; about a minute)"
    if ! pkispawn -s CA -f "$cfg" >&2; then
        rm -f "$cfg"
        tail -n 50 "/tmp/ipabuild-ca-tomcat-$ca_instance.log" >&2 2>/dev/null || true
        /usr/local/bin/systemctl stop "pki-tomcatd@$ca_instance.service" || true
        ipabuild_die "pkispawn failed; its log is under /var/log/pki (pki-ca-spawn.*.log)"
    fi
    rm -f "$cfg"
    /usr/local/bin/systemctl stop "pki-tomcatd@$ca_instance.service"
    stamp "$marker_ca"
    ipabuild_log "CA instance '$ca_instance' created"
}

# What pki-tomcatd@.service does: environment files, pki-server upgrade/migrate and
# pkidaemon start as root, then Tomcat as pkiuser (the unit's User=).
start_ca() {
    mkdir -p "/var/log/pki/$ca_instance/ca" "/var/lib/pki/$ca_instance/work" "/var/lib/pki/$ca_instance/temp"
    (
        . /usr/local/lib/ipabuild/pki-tomcat-env.sh "$ca_instance"
        /usr/sbin/pki-server upgrade "$ca_instance" >&2
        /usr/sbin/pki-server migrate "$ca_instance" --tomcat 9.0.00 >&2
        /usr/bin/pkidaemon start "$ca_instance" >&2
        exec setpriv --reuid=pkiuser --regid=pkiuser --init-groups \
            /bin/sh /usr/share/pki/tomcat-start.sh
    ) </dev/null &
    pids[tomcat]=$!
    ipabuild_log "Tomcat (Dogtag) starting on 9080/9443 as pkiuser (pid ${pids[tomcat]})"
}

# --- httpd --------------------------------------------------------------------------

start_httpd() {
    if [ -r /run/secrets/http-tls-crt ] && [ -r /run/secrets/http-tls-key ]; then
        cp /run/secrets/http-tls-crt "$run/http/tls.crt"
        (umask 077; cp /run/secrets/http-tls-key "$run/http/tls.key")
    else
        (umask 077; openssl req -x509 -newkey rsa:2048 -nodes -days 365 \
            -subj "/CN=http.$IPA_DOMAIN" -keyout "$run/http/tls.key" \
            -out "$run/http/tls.crt" 2>/dev/null)
    fi
    (
        set +u
        . /etc/apache2/envvars
        set -u
        export APACHE_RUN_DIR=$run/http APACHE_PID_FILE=$run/http/httpd.pid \
            APACHE_LOCK_DIR=$run/http
        exec /usr/sbin/apache2 -DFOREGROUND
    ) </dev/null &
    pids[httpd]=$!
    ipabuild_log "httpd starting on 8080/8443 (pid ${pids[httpd]}; workers as www-data)"
}

# --- stopping -----------------------------------------------------------------------

stop_pid() {  # stop_pid NAME: TERM, then wait (KILL after 20 s)
    local name=$1 pid=${pids[$1]:-} waited=0
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        [ "$waited" -lt 40 ] || { kill -KILL "$pid" 2>/dev/null || true; }
        sleep 0.5
        waited=$((waited + 1))
    done
    unset "pids[$name]"
}

stop_all() {
    trap - TERM INT
    ipabuild_log "stopping: ${!pids[*]}"
    local name
    for name in httpd tomcat krb5kdc; do
        [ -z "${pids[$name]:-}" ] || kill -TERM "${pids[$name]}" 2>/dev/null || true
    done
    for name in httpd tomcat krb5kdc ns-slapd; do stop_pid "$name"; done
    rm -f "$dm_file"
    ipabuild_log "all daemons stopped"
}

trap 'stop_all; exit 0' TERM INT

# --- main ---------------------------------------------------------------------------

check_data
[ -e "$marker_ldap" ] || create_directory
write_keytabs
start_directory
[ -e "$marker_ldap" ] || populate_directory
[ -e "$marker_kdc" ] || create_realm
ipabuild_ensure_principals /usr/share/ipabuild/principals
start_kdc
[ -e "$marker_ca" ] || create_ca
start_ca
start_httpd
[ -e "$marker_all" ] || { stamp "$marker_all"; ipabuild_log "first start complete"; }
ipabuild_log "supervising ${!pids[*]}"

while :; do
    wait -n || true
    for name in "${!pids[@]}"; do
        if ! kill -0 "${pids[$name]}" 2>/dev/null; then
            ipabuild_log "$name (pid ${pids[$name]}) exited; stopping the others"
            unset "pids[$name]"
            stop_all
            exit 1
        fi
    done
done
