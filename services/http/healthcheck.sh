#!/bin/bash
# Healthy = httpd answers TLS and FreeIPA's API is loaded: i18n_messages is the one API
# call that needs no login. Otherwise one line says which part is missing.
[ -s /etc/ipa/ca.crt ] || { echo "no IPA CA certificate at /etc/ipa/ca.crt (the entrypoint reads it from cn=CAcert in ldap)"; exit 1; }
[ -s /var/lib/ipa/ra-agent.pem ] && [ -s /var/lib/ipa/ra-agent.key ] || { echo "no RA agent certificate at /var/lib/ipa/ra-agent.pem (the entrypoint reads it from cn=ipaCert,cn=ca_renewal in ldap, where the ca service publishes it)"; exit 1; }
code=$(curl -ks -o /dev/null -w '%{http_code}' --max-time 4 \
    -H "Referer: https://$IPA_SERVER/ipa/ui/" -H 'Content-Type: application/json' \
    -d '{"method": "i18n_messages", "params": [[], {}]}' \
    https://127.0.0.1:443/ipa/i18n_messages) || code=000
case $code in
    200) exit 0 ;;
    000) echo "httpd does not answer TLS on 443" ;;
    *) echo "FreeIPA's API answers HTTP $code: its WSGI application did not load (http's log has the traceback; check /etc/ipa/default.conf)" ;;
esac
exit 1
