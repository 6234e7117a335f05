"""ipabuild: build, deploy and prove unprivileged FreeIPA service containers."""

__version__ = "0.1.0"
