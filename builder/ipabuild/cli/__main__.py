"""``python3 -m ipabuild.cli``: the same command line as ``ipabuild``."""

from ipabuild.cli import main

main()
