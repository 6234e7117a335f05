"""Runs inside the client toolbox (services/client): FreeIPA's own client library against
the stack's API, one JSON-RPC request per call, timed. Prints one JSON document.

Needs a ticket (the caller runs kinit first) and the toolbox's generated configuration
(IPA_CONFDIR). Arguments: number of users, user name prefix.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> int:
    count, prefix = int(sys.argv[1]), sys.argv[2]
    from ipalib import api

    api.bootstrap(context="cli")  # IPA_CONFDIR (the toolbox sets it) names the directory
    api.finalize()
    api.Backend.rpcclient.connect()

    adds: list[float] = []
    started = time.monotonic()
    for number in range(count):
        began = time.monotonic()
        api.Command.user_add(f"{prefix}{number}", givenname="Load", sn=f"User{number}",
                             userpassword=f"Pw-{prefix}-{number}")
        adds.append(time.monotonic() - began)
    total = time.monotonic() - started

    finds: list[float] = []
    for _ in range(20):
        began = time.monotonic()
        found = api.Command.user_find(prefix, sizelimit=0)["count"]
        finds.append(time.monotonic() - began)

    # kinit of those users against ipa-kdb (their passwords are admin-set: expired, so
    # each first kinit also changes it, as a new user's first login does).
    kinits = min(count, 50)
    began = time.monotonic()
    for number in range(kinits):
        old, new = f"Pw-{prefix}-{number}", f"New-{prefix}-{number}"
        subprocess.run(["kinit", "-c", f"/tmp/cc.{number}", f"{prefix}{number}"],
                       input=f"{old}\n{new}\n{new}\n", text=True, check=True,
                       capture_output=True)
    first_kinit_seconds = time.monotonic() - began
    began = time.monotonic()
    for number in range(kinits):
        subprocess.run(["kinit", "-c", f"/tmp/cc.{number}", f"{prefix}{number}"],
                       input=f"New-{prefix}-{number}\n", text=True, check=True,
                       capture_output=True)
    kinit_seconds = time.monotonic() - began

    print(json.dumps({
        "users": count,
        "user_add_total_s": round(total, 2),
        "user_add_p50_ms": round(statistics.median(adds) * 1000, 1),
        "user_add_p95_ms": round(percentile(adds, 0.95) * 1000, 1),
        "user_find_matches": found,
        "user_find_p50_ms": round(statistics.median(finds) * 1000, 1),
        "user_find_p95_ms": round(percentile(finds, 0.95) * 1000, 1),
        "first_kinit_per_s": round(kinits / first_kinit_seconds, 1),
        "kinit_per_s": round(kinits / kinit_seconds, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
