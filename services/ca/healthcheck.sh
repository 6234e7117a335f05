#!/bin/bash
# Healthy when the CA's REST API answers on the local HTTPS port (Tomcat up, CA started).
set -euo pipefail
curl -fsk --max-time 4 -o /dev/null https://127.0.0.1:8443/ca/rest/info
