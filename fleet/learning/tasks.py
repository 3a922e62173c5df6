"""The callback of live inference requests: a pool replica's answer becomes a ``Prediction``.

``fleet.learning.serving`` links ``store_prediction`` to every request it sends; the slice
worker that served the request sends it, with the response as its first argument, to fleet's
ordinary Celery worker. It reads the raw outputs the way the training and evaluation code
reads them (output names from the head's manifest), stores the prediction, pushes it to the
truck's site live (event ``prediction``) and hands it to whoever decides on it (signal
``prediction_recorded``: fleet.control's health rules raise the alerts). Nothing is decided here.
A pack of windows (one head, many trucks) comes back to ``store_predictions``, which stores its
rows in one insert and hands each prediction on exactly as ``store_prediction`` does.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
from celery import shared_task
from django.conf import settings
from django.db import connection
from django.utils import timezone
from prometheus_client import Histogram

from fleet.learning.features import FAULT_CLASSES, HORIZONS_S, WINDOW_S, LocalFrame
from fleet.learning.models import ModelVersion, Prediction, ShadowPrediction
from fleet.learning.pipeline.detection import DecisionRule
from fleet.learning.services import read_manifest
from fleet.learning.signals import prediction_recorded
from fleet.live.broadcast import broadcast_on_commit
from fleet.vehicles.models import Equipment
from inference.client import read_pack, read_response

log = logging.getLogger(__name__)

PREDICTION_AGE = Histogram(
    "haulmind_inference_prediction_age_seconds",
    "From the end of a truck's window to its prediction stored, by head: what the whole live "
    "path (resampling, the queue, the batcher, the forward pass, the callback) costs.",
    ["head"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30),
)
# From the first sample of an input window to its last (1 Hz), for callbacks of requests sent
# before meta carried the window's start.
WINDOW = timedelta(seconds=WINDOW_S - 1)


@shared_task(name="learning.store_prediction", ignore_result=True)
def store_prediction(result: Mapping[str, Any], meta: Mapping[str, Any]) -> int | None:
    """Store and broadcast one answer. ``result``: the replica's response (``inference.worker``
    format); ``meta``: what ``serving.callback_meta`` sent along. Returns the Prediction's id,
    or None when the truck is gone."""
    truck = Equipment.objects.filter(id=meta["truck"]).values("id", "site_id").first()
    if truck is None:
        return None
    response = read_response(result)
    head, model_id = str(meta["head"]), str(result.get("model_id") or "")
    window_end = datetime.fromisoformat(meta["window_end"])
    window_start = (
        datetime.fromisoformat(meta["window_start"])
        if meta.get("window_start")
        else window_end - WINDOW
    )
    outputs = interpret(head, model_id, response.outputs, meta)
    prediction = Prediction.objects.create(
        equipment_id=truck["id"],
        model_name=head,
        model_id=model_id,
        window_end=window_end,
        outputs=outputs,
        queue_ms=response.queue_ms,
        compute_ms=response.compute_ms,
        batch_rows=response.batch_rows,
        replica=str(result.get("replica") or "")[:200],
    )
    PREDICTION_AGE.labels(head).observe(
        max(0.0, (prediction.created_at - window_end).total_seconds())
    )
    broadcast_on_commit(truck["site_id"], "prediction", live_event(prediction))
    hand_over(prediction, window_start)
    return prediction.pk


@shared_task(name="learning.store_predictions", ignore_result=True)
def store_predictions(result: Mapping[str, Any], meta: Mapping[str, Any]) -> list[int]:
    """Store a pack's answers in bulk: one Prediction per row, then each broadcast and handed
    to control as ``store_prediction`` does for one. ``result``: the replica's pack result
    (``inference.client.read_pack``); ``meta``: ``{"head", "rows": [callback_meta of each
    row, in the pack's order]}`` (``serving.pack_meta``). Rows of trucks gone are skipped.
    Returns the stored Predictions' ids."""
    rows, metas = read_pack(result), list(meta["rows"])
    if len(rows) != len(metas):
        raise ValueError(f"a pack of {len(rows)} rows came back with {len(metas)} metas")
    head, model_id = str(meta["head"]), str(result.get("model_id") or "")
    replica = str(result.get("replica") or "")[:200]
    sites = dict(
        Equipment.objects.filter(id__in={m["truck"] for m in metas}).values_list("id", "site_id")
    )
    if meta.get("shadow"):
        return _store_shadow(head, model_id, replica, rows, metas, sites)
    stored: list[tuple[Prediction, datetime]] = []
    for response, row in zip(rows, metas, strict=True):
        truck = uuid.UUID(str(row["truck"]))
        if truck not in sites:
            continue
        window_end = datetime.fromisoformat(row["window_end"])
        prediction = Prediction(
            equipment_id=truck,
            model_name=head,
            model_id=model_id,
            window_end=window_end,
            outputs=interpret(head, model_id, response.outputs, {**row, "head": head}),
            queue_ms=response.queue_ms,
            compute_ms=response.compute_ms,
            batch_rows=response.batch_rows,
            replica=replica,
        )
        start = row.get("window_start")
        stored.append((prediction, datetime.fromisoformat(start) if start else window_end - WINDOW))
    Prediction.objects.bulk_create([p for p, _ in stored])
    for prediction, window_start in stored:
        PREDICTION_AGE.labels(head).observe(
            max(0.0, (prediction.created_at - prediction.window_end).total_seconds())
        )
        broadcast_on_commit(sites[prediction.equipment_id], "prediction", live_event(prediction))
        hand_over(prediction, window_start)
    return [p.pk for p, _ in stored]


def _store_shadow(
    head: str,
    model_id: str,
    replica: str,
    rows: list[Any],
    metas: list[Mapping[str, Any]],
    sites: Mapping[uuid.UUID, uuid.UUID],
) -> list[int]:
    """A challenger's answers to live windows: stored apart (``ShadowPrediction``), never
    broadcast nor handed to control. Compared with the champion's by ``fleet.learning.shadow``."""
    shadow = [
        ShadowPrediction(
            equipment_id=uuid.UUID(str(row["truck"])),
            model_name=head,
            model_id=model_id,
            window_end=datetime.fromisoformat(row["window_end"]),
            outputs=interpret(head, model_id, response.outputs, {**row, "head": head}),
            queue_ms=response.queue_ms,
            compute_ms=response.compute_ms,
            batch_rows=response.batch_rows,
            replica=replica,
        )
        for response, row in zip(rows, metas, strict=True)
        if uuid.UUID(str(row["truck"])) in sites
    ]
    ShadowPrediction.objects.bulk_create(shadow)
    return [p.pk for p in shadow]


def hand_over(prediction: Prediction, window_start: datetime) -> None:
    """Give the stored prediction to the deciders. Their failure is logged, not raised: the
    prediction is history either way, and a Celery retry would store it twice."""
    try:
        prediction_recorded.send(
            sender=Prediction,
            prediction_id=prediction.pk,
            equipment_id=prediction.equipment_id,
            head=prediction.model_name,
            model_id=prediction.model_id,
            window_start=window_start,
            window_end=prediction.window_end,
            outputs=prediction.outputs,
        )
    except Exception:
        log.exception("deciding on prediction %s failed; it is stored", prediction.pk)


# Rows deleted per statement: each is a short transaction, so a purge never holds locks long
# or bloats one transaction, however far behind it is.
PURGE_BATCH = 10_000


@shared_task(name="learning.purge_predictions", ignore_result=True)
def purge_predictions(days: int | None = None) -> int:
    """Delete the predictions whose window ended more than ``days`` (default
    ``settings.PREDICTION_RETENTION_DAYS``) ago, in batches taken by the ``window_end`` index.
    Scheduled hourly by Celery beat; returns how many rows went."""
    keep = int(settings.PREDICTION_RETENTION_DAYS if days is None else days)
    cutoff = timezone.now() - timedelta(days=keep)
    deleted = 0
    # Challengers' shadow answers age out with the champions' (same retention, same index).
    for table in (Prediction._meta.db_table, ShadowPrediction._meta.db_table):
        sql = (
            f"DELETE FROM {table} WHERE id IN "  # noqa: S608 (the table name is our own)
            f"(SELECT id FROM {table} WHERE window_end < %s LIMIT %s)"
        )
        while True:
            with connection.cursor() as cursor:
                cursor.execute(sql, [cutoff, PURGE_BATCH])
                n = cursor.rowcount
            deleted += n
            if n < PURGE_BATCH:
                break
    if deleted:
        log.info("purged %d predictions older than %d days", deleted, keep)
    return deleted


def live_event(prediction: Prediction) -> dict[str, Any]:
    """The websocket payload of one prediction."""
    return {
        "equipmentId": str(prediction.equipment_id),
        "model": prediction.model_name,
        "modelId": prediction.model_id,
        "windowEnd": prediction.window_end.isoformat(),
        "outputs": prediction.outputs,
        "queueMs": prediction.queue_ms,
        "computeMs": prediction.compute_ms,
    }


def interpret(
    head: str,
    model_id: str,
    outputs: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """A head's raw outputs (a batch of one) as the JSON a person and the control room read."""
    if head == "fault":
        return fault_outputs(outputs, manifest(model_id))
    if head == "eta":
        p10, p50, p90 = (float(v) for v in outputs["eta_s"][0])
        return {"p10_s": p10, "p50_s": p50, "p90_s": p90}
    if head == "trajectory":
        return trajectory_outputs(outputs["positions_m"][0], meta["origin"])
    if head == "payload":
        return {"tonnes": float(np.ravel(outputs["payload_t"])[0])}
    return {name: np.asarray(value).tolist() for name, value in outputs.items()}


def manifest(model_id: str) -> dict[str, Any]:
    """The manifest of a registered version ("fault@3"), or {} if it is not registered."""
    name, _, version = model_id.rpartition("@")
    path = (
        ModelVersion.objects.filter(name=name, version=int(version or 0))
        .values_list("path", flat=True)
        .first()
    )
    return _manifest_at(path) if path else {}


@lru_cache(maxsize=64)
def _manifest_at(path: str) -> dict[str, Any]:
    # A checkpoint directory never changes once registered (versions are immutable).
    return read_manifest(path)[1]


def fault_outputs(outputs: Mapping[str, np.ndarray], manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Probabilities by fault class, the anomaly figures, and the decision rule the version was
    calibrated with (control's default for it: whether they raise an alert is decided there)."""
    probs = np.asarray(outputs["probs"][0], dtype=np.float64)
    channels = manifest.get("channel_names") or ()
    top = int(np.ravel(outputs["top_channel"])[0]) if "top_channel" in outputs else -1
    rule = DecisionRule(**(manifest.get("extra") or {}).get("decision", {}))
    return {
        "probabilities": dict(zip(FAULT_CLASSES, probs.round(6).tolist(), strict=True)),
        "anomaly_score": _scalar(outputs, "anomaly_score"),
        "anomalous": bool(_scalar(outputs, "anomalous")),
        "top_channel": channels[top] if 0 <= top < len(channels) else None,
        "rule": rule.as_dict(),
    }


def trajectory_outputs(positions_m: np.ndarray, origin: list[float]) -> dict[str, Any]:
    """Positions 1, 3 and 5 s ahead in the truck's frame (forward, left: the training target)
    and on the map (WGS84), turned back through the heading of the window's last fix."""
    lon, lat, heading = (float(v) for v in origin)
    h = np.radians(heading)
    fwd, left = positions_m[:, 0].astype(np.float64), positions_m[:, 1].astype(np.float64)
    # Inverse of datasets.cut_windows' rotation (compass heading: x east, y north).
    east = fwd * np.sin(h) - left * np.cos(h)
    north = fwd * np.cos(h) + left * np.sin(h)
    lons, lats = LocalFrame(lon, lat).to_lonlat(east, north)
    return {
        "horizons_s": list(HORIZONS_S),
        "truck_frame_m": np.round(positions_m.astype(np.float64), 3).tolist(),
        "positions": [
            [round(float(a), 7), round(float(b), 7)] for a, b in zip(lons, lats, strict=True)
        ],
    }


def _scalar(outputs: Mapping[str, np.ndarray], name: str) -> float | None:
    if name not in outputs:
        return None
    return float(np.ravel(outputs[name])[0])
