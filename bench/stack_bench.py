"""Split-stack benchmarks: first ``up`` on empty volumes, ``up`` on existing volumes, idle RSS.

Not a test: prints figures (recorded in docs/performance.md with this command).

    python3 bench/stack_bench.py [--name benchstack] [--restarts 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def ipabuild(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    result = subprocess.run(["ipabuild", *args], capture_output=True, text=True, check=False)
    return time.monotonic() - started, result


def tree_rss_kib(pid: int) -> int:
    """RSS of a process and all its descendants, from /proc. A child is listed under the
    thread that started it, so every thread's list is read (the monolith's supervisor
    starts each service from a thread of its own)."""
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = [child for task in Path(f"/proc/{current}/task").iterdir()
                        for child in (task / "children").read_text().split()]
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        stack.extend(int(c) for c in children)
    return total


def _timeline(stderr: str) -> str:
    """`ipabuild up`'s own progress lines (when each service started, became healthy)."""
    return "\n".join(f"    {line}" for line in stderr.splitlines() if line.startswith("["))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="benchstack")
    parser.add_argument("--restarts", type=int, default=5,
                        help="how many down/up rounds on the existing volumes (median printed)")
    args = parser.parse_args()
    name = args.name
    ipabuild("down", "--name", name, "--volumes")
    try:
        seconds, result = ipabuild("up", "--name", name)
        if result.returncode != 0:
            print(result.stderr[-3000:], file=sys.stderr)
            return 1
        print(f"first up on empty volumes until all healthy: {seconds:.1f} s")
        print(_timeline(result.stderr))
        rounds = []
        for _ in range(max(1, args.restarts)):
            ipabuild("down", "--name", name)
            seconds, result = ipabuild("up", "--name", name)
            if result.returncode != 0:
                print(result.stderr[-3000:], file=sys.stderr)
                return 1
            rounds.append(seconds)
        print(f"up on existing volumes until all healthy:    {statistics.median(rounds):.1f} s "
              f"median of {len(rounds)} ({', '.join(f'{r:.1f}' for r in rounds)})")
        print(_timeline(result.stderr))
        time.sleep(10)
        _, status = ipabuild("status", "--name", name, "--json")
        total = 0
        for row in json.loads(status.stdout):
            rss = tree_rss_kib(row["host_pid"]) if row["host_pid"] else 0
            total += rss
            print(f"  idle RSS {row['service']:5} {rss / 1024:7.1f} MiB")
        print(f"  idle RSS total {total / 1024:7.1f} MiB")
    finally:
        ipabuild("down", "--name", name, "--volumes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
