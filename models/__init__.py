"""Haulmind's domain networks (PyTorch only): the telemetry backbone, the mining model and the
task heads, their training and checkpoints. Never imports Django (an import-linter contract)."""
