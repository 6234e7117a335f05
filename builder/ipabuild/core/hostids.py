"""Host IDs derived from names: the namespace size, and the IDs stacks had before the registry.

Shared by the run stage's registry (``stack.idranges``, which keeps an old stack's IDs
and allocates new ones below none of them) and by ``compose/``, which has no registry
and so still derives each service's UID and the CA's namespace from the names.
"""

from __future__ import annotations

import hashlib

USERNS_SIZE = 65536
LEGACY_USERNS_BASE = 200_000_000
LEGACY_UIDS = (1_000_000_000, 1_000_000_000)  # start, size of the old stable_uid values


def legacy_userns_base(stack: str) -> int:
    """The namespace range's first ID as it was derived from the name (before the registry)."""
    slot = int.from_bytes(hashlib.sha256(stack.encode()).digest()[:4], "big") % 1000
    return LEGACY_USERNS_BASE + slot * USERNS_SIZE


def legacy_uid(stack: str, service: str) -> int:
    """A split service's UID as it was derived from the names (before the registry)."""
    digest = hashlib.sha256(f"{stack}/{service}".encode()).digest()
    return LEGACY_UIDS[0] + int.from_bytes(digest[:8], "big") % LEGACY_UIDS[1]
