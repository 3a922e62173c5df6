"""Targets run inside spawned slice processes (module level, so ``spawn`` can import them)."""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from inference.slices import EnforcementReport, SliceSpec


def busy_probe(spec: SliceSpec, report: EnforcementReport, seconds: float) -> dict[str, Any]:
    """Spin on the CPU for ``seconds`` of wall time; report what the process was given."""
    end = time.monotonic() + seconds
    spins = 0
    while time.monotonic() < end:
        spins += 1
    return {
        "affinity": sorted(os.sched_getaffinity(0)),
        "threads": torch.get_num_threads(),
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "spins": spins,
        "slice": spec.name,
    }
