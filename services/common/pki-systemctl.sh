#!/bin/bash
# A tiny `systemctl` for pkispawn inside a container (no systemd): pkispawn starts, stops
# and queries pki-tomcatd@<instance>.service while it configures the CA. `start` does
# what the unit does (EnvironmentFiles, pki-server upgrade/migrate, pkidaemon start) and
# runs Tomcat in the background in its own process group, as the unit's User= (pkiuser
# when run as root, as the monolith does; as itself when not, as the split's CA init
# does, whose instance belongs to its own UID and group 0); `stop` ends that process
# group. The non-root runtime starts Tomcat itself.
set -euo pipefail
IPABUILD_SERVICE=ca-systemctl
. /usr/local/lib/ipabuild/lib.sh

rundir=/tmp/ipabuild-ca-systemctl  # /run is root's tmpfs in a non-root container
args=()
for arg in "$@"; do
    case $arg in -*) ;; *) args+=("$arg") ;; esac
done
verb=${args[0]:-}
unit=${args[1]:-}
instance=${unit#pki-tomcatd@}
instance=${instance%.service}
pidfile=$rundir/$instance.pid
logfile=/tmp/ipabuild-ca-tomcat-$instance.log

# A zombie counts as gone: where the init step's PID 1 is python (kube play, Kubernetes:
# no init process), nobody reaps the orphaned Tomcat, and kill -0 still finds it.
alive() {
    kill -0 "$1" 2>/dev/null && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"
}

running() {
    local pid
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    [ -n "$pid" ] && alive "$pid"
}

# A master CA without replication has no "Replication Manager" entry in the directory,
# yet 10.10's CS.cfg lists its password: the password test at start then fails with
# err=49 and the CA refuses to start. No replication is set up here: drop it.
drop_replicationdb() {
    local cs=/etc/pki/$instance/ca/CS.cfg pw=/etc/pki/$instance/password.conf
    [ -f "$cs" ] || return 0
    sed -i -e '/^cms\.passwordlist=/s/,replicationdb//' -e '/^cms\.passwordlist=/s/replicationdb,//' "$cs"
    [ -f "$pw" ] && sed -i '/^replicationdb=/d' "$pw"
    return 0
}

start() {
    running && return 0
    drop_replicationdb
    [ -n "$instance" ] && [ "$instance" != "$unit" ] || ipabuild_die "systemctl shim: unit '$unit' unknown"
    mkdir -p "$rundir"
    (
        . /usr/local/lib/ipabuild/pki-tomcat-env.sh "$instance"
        /usr/sbin/pki-server upgrade "$instance"
        /usr/sbin/pki-server migrate "$instance" --tomcat 9.0.00
        /usr/bin/pkidaemon start "$instance"
        # Output goes to a file: pkispawn may read our stdout until EOF.
        as_user=()
        [ "$(id -u)" -ne 0 ] || as_user=(setpriv --reuid=pkiuser --regid=pkiuser --clear-groups)
        setsid "${as_user[@]}" /bin/sh /usr/share/pki/tomcat-start.sh \
            >>"$logfile" 2>&1 </dev/null &
        echo $! >"$pidfile"
    ) >>"$logfile" 2>&1
    ipabuild_log "started $unit (pid $(cat "$pidfile"); output in $logfile)"
}

stop() {
    local pid waited=0
    running || { rm -f "$pidfile"; return 0; }
    pid=$(cat "$pidfile")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    while alive "$pid"; do
        if [ "$waited" -ge 120 ]; then
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
    rm -f "$pidfile"
    ipabuild_log "stopped $unit"
}

case $verb in
    daemon-reload|enable|disable|reset-failed) exit 0 ;;
    is-active|status)
        if running; then echo active; exit 0; else echo inactive; exit 3; fi ;;
    start) start ;;
    stop) stop ;;
    restart|try-restart|reload-or-restart) stop; start ;;
    *) ipabuild_die "systemctl shim: '$verb' is not supported (only pkispawn's verbs are)" ;;
esac
