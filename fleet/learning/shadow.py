"""A challenger in shadow beside its champion: both versions' live figures, side by side.

Live serving sends every window it sends a head's champion to that head's challenger too
(``serving``, deployment ``<head>.shadow``); the challenger's answers are stored as
``ShadowPrediction`` rows and acted on by no one. ``side_by_side(name)`` reads both versions'
answers over the same period (since the challenger took the alias, at most ``MAX_HOURS``, the
newest ``MAX_ROWS`` of each) and measures each version on them:

- every head: ``windows``, ``trucks``, latency (``compute_ms`` / ``queue_ms`` at p50 and p95,
  and ``age_s``: from the window's last sample to the answer stored, the whole live path);
- ``fault``: ``positive_rate`` (share of windows with a fault class above its threshold in the
  version's own rule: the kind's own where the rule has one), ``alarms`` (episodes of its own decision rule, ``pipeline.detection``) and
  ``alarms_per_truck_hour``; against the labels that have arrived (workshop records and
  confirmed fault alerts overlapping the period, ``pipeline.evaluation.score_faults``):
  ``labelled_faults``, ``precision``, ``recall``, ``f1``;
- ``eta``: ``mae_s`` of the P50 and ``coverage`` of [P10, P90] against the arrival the haul
  cycles tell (the truck's next loading or dump start), on the windows whose arrival is known;
- ``payload``: ``mae_t`` against the on-board meter's reading then;
- ``trajectory``: ``ade_m`` against the positions the truck reported 1, 3 and 5 s later (on its
  newest ``TRAJECTORY_ROWS`` answers);
- the challenger also: ``agreement`` with the champion on the windows both answered
  (``pairs``; fault: share deciding the same class, eta / payload: mean absolute difference,
  trajectory: mean distance between the 5 s positions).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from fleet.control.models import Alert
from fleet.learning.features import FAULT_CLASSES, HORIZONS_S, LocalFrame
from fleet.learning.models import ModelAlias, Prediction, ShadowPrediction
from fleet.learning.pipeline.detection import DecisionRule, detections
from fleet.learning.pipeline.evaluation import FaultEvent, score_faults
from fleet.telemetry import queries
from fleet.telemetry.models import HaulCycle
from fleet.vehicles.models import WorkshopRecord

MAX_HOURS = 24
MAX_ROWS = 20_000
TRAJECTORY_ROWS = 2_000
FIX_WITHIN_S = 0.6  # a reported position this close to the horizon's second is where it was


def side_by_side(
    name: str, *, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Any]:
    """Both versions of ``name`` (champion and challenger) measured on their live answers of
    the same period; ``challenger`` is None when there is none in shadow."""
    aliases = {
        row.alias: row for row in ModelAlias.objects.select_related("version").filter(name=name)
    }
    champion, challenger = aliases.get("champion"), aliases.get("challenger")
    until = until or timezone.now()
    if since is None:
        started = challenger.updated_at if challenger else until - timedelta(hours=1)
        since = max(started, until - timedelta(hours=MAX_HOURS))
    out: dict[str, Any] = {
        "name": name,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "champion": None,
        "challenger": None,
    }
    champ_rows = (
        _rows(Prediction, str(champion.version), since, until) if champion is not None else []
    )
    if champion is not None:
        out["champion"] = {
            "version": str(champion.version),
            "version_id": champion.version_id,
            **version_figures(name, champ_rows, since, until),
        }
    if challenger is not None and (
        champion is None or challenger.version_id != champion.version_id
    ):
        rows = _rows(ShadowPrediction, str(challenger.version), since, until)
        out["challenger"] = {
            "version": str(challenger.version),
            "version_id": challenger.version_id,
            **version_figures(name, rows, since, until),
            "agreement": agreement(name, champ_rows, rows),
        }
    return out


def _rows(model: Any, model_id: str, since: datetime, until: datetime) -> list[tuple]:
    rows = (
        model.objects.filter(model_id=model_id, window_end__gte=since, window_end__lte=until)
        .order_by("-window_end")
        .values_list(
            "equipment_id", "window_end", "outputs", "queue_ms", "compute_ms", "created_at"
        )
    )
    return list(rows[:MAX_ROWS])


def version_figures(
    head: str, rows: list[tuple], since: datetime, until: datetime
) -> dict[str, Any]:
    """One version's figures on its answers ``rows`` (equipment, window end, outputs, queue
    ms, compute ms, stored at)."""
    figures: dict[str, Any] = {"windows": len(rows), "trucks": len({r[0] for r in rows})}
    if not rows:
        return figures
    compute = np.asarray([r[4] for r in rows if r[4] is not None], dtype=float)
    queue = np.asarray([r[3] for r in rows if r[3] is not None], dtype=float)
    age = np.asarray([(r[5] - r[1]).total_seconds() for r in rows], dtype=float)
    figures.update(
        compute_ms_p50=_q(compute, 50),
        compute_ms_p95=_q(compute, 95),
        queue_ms_p50=_q(queue, 50),
        age_s_p50=_q(age, 50),
        age_s_p95=_q(age, 95),
    )
    if head == "fault":
        figures.update(_fault_figures(rows, since, until))
    elif head == "eta":
        figures.update(_eta_figures(rows))
    elif head == "payload":
        figures.update(_payload_figures(rows, since, until))
    elif head == "trajectory":
        figures.update(_trajectory_figures(rows[:TRAJECTORY_ROWS]))
    return figures


def _q(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


# --- fault ------------------------------------------------------------------------------------------


def _fault_decision(outputs: Mapping[str, Any]) -> str:
    """The class a fault answer names by its own rule: of the kinds above their threshold (each
    kind's own), the likeliest ("normal" when none passes)."""
    rule = DecisionRule(**(outputs.get("rule") or {}))
    probs = outputs.get("probabilities") or {}
    passing = [k for k in FAULT_CLASSES[1:] if float(probs.get(k, 0.0)) > rule.threshold_for(k)]
    return max(passing, key=lambda k: float(probs.get(k, 0.0))) if passing else "normal"


def _fault_figures(rows: list[tuple], since: datetime, until: datetime) -> dict[str, Any]:
    trucks = sorted({r[0] for r in rows})
    unit_of = {t: i for i, t in enumerate(trucks)}
    unit = np.asarray([unit_of[r[0]] for r in rows])
    time_s = np.asarray([r[1].timestamp() for r in rows])
    probs = np.asarray(
        [
            [float((r[2].get("probabilities") or {}).get(k, 0.0)) for k in FAULT_CLASSES]
            for r in rows
        ]
    )
    rule = DecisionRule(**(rows[0][2].get("rule") or {}))
    cuts = np.asarray([rule.threshold_for(k) for k in FAULT_CLASSES[1:]])
    positive = (probs[:, 1:] > cuts).any(axis=1)
    found = detections(unit, time_s, probs, FAULT_CLASSES, rule)
    truck_hours = len(rows) * float(settings.INFERENCE_INTERVAL_S) / 3600.0
    events = list(fault_events(trucks, since, until))
    score = score_faults(events, found)
    return {
        "threshold": rule.threshold,
        "thresholds": dict(rule.thresholds),
        "consecutive": rule.consecutive,
        "positive_rate": _r(positive.mean(), 4),
        "alarms": len(found),
        "alarms_per_truck_hour": _r(len(found) / truck_hours if truck_hours else None),
        "labelled_faults": len(events),
        "precision": _r(score.precision) if found else None,
        "recall": _r(score.recall) if events else None,
        "f1": _r(score.f1) if events and found else None,
    }


def fault_events(trucks: list[Any], since: datetime, until: datetime) -> Iterable[FaultEvent]:
    """The labelled faults of ``trucks`` (index = unit) overlapping [since, until]: workshop
    records and confirmed fault alerts, as the evaluation's events."""
    unit_of = {t: i for i, t in enumerate(trucks)}
    n = 0
    records = WorkshopRecord.objects.filter(
        equipment_id__in=trucks, kind__in=FAULT_CLASSES[1:]
    ).filter(Q(repaired_at__isnull=True) | Q(repaired_at__gte=since))
    for r in records.only("equipment_id", "kind", "found_at", "onset_at", "repaired_at"):
        onset = r.onset_at or r.found_at
        if onset <= until:
            end = (r.repaired_at or until).timestamp()
            yield FaultEvent(n, unit_of[r.equipment_id], r.kind, onset.timestamp(), end)
            n += 1
    alerts = Alert.objects.filter(
        equipment_id__in=trucks,
        kind__startswith="fault:",
        verdict=Alert.Verdict.CONFIRMED,
        first_seen_at__lte=until,
    ).filter(Q(resolved_at__isnull=True) | Q(resolved_at__gte=since))
    for a in alerts.only("equipment_id", "kind", "first_seen_at", "resolved_at"):
        kind = a.kind.split(":", 1)[1]
        end = (a.resolved_at or until).timestamp()
        yield FaultEvent(n, unit_of[a.equipment_id], kind, a.first_seen_at.timestamp(), end)
        n += 1


# --- eta, payload, trajectory ----------------------------------------------------------------------


def arrivals(trucks: Iterable[Any]) -> dict[Any, np.ndarray]:
    """Per truck, the sorted epoch seconds of its stops the haul cycles tell: each loading
    start, and each dump start (loading start + load + haul time)."""
    out: dict[Any, list[float]] = {}
    cycles = HaulCycle.objects.filter(equipment_id__in=list(trucks))
    for truck, start, load_s, haul_s in cycles.values_list(
        "equipment_id", "started_at", "load_s", "haul_s"
    ):
        t = start.timestamp()
        out.setdefault(truck, []).extend((t, t + load_s + haul_s))
    return {truck: np.sort(np.asarray(v)) for truck, v in out.items()}


def _eta_figures(rows: list[tuple]) -> dict[str, Any]:
    stops = arrivals({r[0] for r in rows})
    err, inside = [], []
    for truck, end, outputs, *_ in rows:
        times = stops.get(truck)
        if times is None:
            continue
        t = end.timestamp()
        i = np.searchsorted(times, t, side="right")
        if i >= len(times):
            continue  # the stop it drives to is not a cycle yet: the label has not arrived
        actual = times[i] - t
        err.append(abs(float(outputs["p50_s"]) - actual))
        inside.append(float(outputs["p10_s"]) <= actual <= float(outputs["p90_s"]))
    return {
        "labelled": len(err),
        "mae_s": _r(np.mean(err) if err else None, 1),
        "coverage": _r(np.mean(inside) if inside else None),
    }


def _payload_figures(rows: list[tuple], since: datetime, until: datetime) -> dict[str, Any]:
    params = {
        "trucks": list({r[0] for r in rows}),
        "since": since - timedelta(hours=1),
        "until": until,
    }
    readings: dict[Any, list[tuple[float, float]]] = {}
    for truck, at, value in queries.payload_readings(**params):
        readings.setdefault(truck, []).append((at, value))
    err = []
    for truck, end, outputs, *_ in rows:
        series = readings.get(truck)
        if not series:
            continue
        times = np.asarray([s[0] for s in series])
        i = np.searchsorted(times, end.timestamp(), side="right") - 1
        if i >= 0:
            err.append(abs(float(outputs["tonnes"]) - series[i][1]))
    return {"labelled": len(err), "mae_t": _r(np.mean(err) if err else None, 2)}


def _trajectory_figures(rows: list[tuple]) -> dict[str, Any]:
    ends = [r[1] for r in rows]
    params = {
        "trucks": list({r[0] for r in rows}),
        "since": min(ends),
        "until": max(ends) + timedelta(seconds=max(HORIZONS_S) + 1),
    }
    fixes: dict[Any, list[tuple[float, float, float]]] = {}
    for truck, at, lon, lat in queries.position_fixes(**params):
        fixes.setdefault(truck, []).append((at, lon, lat))
    arrays = {t: np.asarray(v) for t, v in fixes.items()}
    errors = []
    for truck, end, outputs, *_ in rows:
        seen = arrays.get(truck)
        if seen is None:
            continue
        predicted = outputs.get("positions") or []
        for h, (lon, lat) in zip(HORIZONS_S, predicted, strict=False):
            want = end.timestamp() + h
            i = int(np.argmin(np.abs(seen[:, 0] - want)))
            if abs(seen[i, 0] - want) > FIX_WITHIN_S:
                continue
            dx, dy = LocalFrame(seen[i, 1], seen[i, 2]).to_local(np.array([lon]), np.array([lat]))
            errors.append(float(np.hypot(dx[0], dy[0])))
    return {"labelled": len(errors), "ade_m": _r(np.mean(errors) if errors else None, 2)}


# --- agreement --------------------------------------------------------------------------------------


def agreement(head: str, champion: list[tuple], challenger: list[tuple]) -> dict[str, Any]:
    """How the challenger's answers compare with the champion's on the windows both answered."""
    theirs = {(r[0], r[1]): r[2] for r in champion}
    pairs = [(theirs[(r[0], r[1])], r[2]) for r in challenger if (r[0], r[1]) in theirs]
    out: dict[str, Any] = {"pairs": len(pairs)}
    if not pairs:
        return out
    if head == "fault":
        same = [_fault_decision(a) == _fault_decision(b) for a, b in pairs]
        out["same_decision"] = _r(np.mean(same), 4)
    elif head == "eta":
        out["p50_diff_s"] = _r(np.mean([abs(a["p50_s"] - b["p50_s"]) for a, b in pairs]), 1)
    elif head == "payload":
        out["tonnes_diff"] = _r(np.mean([abs(a["tonnes"] - b["tonnes"]) for a, b in pairs]), 2)
    elif head == "trajectory":
        gaps = [
            float(np.hypot(*np.subtract(a["truck_frame_m"][-1], b["truck_frame_m"][-1])))
            for a, b in pairs
            if a.get("truck_frame_m") and b.get("truck_frame_m")
        ]
        out["position_5s_diff_m"] = _r(np.mean(gaps) if gaps else None, 2)
    return out


def since_hours(hours: float | None) -> datetime | None:
    """The start of the last ``hours`` (at most MAX_HOURS); None for the default period."""
    if not hours:
        return None
    return timezone.now() - timedelta(hours=min(float(hours), MAX_HOURS))


def shadowed_names() -> list[str]:
    """Names with a challenger alias (the ones ``side_by_side`` has two versions of)."""
    return sorted(
        ModelAlias.objects.filter(alias=ModelAlias.Alias.CHALLENGER).values_list("name", flat=True)
    )
