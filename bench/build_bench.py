"""Build benchmarks for ``ipabuild images``: cold, no-op and one-template-changed.

Not a test: prints figures. ``--cold`` deletes every ipabuild image (bases included), the
buildah layer cache and the apt cache mount first, so it measures a first build on this
host (the Debian mirror still answers from its own caches).

    python3 bench/build_bench.py [--cold] [--noop-runs 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APT_CACHE_MOUNTS = Path("/var/tmp").glob("buildah-cache-*")


def ipabuild(*args: str, root: Path = ROOT) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    result = subprocess.run(["ipabuild", "--root", str(root), *args], capture_output=True,
                            text=True, check=False)
    return time.monotonic() - started, result


def wipe() -> None:
    """Remove every ipabuild image and build cache so the next build is cold."""
    listing = subprocess.run(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"],
                             capture_output=True, text=True, check=True).stdout.split()
    ours = [name for name in listing if name.startswith("localhost/ipabuild/")]
    if ours:
        subprocess.run(["podman", "rmi", "-f", *ours], capture_output=True, check=False)
    subprocess.run(["buildah", "rm", "--all"], capture_output=True, check=False)
    subprocess.run(["podman", "image", "prune", "-a", "-f"], capture_output=True, check=False)
    for cache in APT_CACHE_MOUNTS:
        shutil.rmtree(cache, ignore_errors=True)


def report(title: str, seconds: float, result: subprocess.CompletedProcess) -> None:
    print(f"\n== {title}: {seconds:.2f} s wall, exit {result.returncode}")
    for line in result.stderr.splitlines():
        if line.startswith("[") and "base:" in line:
            print("  " + line.strip())
    if result.stdout.strip().startswith("{"):
        for image in json.loads(result.stdout)["images"]:
            print(f"  {image['service']:5} {image['status']:7} {image['seconds']:7.1f} s"
                  f"  {image['size'] / 1e6:6.0f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="wipe images and caches first")
    parser.add_argument("--noop-runs", type=int, default=5)
    args = parser.parse_args()

    if args.cold:
        wipe()
        seconds, result = ipabuild("images", "--json")
        report("cold build, all images, bases bootstrapped", seconds, result)
        if result.returncode != 0:
            print(result.stderr[-3000:], file=sys.stderr)
            return 1

    times = []
    for _ in range(args.noop_runs):
        seconds, result = ipabuild("images", "--json", "--quiet")
        statuses = {i["status"] for i in json.loads(result.stdout)["images"]}
        assert statuses == {"cached"}, statuses
        times.append(seconds)
    print(f"\n== no-op (all cached), {args.noop_runs} runs: median {statistics.median(times):.2f}"
          f" s, min {min(times):.2f} s, max {max(times):.2f} s")

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)
        shutil.copy(ROOT / "ipabuild.yaml", copy / "ipabuild.yaml")
        shutil.copytree(ROOT / "services", copy / "services")
        acl = copy / "services/kdc/kadm5.acl.j2"
        acl.write_text(acl.read_text() + "# bench: one template changed\n")
        seconds, result = ipabuild("images", "--json", root=copy)
        report("one template of kdc changed", seconds, result)
        # Put the real kdc image back the way the checkout builds it.
        ipabuild("images", "--service", "kdc", "--quiet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
