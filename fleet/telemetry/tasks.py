"""Periodic upkeep of the history (scheduled by Celery beat, see settings)."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task

from fleet.telemetry import cycles, partitions, replicas, rollups


@shared_task(name="telemetry.maintain_history")
def maintain_history() -> dict:
    """Partitions ahead, retention behind."""
    created = partitions.ensure_history_partitions()
    dropped = partitions.drop_expired_partitions()
    return {"created": created, "dropped": dropped}


@shared_task(name="telemetry.roll_up_positions")
def roll_up_positions(start: str | None = None, end: str | None = None) -> int:
    """The recent minutes, or a given range (ISO times), e.g. after a truck's back-fill."""
    if start and end:
        return rollups.roll_up_positions(datetime.fromisoformat(start), datetime.fromisoformat(end))
    return rollups.roll_up_recent()


@shared_task(name="telemetry.derive_haul_cycles")
def derive_haul_cycles() -> int:
    return cycles.derive_haul_cycles()


@shared_task(name="telemetry.watch_ingest_replicas")
def watch_ingest_replicas() -> list[str]:
    """Report known ingest replicas that went silent (once per silence)."""
    return replicas.report_silent()
