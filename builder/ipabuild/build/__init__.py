"""Stage 2, build: takes the spec model and gives images. ``render`` turns a service into a
build context (one Containerfile template, Jinja2, StrictUndefined); ``bases`` bootstraps
the base images; ``images`` runs a build (stages first, then the rest in parallel) through
``image`` (one service: cache key, buildah, push), ``buildah``, ``imagestore``, ``wheels``
and ``registry`` (digests a cluster pins).
"""
