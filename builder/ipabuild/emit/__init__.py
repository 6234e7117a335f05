"""Stage 3, emit: takes the spec model (and pinned digests from the build) and gives the
deployable files: ``tree`` writes and drift-checks ``kustomize/`` built by ``manifests``
(base, components, overlays), ``compose`` writes ``compose/``; ``kustomize`` runs the
real kustomize over them.
"""
