#!/bin/bash
# Dogtag PKI CA. Two modes:
#   run (default)  non-root, any UID with GID 0: wait for the ldap service, then run
#                  Tomcat in the foreground from the instance on the volumes; while no
#                  instance exists, say that the one-time init step is needed and wait.
#   init           the one-time initialisation (ca_init.py): pkispawn, patched to run as
#                  this same non-root UID with GID 0 (services/ca/patches/0003-...).
#                  Afterwards the files are usable by any UID, GID 0.
set -euo pipefail
IPABUILD_SERVICE=ca
. /usr/local/lib/ipabuild/lib.sh

instance=pki-tomcat
ldap_host=${CA_LDAP_HOST:-ldap}
ldap_port=${CA_LDAP_PORT:-3389}
base_dn=${CA_LDAP_BASE_DN:-o=ipaca}
volumes=(/etc/pki /var/lib/pki /var/log/pki)
marker=/etc/pki/.ipabuild-initialised
setup_marker=/tmp/ipabuild-ca/ipa-setup-done
tomcat_pid=/tmp/ipabuild-ca/tomcat.pid
restart_flag=/tmp/ipabuild-ca/restart-tomcat
start_timeout=${CA_START_TIMEOUT:-180}
ca_pem=/tmp/ipabuild-ca/ca.pem
cs_cfg=/etc/pki/$instance/ca/CS.cfg
ldap_why="the CA's database $base_dn lives in the ldap service"
init_hint="run the one-time init step (\`ipabuild-ca init\`, as the CA's own UID with GID 0)"

umask 0007

initialised() { [ -e "$marker" ] && [ -e "$cs_cfg" ]; }

# Files a previous run under another UID created owner-only (Dogtag makes logs 0640;
# CS.cfg is rewritten at start): chmod what we own, replace what we cannot write (the
# directories are group 0 g=u, so a copy may replace the file).
repair_permissions() {
    local file tmp
    find "${volumes[@]}" -xdev -user "$(id -u)" ! -type l -exec chmod g=u {} + 2>/dev/null || true
    while IFS= read -r -d '' file; do
        [ -r "$file" ] || ipabuild_die "$file is not readable by UID $(id -u) GID $(id -g);" \
            "re-own the volumes (podman -v NAME:PATH:U) or run 'init' again"
        tmp=$(mktemp "$file.ipabuild.XXXXXX")
        cat "$file" >"$tmp" && chmod g=u "$tmp" && mv -f "$tmp" "$file"
    done < <(find "${volumes[@]}" -xdev -type f ! -writable -print0 2>/dev/null)
}

run_tomcat() {
    ipabuild_log "starting CA instance '$instance' as UID $(id -u) GID $(id -g)"
    mkdir -p "/var/log/pki/$instance/ca" "/var/lib/pki/$instance/work" "/var/lib/pki/$instance/temp" \
        "${tomcat_pid%/*}"
    repair_permissions
    # What pki-tomcatd@.service does, minus `pki-server upgrade` (it re-chowns every file
    # to pkiuser; it runs in init only), minus `pki-server run` (its security manager
    # dies on logging.properties) and minus `pkidaemon start`, as Dogtag 11's own
    # container runs Tomcat: pkidaemon writes catalina.policy (read only under Tomcat's
    # security manager, which does not run here), validates a login banner (none is
    # configured) and archives CS.cfg on every start (a copy per restart on the volume);
    # 0.45 s of each start. Left: the environment files and catalina.sh run.
    . /usr/local/lib/ipabuild/pki-tomcat-env.sh "$instance"
    wait_for_database_in_tomcat
    cd "/var/lib/pki/$instance"
    # Tomcat runs as this shell's child so that IPA's side of the CA (ipa_ca.py) can be
    # set up once Dogtag answers; the shell passes SIGTERM/SIGINT on and exits with it.
    # The renewer stops Tomcat to install renewed system certificates (it leaves
    # $restart_flag): then they are installed while Tomcat is down and Tomcat starts again.
    local tomcat rc
    trap 'rm -f "$restart_flag"; kill -TERM "$tomcat" 2>/dev/null' TERM INT
    while true; do
        /usr/share/tomcat9/bin/catalina.sh run &
        tomcat=$! rc=0
        echo "$tomcat" >"$tomcat_pid"
        setup_ipa_side "$tomcat" &
        while kill -0 "$tomcat" 2>/dev/null; do
            wait "$tomcat" && rc=0 || rc=$?
        done
        [ -e "$restart_flag" ] || break
        rm -f "$restart_flag"
        ipabuild_log "Tomcat stopped to install renewed system certificates"
        python3 /usr/local/lib/ipabuild/renewer.py install-staged ||
            ipabuild_log "installing renewed certificates failed (the line above says why)"
        publish_ca_certificate  # the CA's own, if it was renewed: $ca_pem and cn=CAcert
        ipabuild_log "starting Tomcat again"
    done
    exit "$rc"
}

