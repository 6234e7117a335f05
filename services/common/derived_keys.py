"""Private keys derived from a bootstrap secret, so that no key is stored or shipped.

The split stack's TLS and RA-agent keys must be the same in two places: in the service
that uses the key (http, ldap) and in the ca service, which makes the certificate
request and has Dogtag issue it. Neither may keep the key in its image, and http has no
volume. So both derive the key from one mounted secret: an EC P-256 private scalar from
SHA-512 over a fixed label and the secret (the label keeps keys of different purposes
apart even if one secret were reused). The ca service gains nothing by knowing the seed:
it holds the CA signing key, which can certify any key for any name anyway.

Used as a module (``ipa_ca.py``) and as a command by the entrypoints:

    python3 derived_keys.py key SECRET-NAME LABEL OUT.pem     # the private key, 0600
    python3 derived_keys.py matches SECRET-NAME LABEL CERT.pem  # exit 0 if CERT is for it
    ldapsearch ... 'userCertificate;binary' | python3 derived_keys.py select SECRET LABEL OUT.pem
        # the newest currently valid certificate in the LDIF that is for the key (exit 1: none)

Runs on bullseye's python3-cryptography 3.3 and trixie's 42.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import sys
import tempfile

from cryptography import x509
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

SECRETS_DIR = os.environ.get("IPABUILD_SECRETS_DIR", "/run/secrets")
# The order of the P-256 group: the private scalar must lie in [1, n-1].
P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


class KeyError_(Exception):
    """A secret that cannot give a key: the message names the file and the fix."""


def read_secret(name: str) -> bytes:
    path = os.path.join(SECRETS_DIR, name)
    try:
        with open(path, "rb") as handle:
            value = handle.read().strip()
    except OSError as exc:
        raise KeyError_(f"secret {name!r} missing at {path}: {exc.strerror}; "
                        f"mount it (ipabuild up creates it)") from exc
    if len(value) < 16:
        raise KeyError_(f"secret {name!r} at {path} has {len(value)} bytes; a key seed "
                        f"needs at least 16 (ipabuild secrets makes 32)")
    return value


def derive(seed: bytes, label: str) -> ec.EllipticCurvePrivateKey:
    """The P-256 key for ``label`` from ``seed``: the same on every host and version."""
    digest = hashlib.sha512(b"ipabuild derived key\0" + label.encode() + b"\0" + seed).digest()
    scalar = int.from_bytes(digest, "big") % (P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1(), default_backend())


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def certifies(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    """Whether ``cert`` is for ``key`` (same public key)."""
    return public_der(cert.public_key()) == public_der(key.public_key())  # type: ignore[arg-type]


def validity(cert: x509.Certificate) -> tuple[datetime.datetime, datetime.datetime]:
    """(not before, not after) in UTC: cryptography 42 deprecates the naive attributes
    that 3.3 (bullseye) alone has."""
    if hasattr(cert, "not_valid_after_utc"):
        return cert.not_valid_before_utc, cert.not_valid_after_utc
    utc = datetime.timezone.utc
    return (cert.not_valid_before.replace(tzinfo=utc), cert.not_valid_after.replace(tzinfo=utc))


def valid_values(ldif: str, attribute: str) -> list[x509.Certificate]:
    """The currently valid certificates among ``attribute``'s values (``name;binary``)
    of an unwrapped LDIF (``ldapsearch -o ldif-wrap=no``); unreadable values skipped."""
    now = datetime.datetime.now(datetime.timezone.utc)
    found = []
    for line in ldif.splitlines():
        name, _, value = line.partition(":: ")
        if name.lower() != attribute.lower():
            continue
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode(value), default_backend())
        except ValueError:
            continue
        not_before, not_after = validity(cert)
        if not_before <= now < not_after:
            found.append(cert)
    return found


def select(ldif: str, key: ec.EllipticCurvePrivateKey) -> x509.Certificate | None:
    """The newest valid certificate for ``key`` among ``userCertificate;binary`` values:
    a service entry may hold several, some issued for other keys or expired."""
    found = [cert for cert in valid_values(ldif, "userCertificate;binary")
             if certifies(cert, key)]
    return max(found, key=lambda cert: validity(cert)[1]) if found else None


def anchors(ldif: str) -> list[x509.Certificate]:
    """Every currently valid ``cACertificate;binary`` value, newest first: once the IPA
    CA's certificate is renewed (same subject and key), cn=CAcert holds the old and the
    new one, and a trust file that kept only the first value would go stale when the old
    one expires (FreeIPA's /etc/ipa/ca.crt holds them all)."""
    return sorted(valid_values(ldif, "cACertificate;binary"),
                  key=lambda cert: validity(cert)[1], reverse=True)


def write_whole(path: str, data: bytes, mode: int) -> None:
    """``data`` into ``path``, written to a new file beside it and renamed over it, so
    that a reader (or a crash) never sees half a file and the old one stays until the
    new one is complete; a failed write leaves no temporary file. The one helper for
    every certificate, key and record the services replace while running."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_public(path: str, data: bytes) -> None:
    write_whole(path, data, 0o644)


def write_private(path: str, data: bytes) -> None:
    write_whole(path, data, 0o600)


def main(argv: list[str]) -> int:
    usage = ("usage: derived_keys.py key SECRET LABEL OUT.pem | "
             "derived_keys.py matches SECRET LABEL CERT.pem | "
             "derived_keys.py select SECRET LABEL OUT.pem < LDIF | "
             "derived_keys.py anchors OUT.pem < LDIF")
    if len(argv) == 2 and argv[0] == "anchors":
        found = anchors(sys.stdin.read())
        if not found:
            return 1
        write_public(argv[1], b"".join(cert.public_bytes(serialization.Encoding.PEM)
                                       for cert in found))
        return 0
    if len(argv) != 4 or argv[0] not in ("key", "matches", "select"):
        print(usage, file=sys.stderr)
        return 2
    command, secret, label, path = argv
    try:
        key = derive(read_secret(secret), label)
    except KeyError_ as exc:
        print(f"derived_keys: {exc}", file=sys.stderr)
        return 2
    if command == "key":
        write_private(path, private_pem(key))
        return 0
    if command == "select":
        cert = select(sys.stdin.read(), key)
        if cert is None:
            return 1
        write_public(path, cert.public_bytes(serialization.Encoding.PEM))
        return 0
    try:
        with open(path, "rb") as handle:
            cert = x509.load_pem_x509_certificate(handle.read(), default_backend())
    except (OSError, ValueError) as exc:
        print(f"derived_keys: {path} is not a PEM certificate: {exc}", file=sys.stderr)
        return 2
    return 0 if certifies(cert, key) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
