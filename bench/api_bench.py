"""FreeIPA API benchmark against a running split stack: `ipa user-add` of N users through
the API (per-request p50/p95 and the total), `user-find` latency at N users, and kinit
rate against ipa-kdb. Not a test: prints figures (recorded in docs/performance.md).

    ipabuild up --name bench && python3 bench/api_bench.py --name bench [--users 200]

The load runs in the client toolbox (FreeIPA's own client library, one JSON-RPC request
per command) from a container on the stack's network, as `ipabuild client` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="ipa", help="running stack (default: ipa)")
    parser.add_argument("--users", type=int, default=200)
    args = parser.parse_args()
    password = (ROOT / ".ipabuild" / "secrets" / args.name / "admin-password").read_text().strip()
    prefix = f"load{uuid.uuid4().hex[:4]}u"
    script = ('printf "%s" "$PW" | kinit admin >/dev/null && '
              f"python3 /bench/ipa_api_load.py {args.users} {prefix}")
    command = [sys.executable, "-m", "ipabuild.cli", "--root", str(ROOT), "client",
               "--name", args.name, "-v", f"{ROOT / 'bench' / 'inside'}:/bench:ro", "-e", "PW",
               "--", "sh", "-c", script]
    result = subprocess.run(command, capture_output=True, text=True, check=False, input="",
                            env={**os.environ, "PW": password})
    if result.returncode != 0:
        print(result.stdout[-3000:] + result.stderr[-3000:], file=sys.stderr)
        return 1
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key, value in figures.items():
        print(f"{key:22} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
