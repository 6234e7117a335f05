#!/bin/bash
# The server name's proxy: nginx's stream module in the foreground, as any UID (nginx
# needs no passwd entry unless it runs as root), logging to stderr.
set -euo pipefail
. /usr/local/lib/ipabuild/lib.sh
export IPABUILD_SERVICE=server
ipabuild_log "forwarding the server name's ports (/etc/ipabuild/nginx.conf)"
exec /usr/sbin/nginx -e stderr -c /etc/ipabuild/nginx.conf -g "daemon off;"