# IPA's certificates (RA agent, http and ldap TLS), profiles, the ipa CA entry and the
# default CA ACL (ipa_ca.py); the health check reports healthy only after it succeeded.
setup_ipa_side() {
    local tomcat=$1 rc=0
    rm -f "$setup_marker"
    # After ldap answers (Dogtag's start waits for that too), off Tomcat's critical path.
    if ! (wait_ldap_answers && publish_ca_certificate); then
        ipabuild_log "stopping: the CA certificate could not be published (above)"
        kill -TERM "$tomcat"
        return 0
    fi
    # ipa_ca.py starts at once and waits for Dogtag itself (0.25 s polls of getStatus),
    # so that Python's start overlaps Tomcat's.
    IPA_CA_START_TIMEOUT=$start_timeout python3 /usr/local/lib/ipabuild/ipa_ca.py setup || rc=$?
    case $rc in
        0) date -u +%Y-%m-%dT%H:%M:%SZ >"$setup_marker" ;;
        3)  # Dogtag does not retry a failed engine start: stop, so that the container
            # restarts (restart policy, or Kubernetes) and Dogtag starts again.
            ipabuild_log "Dogtag's CA subsystem is not running after ${start_timeout}s" \
                "(/var/log/pki/pki-tomcat/ca/debug.*.log says why); stopping to be restarted"
            kill -TERM "$tomcat"
            return 0 ;;
        4) return 0 ;;  # Tomcat stopped meanwhile
        *) ipabuild_log "IPA's CA setup failed (the line above says why); the CA stays unhealthy"
           return 0 ;;
    esac
    # The renewer (renewer.py, renewal.py): renews IPA's certificates and Dogtag's
    # before they expire, as certmonger does on a FreeIPA server, for as long as this
    # Tomcat runs. It never stops the CA; should it crash, it starts again a minute later.
    while kill -0 "$tomcat" 2>/dev/null; do
        python3 /usr/local/lib/ipabuild/renewer.py run ||
            ipabuild_log "the renewer stopped (exit $?); starting it again in 60s"
        sleep 60
    done
}

