"""Load generators that measure the server, not the client's process start-up. Runs inside
the client toolbox (services/client), on the stack's network, as ``bench/compare.py``
starts it. Prints one JSON document.

* ``kinit``: ``procs`` processes, each getting a TGT with its own user's password over and
  over for ``seconds`` (``gss_acquire_cred_with_password``: libkrb5's AS exchange with
  pre-authentication, in this process; no kinit process per login, no ccache file).
* ``ldap``: ``procs`` processes (the target counts one), each over one persistent
  connection: a simple bind as its user, then a base search of its own entry, repeated.

    load.py kinit REALM PRINCIPAL_FMT PASSWORD_FMT PROCS SECONDS
    load.py ldap URI DN_FMT PASSWORD_FMT PROCS SECONDS

``*_FMT`` are str.format patterns with ``{n}``, the worker's number (0 .. PROCS-1).
``LOAD_KRB5_CONFIG``: a krb5.conf for a realm other than the toolbox's (the baseline KDC).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable


def kinit_worker(principal: str, password: str, seconds: float,
                 results: multiprocessing.Queue) -> None:
    import gssapi
    import gssapi.raw

    name = gssapi.Name(principal, gssapi.NameType.kerberos_principal)
    done = failed = 0
    error = ""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            gssapi.raw.acquire_cred_with_password(name, password.encode(), usage="initiate")
            done += 1
        except gssapi.exceptions.GSSError as exc:
            failed += 1
            error = str(exc)[:200]
    results.put((done, failed, error))


def ldap_worker(uri: str, dn: str, password: str, seconds: float,
                results: multiprocessing.Queue) -> None:
    import ldap

    conn = ldap.initialize(uri)
    conn.protocol_version = 3
    done = failed = 0
    error = ""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            conn.simple_bind_s(dn, password)
            conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["uid"])
            done += 1
        except ldap.LDAPError as exc:
            failed += 1
            error = str(exc)[:200]
    results.put((done, failed, error))


def run(worker: Callable[..., None], args_of: Callable[[int], tuple], procs: int,
        seconds: float) -> dict[str, object]:
    """``procs`` workers at once; the rate is what all of them did over the wall time."""
    results: multiprocessing.Queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=worker, args=(*args_of(n), seconds, results))
               for n in range(procs)]
    started = time.monotonic()
    for process in workers:
        process.start()
    outcomes = [results.get(timeout=seconds + 120) for _ in workers]
    for process in workers:
        process.join()
    elapsed = time.monotonic() - started
    done = sum(item[0] for item in outcomes)
    failed = sum(item[1] for item in outcomes)
    errors = sorted({item[2] for item in outcomes if item[2]})
    return {"procs": procs, "seconds": round(elapsed, 2), "done": done, "failed": failed,
            "per_s": round(done / elapsed, 1), "errors": errors}


USAGE = ("usage: load.py kinit REALM PRINCIPAL_FMT PASSWORD_FMT PROCS SECONDS | "
         "load.py ldap URI DN_FMT PASSWORD_FMT PROCS SECONDS")


def main(argv: list[str]) -> int:
    if len(argv) != 6 or argv[0] not in ("kinit", "ldap"):
        print(USAGE, file=sys.stderr)
        return 2
    if os.environ.get("LOAD_KRB5_CONFIG"):  # a realm the toolbox is not configured for
        os.environ["KRB5_CONFIG"] = os.environ["LOAD_KRB5_CONFIG"]
    kind, target, who, secret, procs, seconds = argv
    if kind == "kinit":
        def kinit_args(n: int) -> tuple:
            return (f"{who.format(n=n)}@{target}", secret.format(n=n))
        figures = run(kinit_worker, kinit_args, int(procs), float(seconds))
    else:
        def ldap_args(n: int) -> tuple:
            return (target, who.format(n=n), secret.format(n=n))
        figures = run(ldap_worker, ldap_args, int(procs), float(seconds))
    print(json.dumps(figures))
    return 0 if figures["done"] and not figures["failed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
