"""Stage 4, run: takes the spec model and built images and gives running stacks with
podman (podman-py): ``stack`` (up, status, down) with ``plan`` (what each container is
made from), ``bringup`` and ``containers``; the host ID registry (``idranges``,
``idusage``), bootstrap ``secrets``, start gates, the client toolbox and status view.
"""
