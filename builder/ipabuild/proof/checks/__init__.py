"""The packaged pytest-testinfra suite that ``ipabuild verify`` runs against live containers."""
