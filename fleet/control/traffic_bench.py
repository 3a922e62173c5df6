"""``manage.py bench traffic --trucks N``: what one traffic-permission decision costs
(``fleet.control.traffic.decide``, the arbiter run for a site on every request, release and
sweep) with N trucks holding or waiting for a site's one-lane sections.

The scene: N / 5 sections (at least 4), eight of them in two rings of four adjacent sections,
capacity 1 or 2; every truck has one open permission: a third granted, the rest waiting at one
of two entrances of their section, loaded or empty, asked over the last two minutes (some past
the waiting bound, some overtaken). Then, ``--seconds`` long: ``decide_ms_p50`` / ``_p99``, the
rings found (``rings_ms``), and CPU time per permission of one decision (``cpu_us_per_permission``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fleet.control import traffic


def _scene(trucks: int, seed: int) -> tuple[dict, list[traffic.Permission], list]:
    rng = random.Random(seed)  # noqa: S311 - a reproducible scene, not a secret
    count = max(4, trucks // 5)
    sections = {
        f"S{i}": traffic.Section(f"S{i}", 1 if i % 3 else 2, f"section {i}") for i in range(count)
    }
    names = list(sections)
    pairs = [(names[i], names[(i + 1) % 4]) for i in range(4)]
    if count >= 8:
        pairs += [(names[4 + i], names[4 + (i + 1) % 4]) for i in range(4)]
    now = datetime(2026, 1, 1, 8, tzinfo=UTC)
    permissions, held = [], set()
    for n in range(trucks):
        zone = rng.choice(names)
        asked = now - timedelta(seconds=rng.uniform(0, 150))
        granted = zone not in held and rng.random() < 0.5
        if granted:
            held.add(zone)
        permissions.append(
            traffic.Permission(
                key=n,
                truck=f"HT-{n:04d}",
                zone=zone,
                way=rng.choice((1, 2)),
                status=traffic.GRANTED if granted else traffic.PENDING,
                requested_at=asked,
                loaded=rng.random() < 0.5,
                last_asked_at=now - timedelta(seconds=rng.uniform(0, 30)),
                granted_at=asked if granted else None,
                entered=granted,
                overtakes=rng.randint(0, 3),
            )
        )
    return sections, permissions, pairs


def run(options: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    trucks = int(options["trucks"])
    sections, permissions, pairs = _scene(trucks, int(options.get("seed") or 0))
    now = datetime(2026, 1, 1, 8, tzinfo=UTC)
    t0 = time.perf_counter()
    rings = traffic.rings_of(pairs)
    rings_ms = (time.perf_counter() - t0) * 1000
    log(f"{trucks} trucks, {len(sections)} sections, {len(rings)} rings")
    times: list[float] = []
    cpu0, deadline = time.process_time(), time.monotonic() + float(options["seconds"])
    outcome = traffic.Outcome()
    while time.monotonic() < deadline or len(times) < 20:
        start = time.perf_counter()
        outcome = traffic.decide(sections, permissions, now, traffic.Rules(), rings)
        times.append((time.perf_counter() - start) * 1000)
    cpu = time.process_time() - cpu0
    times.sort()
    return {
        "trucks": trucks,
        "sections": len(sections),
        "rings": len(rings),
        "decisions": len(times),
        "granted_per_decision": len(outcome.granted()),
        "decide_ms_p50": round(times[len(times) // 2], 3),
        "decide_ms_p99": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3),
        "rings_ms": round(rings_ms, 3),
        "cpu_us_per_permission": round(cpu / len(times) / max(trucks, 1) * 1e6, 2),
    }
