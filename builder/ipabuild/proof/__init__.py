"""Stage 5, proof: takes running stacks (and the emitted overlays) and gives evidence:
``probe`` and ``targets`` read who each process is on the host, ``verify`` runs the
packaged pytest-testinfra ``checks``, ``posture`` compares modes side by side with the
blast radius (``blastprobe``, ``blastradius``), NetworkPolicy view (``netpolicy``) and
the manifests' scanners (``scan``, ``checkov``).
"""
