"""Runs inside the client toolbox (services/client): a steady stream of real client
requests against a split stack, one JSON line per request on stdout, until killed.

Probes, in turn, each with a 5 s limit: ``kinit`` (the KDC, ipa-kdb, the directory),
an LDAP search over GSSAPI (the directory; the service ticket comes from the last kinit),
an authenticated JSON-RPC ``ping`` with SPNEGO (httpd, constrained delegation, the
directory). Arguments: the pause between rounds in seconds. The admin password comes in
the environment (PW), never argv. It stops when its stdin closes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

CCACHE = "FILE:/tmp/fault-probe.ccache"
SUFFIX = os.environ.get("IPA_SUFFIX", "dc=example,dc=test")
DOMAIN = os.environ.get("IPA_DOMAIN", "example.test")
PING = '{"method": "ping", "params": [[], {}]}'


def run(argv: list[str], stdin: str = "") -> bool:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=5,
                              env={**os.environ, "KRB5CCNAME": CCACHE}, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def probes() -> dict[str, list[str]]:
    api = f"https://http.{DOMAIN}/ipa/json"
    return {
        "kinit": ["kinit", "admin"],
        "ldap": ["ldapsearch", "-N", "-Q", "-LLL", "-Y", "GSSAPI", "-H",
                 f"ldap://ldap.{DOMAIN}:3389", "-b", SUFFIX, "-s", "base", "dn"],
        "https": ["curl", "-sf", "--max-time", "5", "--negotiate", "-u", ":", "--cacert",
                  "/tmp/ipa/ca.crt", "-H", f"Referer: https://http.{DOMAIN}/ipa/",
                  "-H", "Content-Type: application/json", "-d", PING, api],
    }


def stop_at_end_of_input() -> None:
    """The caller stops the stream by closing stdin (podman run -i passes the EOF on)."""
    sys.stdin.read()
    os._exit(0)


def main() -> int:
    threading.Thread(target=stop_at_end_of_input, daemon=True).start()
    pause = float(sys.argv[1]) if len(sys.argv) > 1 else 0.2
    password = os.environ["PW"] + "\n"
    commands = probes()
    while True:
        for name, argv in commands.items():
            started = time.time()
            ok = run(argv, password if name == "kinit" else "")
            print(json.dumps({"t": round(started, 3), "probe": name, "ok": ok,
                              "ms": round((time.time() - started) * 1000)}), flush=True)
        time.sleep(pause)


if __name__ == "__main__":
    sys.exit(main())
