# Shell helpers shared by every ipabuild entrypoint (sourced, not executed).
# Why: each daemon must run under any UID with GID 0 and tell the operator what it is
# waiting for; these few functions keep that behaviour identical across images.

ipabuild_log() {
    printf '%s ipabuild[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${IPABUILD_SERVICE:-?}" "$*" >&2
}

ipabuild_die() {
    ipabuild_log "FATAL: $*"
    exit 1
}

# Give the running UID a passwd entry when it has none: OpenShift assigns an arbitrary
# UID that no /etc/passwd knows, and daemons (lib389, Kerberos, Tomcat) look it up.
# /etc stays read-only; nss_wrapper reads a copy under /tmp.
ipabuild_ensure_user() {
    local uid gid dir
    uid=$(id -u)
    gid=$(id -g)
    if getent passwd "$uid" >/dev/null 2>&1; then
        return 0
    fi
    dir=$(mktemp -d /tmp/ipabuild-nss.XXXXXX)
    cp /etc/passwd "$dir/passwd"
    cp /etc/group "$dir/group"
    printf '%s:x:%s:%s:ipabuild runtime user:%s:/usr/sbin/nologin\n' \
        "${IPABUILD_USER_NAME:-ipabuild}" "$uid" "$gid" "${HOME:-/tmp}" >>"$dir/passwd"
    export NSS_WRAPPER_PASSWD="$dir/passwd" NSS_WRAPPER_GROUP="$dir/group"
    export LD_PRELOAD=libnss_wrapper.so
    ipabuild_log "UID $uid had no passwd entry; provided one through nss_wrapper"
}

# Read a secret mounted as a file (podman secret, Kubernetes Secret volume). Secrets
# never come from the environment or from image layers.
ipabuild_secret() {
    local name=$1 path="${IPABUILD_SECRETS_DIR:-/run/secrets}/$1"
    [ -r "$path" ] && [ -s "$path" ] || ipabuild_die "secret '$name' missing: mount it as a file at $path" \
        "(podman: --secret $name; Kubernetes: a Secret volume; ipabuild secrets writes them)"
    tr -d '\n' <"$path"
}

# Wait for host:port to accept TCP connections, saying what is awaited and why (every
# 10 s of waiting, by the clock: a try can itself take seconds while DNS stalls).
ipabuild_wait_tcp() {
    local host=$1 port=$2 why=$3 timeout=${4:-${IPABUILD_WAIT_TIMEOUT:-0}}
    local started=$SECONDS said=-10
    # Tries every 0.25 s: a peer restarting takes about a second; whole-second polls
    # added up to one more to every restart of a waiting service.
    until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
        if [ $((SECONDS - said)) -ge 10 ]; then
            ipabuild_log "waiting for $host:$port ($why)"
            said=$SECONDS
        fi
        if [ "$timeout" -gt 0 ] && [ $((SECONDS - started)) -ge "$timeout" ]; then
            ipabuild_die "gave up after $((SECONDS - started))s waiting for $host:$port ($why)"
        fi
        sleep 0.25
    done
    ipabuild_log "$host:$port is up ($why)"
}

# Write a keytab for PRINCIPAL whose keys derive from the password in secret SECRET: the
# KDC derives the same keys from the same secret, so no keytab travels between pods.
ipabuild_keytab() {
    local principal=$1 secret=$2 keytab=$3 password enctype
    password=$(ipabuild_secret "$secret")
    {
        # FreeIPA's KDC prefers the SHA-2 enctypes; the keys use the normal salt (the
        # KDC sets them with the same enctype:salt list, see the kdc's principals).
        for enctype in aes256-cts-hmac-sha384-192 aes128-cts-hmac-sha256-128 \
                aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96; do
            printf 'addent -password -p %s -k 1 -e %s\n%s\n' "$principal" "$enctype" "$password"
        done
        printf 'wkt %s\nquit\n' "$keytab"
    } | ktutil >/dev/null
    [ -s "$keytab" ] || ipabuild_die "could not write the keytab of $principal"
}

# Create the principals listed in FILE (principal, secret holding its password, LDAP entry
# to attach to or "-") when absent; never change existing ones. kadmin.local reads its
# commands from stdin so no password appears in argv.
ipabuild_ensure_principals() {
    local principal secret entry attach
    while read -r principal secret entry; do
        case "$principal" in ''|'#'*) continue ;; esac
        if kadmin.local -q "getprinc $principal" 2>/dev/null | grep -q '^Principal:'; then
            continue
        fi
        attach=""
        [ "$entry" = "-" ] || attach="-x dn=$entry"
        printf 'addprinc %s -pw %s %s\n' "$attach" "$(ipabuild_secret "$secret")" "$principal" |
            kadmin.local >/dev/null 2>&1 || ipabuild_die "could not create principal $principal"
        ipabuild_log "created principal $principal@$IPA_REALM${attach:+ on $entry}"
    done <"$1"
}
