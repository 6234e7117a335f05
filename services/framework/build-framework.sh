#!/bin/bash
# Build FreeIPA's server framework from Debian trixie's source package and install it
# into a staging root (/opt/freeipa) that the ldap, kdc and http images copy from.
# Usage: build-framework.sh VERSION  (the Debian source version the spec pins)
set -euo pipefail
version=$1
src=/usr/src/freeipa
stage=/opt/freeipa
py=/usr/lib/python3/dist-packages

step() { printf '== framework: %s\n' "$*"; }

step "fetching source package freeipa=$version"
# apt's signed source index gives the URI and sha256 of the upstream tarball; apt-helper
# verifies it. (This mirror serves the .orig.tar.gz but not the .dsc or Debian's diff,
# and Debian's packaging builds only the client anyway, so plain `apt-get source` fails.)
printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    >/etc/apt/sources.list.d/trixie-src.sources
apt-get update -q >/dev/null
read -r uri file size hash < <(apt-get source --print-uris -q --only-source "freeipa=$version" | grep "\.orig\.tar\.")
mkdir -p "$src" && cd "$src"
/usr/lib/apt/apt-helper download-file "${uri//\'/}" "$file" "$hash" >/dev/null
tar xzf "$file" --strip-components=1
rm -f "$file" /etc/apt/sources.list.d/trixie-src.sources
rm -rf /var/lib/apt/lists/*

for patch in /usr/share/ipabuild/patches/*.patch; do
    step "applying $(basename "$patch")"
    patch -p1 --quiet --forward <"$patch"
done

step "configure (server and client, Debian platform)"
# runstatedir is only where ipa-kdb looks for 389-ds's LDAPI socket (LDAPIDIR).
./configure -q --with-ipaplatform=debian --without-ipatests --prefix=/usr --sysconfdir=/etc \
    --localstatedir=/var --with-runstatedir=/run/ipa-ldapi --libdir=/usr/lib/x86_64-linux-gnu \
    >/tmp/configure.log
grep -q "build mode:.*server & client" /tmp/configure.log || { cat /tmp/configure.log; exit 1; }

step "make -j$(nproc)"
make -j"$(nproc)" >/tmp/make.log 2>&1 || { tail -60 /tmp/make.log; exit 1; }

step "make install into $stage"
# Debian's Python reads dist-packages: configure's --install-layout=deb puts the modules
# there, and pythondir (where setup.py records what it installed) must agree with it.
make install DESTDIR="$stage" pythondir="$py" pyexecdir="$py" >/tmp/install.log 2>&1 \
    || { tail -60 /tmp/install.log; exit 1; }

step "pinned wheels into $stage$py"
python3 -m pip install --quiet --no-deps --no-index --no-compile --break-system-packages \
    --target "$stage$py" /usr/share/ipabuild/wheels/*.whl

# What the images copy must not carry build-host state.
rm -rf "$stage/var/lib/ipa/sysrestore" "$stage/var/log" "$stage/run"
find "$stage" -name '*.la' -delete
test -f "$stage/usr/lib/x86_64-linux-gnu/krb5/plugins/kdb/ipadb.so"
grep -aq "/run/ipa-ldapi" "$stage/usr/lib/x86_64-linux-gnu/krb5/plugins/kdb/ipadb.so"
test -f "$stage/usr/lib/x86_64-linux-gnu/dirsrv/plugins/libipa_pwd_extop.so"
test -d "$stage$py/ipaserver"
step "done: $(du -sh "$stage" | cut -f1) in $stage"
