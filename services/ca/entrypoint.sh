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
volumes=(/etc/pki /var/lib/pki /var/log/pki)
marker=/etc/pki/.ipabuild-initialised
cs_cfg=/etc/pki/$instance/ca/CS.cfg
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
    mkdir -p "/var/log/pki/$instance/ca" "/var/lib/pki/$instance/work" "/var/lib/pki/$instance/temp"
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
    # Tomcat as ca_run.py's child, IPA's side of the CA (ipa_ca.py, the renewer) beside
    # it, and the restarts that install renewed system certificates: ca_run.py says how.
    exec python3 /usr/local/lib/ipabuild/ca_run.py
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

mode_run() {
    ipabuild_ensure_user
    if ! initialised; then
        # compose starts the daemon beside its init (nothing there waits for an init to
        # finish): look every second, so that Tomcat starts as soon as the init is done.
        local waited=0
        until initialised; do
            if [ $((waited % 60)) -eq 0 ]; then
                ipabuild_log "CA not initialised (no $marker): $init_hint; waiting for it"
            fi
            sleep 1
            waited=$((waited + 1))
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
