#!/bin/bash
# MIT krb5kdc and kadmind with FreeIPA's ipa-kdb under any UID with GID 0. The realm
# lives in the ldap service's IPA directory; ipa-kdb reaches it only over the LDAPI
# socket on the volume this container shares with ldap (SASL EXTERNAL: 389-ds maps this
# GID-0 peer to Directory Manager, as FreeIPA's root KDC is). No password on disk: the
# master key stash is rebuilt on tmpfs from the mounted secret at every start.
set -euo pipefail
IPABUILD_SERVICE=kdc
. /usr/local/lib/ipabuild/lib.sh

run=/tmp/ipabuild-kdc
socket=/run/ipa-ldapi/slapd-${IPA_REALM//./-}.socket
ldapi="ldapi://$(printf '%s' "$socket" | sed 's#/#%2F#g')"

ipabuild_ensure_user
umask 0077
mkdir -p "$run"
sed -e "s#@RUN@#$run#" /usr/share/ipabuild/kdc.conf.in >"$run/kdc.conf"  # no PKINIT yet
cp /usr/share/ipabuild/krb5.conf.in "$run/krb5.conf"
export KRB5_CONFIG=$run/krb5.conf KRB5_KDC_PROFILE=$run/kdc.conf

# The realm in ldap's IPA directory, its master key stashed on tmpfs, the stack's
# services, their aliases and keys, the anonymous principal, admin's keys: kdc_setup.py.
python3 /usr/local/lib/ipabuild/kdc_setup.py "$run"

# OTP (FreeIPA's ipa-otpd.socket + ipa-otpd@.service): the KDC's OTP preauth sends a RADIUS
# request per login to this socket; each connection gets its own ipa-otpd on stdin/stdout
# (Accept=true), which reads the user's tokens over LDAPI and checks password+code by a
# bind as the user (389-ds's ipa-pwd-extop). systemd-socket-activate passes on only the
# variables named with -E.
rm -f "$run/DEFAULT.socket"
ipabuild_log "OTP: ipa-otpd per connection on $run/DEFAULT.socket"
systemd-socket-activate --listen="$run/DEFAULT.socket" --accept --inetd \
    -E LC_ALL=C.UTF-8 -E KRB5_CONFIG /usr/libexec/ipa/ipa-otpd "$ldapi" &

ipabuild_log "starting kadmind (kpasswd 8464, kadmin 8749) and krb5kdc for $IPA_REALM (8088)"
/usr/sbin/kadmind -nofork &
# krb5kdc with PKINIT (anonymous PKINIT: FAST armor, `kinit -n`) once the ca service has
# published the KDC's certificate, restarted for a renewed one: kdc_pkinit.py says how.
exec python3 /usr/local/lib/ipabuild/kdc_pkinit.py "$run" -- /usr/sbin/krb5kdc -n
