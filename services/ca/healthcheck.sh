#!/bin/bash
# Healthy when Dogtag says the CA subsystem is running (the readiness check pki-server
# and IPA use): Tomcat answering is not enough, the subsystem starts after the webapp.
set -euo pipefail
curl -fsk --max-time 4 https://127.0.0.1:8443/ca/admin/ca/getStatus \
    | grep -q '<Status>running</Status>'
