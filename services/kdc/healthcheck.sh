#!/bin/bash
# Healthy = krb5kdc accepts TCP on the Kerberos port and kadmind on kpasswd's. When not,
# one line says why (the most common cause first: no shared LDAPI socket).
socket=/run/ipa-ldapi/slapd-${IPA_REALM//./-}.socket
if ! (exec 3<>/dev/tcp/127.0.0.1/8088) 2>/dev/null; then
    if [ ! -S "$socket" ]; then
        echo "kdc: no LDAPI socket at $socket: mount ldap's ldapi volume there (Kubernetes: run in ldap's pod)"
    else
        echo "kdc: krb5kdc not listening on 8088 yet (realm setup in progress, see the log)"
    fi
    exit 1
fi
(exec 4<>/dev/tcp/127.0.0.1/8464) 2>/dev/null || { echo "kdc: kadmind not listening on kpasswd port 8464"; exit 1; }
[ -S /tmp/ipabuild-kdc/DEFAULT.socket ] || { echo "kdc: no ipa-otpd socket at /tmp/ipabuild-kdc/DEFAULT.socket (OTP logins would fail; see the log)"; exit 1; }
# Healthy either way; say whether anonymous PKINIT (FAST armor, so OTP) is served yet.
if [ "$(cat /tmp/ipabuild-kdc/pkinit 2>/dev/null)" = on ]; then
    echo "kdc: healthy, PKINIT on, OTP on"
    exit 0
fi
# Off, but the ca service has published the KDC's certificate: krb5kdc restarts to serve
# it within seconds. Still healthy (passwords work; a probe must not restart the pod for
# it), but "settling:", so `ipabuild up` waits for the switch instead of returning just
# before krb5kdc's restart (a client's first kinit would meet it).
kdc_entry="cn=KDC,cn=$IPA_SERVER,cn=masters,cn=ipa,cn=etc,$IPA_SUFFIX"
if ldapsearch -LLL -o ldif-wrap=no -Q -Y EXTERNAL \
        -H "ldapi://$(printf '%s' "$socket" | sed 's#/#%2F#g')" -b "$kdc_entry" -s base \
        'userCertificate;binary' 2>/dev/null | grep -q '^userCertificate;binary::'; then
    echo "settling: kdc: healthy, PKINIT certificate published at $kdc_entry; krb5kdc restarts to serve it"
else
    echo "kdc: healthy, PKINIT off: no KDC certificate yet (password logins only; OTP needs FAST armor)"
fi
