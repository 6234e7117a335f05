"""Stage 1, spec: takes ``ipabuild.yaml`` and ``services/*/service.yaml`` and gives the
validated model (``model.Project``, ``model.Service``), loaded by ``load`` with every error
naming file, line and fix, and ``ordering``: specs in dependency order.
"""
