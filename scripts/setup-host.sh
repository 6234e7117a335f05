#!/usr/bin/env bash
# Set up a fresh Debian 12 host (as root) for ipabuild and its test suite:
#   1. the Python package with its test extras (pip),
#   2. `ipabuild doctor --fix`: buildah, podman, runc, mmdebstrap, uidmap, netavark, iptables;
#      containers.conf drop-in (runc, ulimits this host allows); `containers` sub-ID ranges,
#   3. the real clients the integration tests use (ldap-utils, krb5-user, curl, skopeo,
#      docker-registry for push tests).
# Idempotent: run it again at any time.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "setup-host.sh: run as root (buildah/podman build and run rootful here)" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

python3 -m pip install --quiet --root-user-action=ignore -e '.[test]'
# pyenv (as on this machine kind) only exposes new console scripts after a rehash.
if command -v pyenv >/dev/null 2>&1; then
    pyenv rehash
fi
python3 -m ipabuild.cli doctor --fix

clients=(ldap-utils krb5-user curl skopeo docker-registry chromium chromium-driver oathtool)
missing=()
for pkg in "${clients[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian's docker-registry starts a service on :5000 where systemd runs; tests start their own.
