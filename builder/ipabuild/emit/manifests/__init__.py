"""Kubernetes manifests for both modes, built from the specs (see ``ipabuild.emit.tree``)."""
