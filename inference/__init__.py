"""The pooled-accelerator runtime: devices, virtual slices, scheduler, batching, Celery tasks.
Knows model versions and requests, not trucks; never imports fleet (an import-linter contract)."""
