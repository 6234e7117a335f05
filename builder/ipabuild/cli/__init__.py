"""The command line: parses arguments, calls a stage, turns errors into one line + status.

One module per stage's commands; each registers its commands on ``base.main`` when
imported. Exit statuses: 0 success; 1 a runtime failure (a build, a push, a failed
check); 2 a configuration or usage error (bad YAML, unknown key, unknown service).
"""

from ipabuild.cli import emit, host, images, proof, stack
from ipabuild.cli.base import main

__all__ = ["emit", "host", "images", "main", "proof", "stack"]
