"""What a site produced over a time range, from its haul cycles (``fleet.telemetry.cycles``):
tonnes per hour in buckets, the cycle-time breakdown (queue, spot, load, haul, dump, return) and
each loading unit's share and queueing. A cycle counts in the bucket where it ended (its load
has been dumped by then); a cycle without a reported payload counts in cycles and times, not in
tonnes."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, F, Sum
from django.db.models.functions import Coalesce

from fleet.telemetry.models import HaulCycle

PHASES = ("queue_s", "spot_s", "load_s", "haul_s", "dump_s", "return_s")


def production(
    site_id: uuid.UUID, start: datetime, end: datetime, bucket: timedelta
) -> dict[str, Any]:
    cycles = HaulCycle.objects.filter(
        equipment__site_id=site_id, ended_at__gt=start, ended_at__lte=end
    )
    hours = (end - start).total_seconds() / 3600
    totals = cycles.aggregate(
        cycles=Count("id"),
        tonnes=Coalesce(Sum("tonnes"), 0.0),
        **{phase: Avg(phase) for phase in PHASES},
    )
    return {
        "from": start,
        "to": end,
        "bucket_s": int(bucket.total_seconds()),
        "cycles": totals["cycles"],
        "tonnes": round(totals["tonnes"], 1),
        "tph": round(totals["tonnes"] / hours, 1) if hours > 0 else None,
        "cycle_time_s": {phase: _round(totals[phase]) for phase in PHASES},
        "tph_series": _series(cycles, start, end, bucket),
        "loading_units": _by_loading_unit(cycles, hours),
    }


def _series(cycles: Any, start: datetime, end: datetime, bucket: timedelta) -> list[dict]:
    """Tonnes per hour in each bucket from ``start`` (the last one may be shorter)."""
    tonnes: dict[int, float] = {}
    counts: dict[int, int] = {}
    size = bucket.total_seconds()
    for ended_at, load in cycles.values_list("ended_at", "tonnes"):
        index = int((ended_at - start).total_seconds() // size)
        tonnes[index] = tonnes.get(index, 0.0) + (load or 0.0)
        counts[index] = counts.get(index, 0) + 1
    series = []
    index, at = 0, start
    while at < end:
        until = min(at + bucket, end)
        hours = (until - at).total_seconds() / 3600
        series.append(
            {
                "at": at,
                "cycles": counts.get(index, 0),
                "tonnes": round(tonnes.get(index, 0.0), 1),
                "tph": round(tonnes.get(index, 0.0) / hours, 1),
            }
        )
        index, at = index + 1, until
    return series


def _by_loading_unit(cycles: Any, hours: float) -> list[dict[str, Any]]:
    rows = (
        cycles.exclude(loading_unit=None)
        .values(name=F("loading_unit__name"), unit=F("loading_unit_id"))
        .annotate(
            cycles=Count("id"),
            tonnes=Coalesce(Sum("tonnes"), 0.0),
            queue_s=Avg("queue_s"),
            load_s=Avg("load_s"),
        )
        .order_by("name")
    )
    return [
        {
            "loadingUnit": str(row["unit"]),
            "name": row["name"],
            "cycles": row["cycles"],
            "tonnes": round(row["tonnes"], 1),
            "tph": round(row["tonnes"] / hours, 1) if hours > 0 else None,
            "queue_s": _round(row["queue_s"]),
            "load_s": _round(row["load_s"]),
        }
        for row in rows
    ]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
