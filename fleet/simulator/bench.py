"""The engine's step cost: ``python -m fleet.simulator.bench [--trucks 1000] [--hz 10]``.

Runs on the demo mine's map document (``fleet.mine.demo.build_demo_map``, no database needed)
or on a map file (``--map FILE``, as ``manage.py export_map`` writes it). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from fleet.simulator.engine import Engine
from fleet.simulator.world import World


def _map(path: Path | None) -> dict:
    if path is not None:
        return json.loads(path.read_text())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")
    import django

    django.setup()
    from fleet.mine.demo import build_demo_map

    return build_demo_map()


def measure(world: World, trucks: int, hz: float, warm_s: float, steps: int) -> dict:
    """Median wall time of ``engine.step()`` over 5 runs of ``steps`` steps, after ``warm_s``
    simulated seconds so that the trucks are spread over their cycles."""
    engine = Engine(world, trucks, hz=hz, seed=1, fault_rate=0.1)
    for _ in range(round(warm_s * hz)):
        engine.step()
        engine.events.clear()
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(steps):
            engine.step()
            engine.events.clear()
        runs.append((time.perf_counter() - start) / steps)
    step_s = statistics.median(runs)
    return {
        "trucks": trucks,
        "hz": hz,
        "step_ms": round(step_s * 1e3, 3),
        "core_share_at_hz": round(step_s * hz, 4),
        "states": engine.histogram(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trucks", type=int, default=1000)
    parser.add_argument("--hz", type=float, default=10.0)
    parser.add_argument("--map", type=Path, help="a map file (default: the demo mine)")
    parser.add_argument("--warm", type=float, default=600.0, help="simulated seconds first")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    world = World.from_map(_map(args.map))
    print(json.dumps(measure(world, args.trucks, args.hz, args.warm, args.steps)))


if __name__ == "__main__":
    main()
