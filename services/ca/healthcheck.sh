#!/bin/bash
# Healthy when Dogtag says the CA subsystem is running (the readiness check pki-server
# and IPA use: Tomcat answering is not enough, the subsystem starts after the webapp)
# and IPA's side of the CA is set up (ipa_ca.py: the RA agent, certificates, profiles).
set -uo pipefail
curl -fsk --max-time 4 https://127.0.0.1:8443/ca/admin/ca/getStatus \
    | grep -q '<Status>running</Status>' || { echo "Dogtag's CA subsystem is not running"; exit 1; }
[ -e /tmp/ipabuild-ca/ipa-setup-done ] || { echo "IPA's CA setup (ipa_ca.py: RA agent, certificates, profiles) has not finished; the CA's log says why"; exit 1; }
# Healthy either way; say what the renewer (renewer.py) last found: a failing
# renewal names the certificate and the reason, else the certificate expiring soonest.
cat /tmp/ipabuild-ca/renewal-summary 2>/dev/null || true