# FreeIPA's clients and servers find the IPA CA's certificate in the directory, at
# cn=CAcert,cn=ipa,cn=etc (what the installer's certstore writes): the http service reads
# it from there over GSSAPI, so the certificate it trusts is authenticated by Kerberos.
publish_ca_certificate() {
    local dn="cn=CAcert,cn=ipa,cn=etc,$IPA_SUFFIX" der pw rc=0
    local nick
    nick=$(sed -n 's/^ca\.signing\.nickname=//p' "$cs_cfg")
    der=$(certutil -L -d "/etc/pki/$instance/alias" -n "$nick" -r 2>/dev/null | base64 -w0) || true
    [ -n "$der" ] || ipabuild_die "no CA signing certificate '$nick' in /etc/pki/$instance/alias"
    mkdir -p "${ca_pem%/*}"
    printf '%s' "$der" | base64 -d | openssl x509 -inform der -out "$ca_pem"
    pw=$(umask 077; mktemp /tmp/dm.XXXXXX)
    ipabuild_secret ldap-dm-password >"$pw"
    # The entry is made by ldap's update files (19-ipabuild-ca-certificate.update).
    printf 'dn: %s\nchangetype: modify\nadd: cACertificate;binary\ncACertificate;binary:: %s\n' \
        "$dn" "$der" | ldapmodify -x -H "ldap://$ldap_host:$ldap_port" -D "cn=Directory Manager" \
        -y "$pw" >/dev/null 2>/tmp/ipabuild-ca-publish.err || rc=$?
    rm -f "$pw"
    case $rc in
        0) ipabuild_log "published the CA certificate at $dn" ;;
        20) ;;  # already there
        32) ipabuild_die "$dn does not exist: the ldap image predates it; start a newer" \
               "ldap image (its update files add the entry)" ;;
        *) ipabuild_die "publishing the CA certificate at $dn failed (ldapmodify exit $rc):" \
               "$(tr '\n' ' ' </tmp/ipabuild-ca-publish.err)" ;;
    esac
}

# Dogtag's engine gives up for good when its database does not answer at start ("Is the
# database up?"). Tomcat starts at once, and the ca context's start waits for a real LDAP
# answer (WaitForDatabase, compiled into the image), so that the JVM's start overlaps
# ldap's. The listener is named in the instance's ca.xml, once (volumes made by older
# images get it at their first start with this image).
wait_for_database_in_tomcat() {
    local xml="/etc/pki/$instance/Catalina/localhost/ca.xml"
    local listener='<Listener className="org.ipabuild.tomcat.WaitForDatabase"/>'
    grep -q 'org.ipabuild.tomcat.WaitForDatabase' "$xml" && return 0
    grep -q '^<Context .*>$' "$xml" ||
        ipabuild_die "$xml has no <Context ...> line to add the database wait to"
    sed -i "s|^\(<Context .*>\)$|\1\n  $listener|" "$xml"
    grep -q 'org.ipabuild.tomcat.WaitForDatabase' "$xml" ||
        ipabuild_die "adding the database wait to $xml failed"
}

# The same wait, in this shell: a real LDAP answer, not just an open port.
wait_ldap_answers() {
    local ticks=0
    ipabuild_wait_tcp "$ldap_host" "$ldap_port" "$ldap_why"
    until ldapsearch -x -LLL -o nettimeout=5 -H "ldap://$ldap_host:$ldap_port" -s base -b "" \
            namingContexts >/dev/null 2>&1; do
        [ $((ticks % 120)) -eq 0 ] && ipabuild_log "waiting for ldap to answer LDAP ($ldap_why)"
        sleep 0.25
        ticks=$((ticks + 1))
    done
}

mode_run() {
    ipabuild_ensure_user
    if ! initialised; then
        local waited=0
        until initialised; do
            if [ $((waited % 60)) -eq 0 ]; then
                ipabuild_log "CA not initialised (no $marker): $init_hint; waiting for it"
            fi
            sleep 5
            waited=$((waited + 5))
        done
        ipabuild_log "the init step has finished; starting"
    fi
    run_tomcat
}

case ${1:-run} in
    run) mode_run ;;
    init)  # pkispawn (ca_init.py says how); it needs a passwd entry for this UID
        ipabuild_ensure_user
        exec python3 /usr/local/lib/ipabuild/ca_init.py ;;
    -h|--help|help)
        echo "usage: ipabuild-ca [run|init]  (run: the CA; init: one-time pkispawn; both non-root, any UID with GID 0)" ;;
    *) ipabuild_die "unknown mode '$1' (use run or init)" ;;
esac
