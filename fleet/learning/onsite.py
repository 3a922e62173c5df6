"""Learning on site: a mine's own stored history trains its next heads (``manage.py
train_models --site SLUG --since ISO``).

Windows come from the history tables through the code live serving uses: each haul truck's
stored positions and BasicMachineHealthV2 readings read by ``telemetry.queries.recent_*`` and
resampled to 1 Hz by ``recent.RecentTelemetry`` / ``recent.series`` (gaps held as in training), cut every ``STRIDE_S`` and turned into every head's inputs by
``features.window_inputs``; the ETA inputs and the road ahead by ``routes.route_inputs`` at
each window's end, as live.
Labels come from what the mine records:

- **faults**: workshop records (``vehicles.WorkshopRecord``: a class active from its onset, or
  when it was found, until its repair) and operators' verdicts on fault alerts (a confirmed
  ``fault:<class>`` alert is that class from its first sighting to its resolution; a false
  alarm is normal running). A window with no record is normal: the workshop is taken to record
  every fault it repairs. A fault's first ``FAULT_SETTLE_S`` are left out, as in training.
- **ETA**: haul cycles (``telemetry.HaulCycle``): a truck on its way to a dump arrives at the
  cycle's loading start + load + haul time, one on its way to a loading unit at the next
  cycle's start.
- **payload**: the on-board meter's last HaulTruckPayloadV1 reading (the site's only weight).
- **trajectory**: where the truck reported itself 1, 3 and 5 s after the window, in the frame
  of its last fix.

The heads are trained (``models.fit_head``, budgets of ``pipeline.training.TrainConfig``) on
the champion's backbone, frozen, validated on the last fifth of the span (time order: no
window of the validation part precedes a training one), saved beside the champions, registered
and made **challengers**: they run in shadow (``fleet.learning.shadow``) until a supervisor
promotes them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from fleet.control.models import Alert
from fleet.learning import recent
from fleet.learning.features import (
    ETA_FEATURES,
    FAULT_CLASSES,
    HEADS,
    HISTORY_S,
    HORIZONS_S,
    L1_NAME,
    RAW_CHANNELS,
    STRIDE_S,
    WINDOW_S,
    no_route_ahead,
    trajectory_inputs,
    window_inputs,
)
from fleet.learning.models import ModelAlias, ModelVersion
from fleet.learning.serving import HEALTH_STALE_S
from fleet.mine.models import Site
from fleet.telemetry import queries
from fleet.telemetry.models import HaulCycle
from fleet.vehicles.models import Equipment, WorkshopRecord

log = logging.getLogger(__name__)

FAULT_SETTLE_S = 60.0  # as pipeline.training: a fault's first minute looks like normal running
PAYLOAD_MAX_AGE_S = 3600  # a meter reading older than this says nothing of the body now
ETA_MAX_S = 3600.0  # a next stop further than this is not one the truck is driving to
MIN_ROWS = 20  # a head with fewer labelled windows is not trained (and says so)
VAL_SHARE = 0.2

_TO_DUMP = ETA_FEATURES.index("to_dump")


@dataclass
class SiteHistory:
    """Every window of a site's span with every head's inputs and whatever labels exist
    (NaN where there is none)."""

    trucks: list[uuid.UUID]
    unit: np.ndarray  # [N] index into trucks
    end_s: np.ndarray  # [N] epoch second of the window's last sample
    window: np.ndarray  # [N, C, L]
    context: np.ndarray  # [N, F]
    trajectory: np.ndarray  # [N, 4]
    ahead: np.ndarray  # [N, len(AHEAD_FEATURES)]: the road ahead, planned as live
    fault_active: np.ndarray  # [N, K] bool
    fault_elapsed_s: np.ndarray  # [N]: since the onset of the active fault; NaN without
    traj: np.ndarray  # [N, 3, 2]
    payload_t: np.ndarray  # [N]
    eta: np.ndarray  # [N, len(ETA_FEATURES)]
    eta_s: np.ndarray  # [N]
    labels: dict[str, int] = field(default_factory=dict)  # what the labels came from

    def __len__(self) -> int:
        return len(self.end_s)

    def task(self, head: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(rows, targets, features) of the windows ``head`` has a label for, in time order."""
        if head == "fault":
            rows = np.flatnonzero(~(self.fault_elapsed_s < FAULT_SETTLE_S))
            targets, feats = self.fault_active.astype(np.float32), self.context
        elif head == "eta":
            rows = np.flatnonzero(np.isfinite(self.eta_s) & np.isfinite(self.eta).all(axis=1))
            targets, feats = self.eta_s, self.eta
        elif head == "trajectory":
            rows = np.flatnonzero(np.isfinite(self.traj).all(axis=(1, 2)))
            targets = self.traj
            feats = trajectory_inputs(self.trajectory, self.ahead)
        elif head == "payload":
            rows = np.flatnonzero(np.isfinite(self.payload_t))
            targets, feats = self.payload_t, None
        else:
            raise ValueError(f"unknown head {head!r}")
        rows = rows[np.argsort(self.end_s[rows], kind="stable")]
        return rows, targets[rows], None if feats is None else feats[rows].astype(np.float32)


# --- windows from the history tables -------------------------------------------------------------


def site_history(
    site: Site,
    since: datetime,
    until: datetime | None = None,
    *,
    stride_s: int = STRIDE_S,
    say: Callable[[str], None] = log.info,
) -> SiteHistory:
    """The windows of ``site``'s haul trucks ending in [since, until] (every ``stride_s`` s,
    on whole multiples of it, so every truck's windows of one moment are planned together)
    with their labels."""
    until = until or timezone.now()
    trucks = list(
        Equipment.objects.filter(site=site, kind=Equipment.Kind.HAUL_TRUCK)
        .order_by("name")
        .values_list("id", flat=True)
    )
    parts: list[dict[str, np.ndarray]] = []
    fixes: dict[tuple[int, int], tuple[float, float, float]] = {}
    for unit, truck in enumerate(trucks):
        part = _truck_windows(unit, truck, since, until, stride_s, fixes)
        if part is not None:
            parts.append(part)
    if not parts:
        raise ValueError(f"{site.slug}: no haul truck has a window of history since {since}")
    joined = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    n = len(joined["end_s"])
    say(f"{site.slug}: {n} windows of {len(parts)} trucks from {since:%Y-%m-%d %H:%M} on")
    history = SiteHistory(
        trucks=trucks,
        unit=joined["unit"],
        end_s=joined["end_s"],
        window=joined["window"],
        context=joined["context"],
        trajectory=joined["trajectory"],
        ahead=np.tile(no_route_ahead(), (n, 1)),
        fault_active=np.zeros((n, len(FAULT_CLASSES)), dtype=bool),
        fault_elapsed_s=np.full(n, np.nan),
        traj=joined["traj"],
        payload_t=joined["payload_t"],
        eta=np.full((n, len(ETA_FEATURES)), np.nan, dtype=np.float32),
        eta_s=np.full(n, np.nan),
    )
    _fault_labels(history, since, until)
    _route_labels(history, site, fixes)
    return history


def _truck_windows(
    unit: int,
    truck: uuid.UUID,
    since: datetime,
    until: datetime,
    stride_s: int,
    fixes: dict[tuple[int, int], tuple[float, float, float]],
) -> dict[str, np.ndarray] | None:
    """One truck's windows and the labels read off its own telemetry (trajectory, payload);
    ``fixes`` gets its last fix (lon, lat, heading) at each window's end (the route's plan
    starts there)."""
    # The first window's fault context reaches HISTORY_S back, as live. The rows are read and
    # resampled by live serving's own code (``queries.recent_*``, ``recent.RecentTelemetry``,
    # ``recent.series``), its ring sized to hold the whole span.
    begin = since - timedelta(seconds=HISTORY_S)
    last = int(until.timestamp())
    positions = [p for p in queries.recent_positions({truck: begin}) if int(p[1]) <= last]
    health = [
        h for h in queries.recent_events({truck: begin}, recent.HEALTH) if int(h[1]) // 1000 <= last
    ]
    payloads = [
        (int(at), tonnes) for _, at, tonnes in queries.payload_readings([truck], begin, until)
    ]
    if len(positions) < WINDOW_S or not health:
        return None
    start, end = int(positions[0][1]), int(positions[-1][1])
    span = end - start + 1
    ring = recent.RecentTelemetry(capacity_s=max(span, HISTORY_S), rows=1)
    ring.merge(positions, health)
    seconds = ring.seconds(truck, begin, history_s=span)
    if seconds is None:
        return None
    series, _ = recent.series(seconds)
    if series is None:
        return None
    start = seconds.start
    first = max(int(since.timestamp()), start + WINDOW_S - 1)
    ends = np.arange(-(-first // stride_s) * stride_s, end + 1, stride_s, dtype=np.int64)
    # Decided only where live serving would decide: a fix in that second and a fresh reading.
    fix_at = {int(p[1]): p[2:5] for p in positions}
    health_s = np.asarray(sorted({int(h[1]) // 1000 for h in health}), dtype=np.int64)
    fresh = _latest_before(health_s, ends) >= ends - HEALTH_STALE_S
    ends = ends[np.asarray([int(e) in fix_at for e in ends], dtype=bool) & fresh]
    if not len(ends):
        return None
    rows = ends - start
    built = window_inputs(series[None], np.zeros(len(rows), dtype=np.int64), rows, WINDOW_S)
    for e in ends:
        lon, lat, heading = fix_at[int(e)]
        fixes[(unit, int(e))] = (float(lon), float(lat), 0.0 if heading is None else float(heading))
    return {
        "unit": np.full(len(ends), unit, dtype=np.int64),
        "end_s": ends,
        "window": built.window,
        "context": built.context,
        "trajectory": built.trajectory,
        "traj": _trajectory_targets(series, rows, {s - start for s in fix_at}),
        "payload_t": _payload_at(payloads, ends),
    }


def _latest_before(seconds: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The latest of sorted ``seconds`` at or before each of ``at`` (-inf-like where none)."""
    i = np.searchsorted(seconds, at, side="right") - 1
    return np.where(i >= 0, seconds[np.maximum(i, 0)], np.iinfo(np.int64).min // 2)


def _trajectory_targets(series: np.ndarray, rows: np.ndarray, fixed: set[int]) -> np.ndarray:
    """[N, 3, 2] displacement 1, 3, 5 s after each row in the frame of its fix (forward,
    left): the training target, from the positions the truck reported then (NaN where it
    reported none)."""
    x, y = series[RAW_CHANNELS.index("x_m")], series[RAW_CHANNELS.index("y_m")]
    heading = np.radians(series[RAW_CHANNELS.index("heading_deg")])
    out = np.full((len(rows), len(HORIZONS_S), 2), np.nan, dtype=np.float32)
    for i, r in enumerate(rows):
        for j, h in enumerate(HORIZONS_S):
            if r + h >= series.shape[1] or int(r + h) not in fixed:
                continue
            dx, dy = float(x[r + h] - x[r]), float(y[r + h] - y[r])
            s, c = np.sin(heading[r]), np.cos(heading[r])
            # Compass heading: x east, y north; forward = (sin h, cos h), left = (-cos h, sin h).
            out[i, j] = (dx * s + dy * c, -dx * c + dy * s)
    return out


def _payload_at(payloads: Sequence[tuple[int, float]], ends: np.ndarray) -> np.ndarray:
    if not payloads:
        return np.full(len(ends), np.nan)
    seconds = np.asarray([int(p[0]) for p in payloads], dtype=np.int64)
    values = np.asarray([np.nan if p[1] is None else float(p[1]) for p in payloads])
    i = np.searchsorted(seconds, ends, side="right") - 1
    ok = (i >= 0) & (ends - seconds[np.maximum(i, 0)] <= PAYLOAD_MAX_AGE_S)
    return np.where(ok, values[np.maximum(i, 0)], np.nan)


# --- labels from the records ----------------------------------------------------------------------


def _fault_labels(history: SiteHistory, since: datetime, until: datetime) -> None:
    """Workshop records and confirmed fault alerts mark their class active over their span."""
    index = {truck: unit for unit, truck in enumerate(history.trucks)}
    spans: list[tuple[int, int, float, float]] = []  # unit, class, onset, end (epoch s)
    records = WorkshopRecord.objects.filter(
        equipment_id__in=history.trucks, kind__in=FAULT_CLASSES[1:]
    ).filter(Q(repaired_at__isnull=True) | Q(repaired_at__gte=since))
    for r in records.only("equipment_id", "kind", "found_at", "onset_at", "repaired_at"):
        onset = (r.onset_at or r.found_at).timestamp()
        end = (r.repaired_at or until).timestamp()
        spans.append((index[r.equipment_id], FAULT_CLASSES.index(r.kind), onset, end))
        history.labels[f"workshop_{r.source}"] = history.labels.get(f"workshop_{r.source}", 0) + 1
    alerts = Alert.objects.filter(
        equipment_id__in=history.trucks, kind__startswith="fault:", first_seen_at__lte=until
    ).exclude(verdict="")
    for a in alerts.only("equipment_id", "kind", "verdict", "first_seen_at", "resolved_at"):
        kind = a.kind.split(":", 1)[1]
        key = f"verdict_{a.verdict}"
        history.labels[key] = history.labels.get(key, 0) + 1
        if a.verdict == Alert.Verdict.CONFIRMED and kind in FAULT_CLASSES[1:]:
            end = (a.resolved_at or until).timestamp()
            spans.append(
                (index[a.equipment_id], FAULT_CLASSES.index(kind), a.first_seen_at.timestamp(), end)
            )
    for unit, k, onset, end in spans:
        inside = (history.unit == unit) & (history.end_s >= onset) & (history.end_s < end)
        history.fault_active[inside, k] = True
        elapsed = history.end_s[inside] - onset
        current = history.fault_elapsed_s[inside]
        # The earliest-onset fault names the window, as the simulated labels do.
        history.fault_elapsed_s[inside] = np.fmax(current, elapsed)
    history.fault_active[:, 0] = ~history.fault_active[:, 1:].any(axis=1)
    history.labels["fault_windows"] = int((~history.fault_active[:, 0]).sum())


def _route_labels(
    history: SiteHistory, site: Site, fixes: dict[tuple[int, int], tuple[float, float, float]]
) -> None:
    """The route inputs planned as live at each window's end (the road ahead, the ETA
    features), and the arrival the haul cycles tell."""
    from fleet.learning import routes

    cycles = HaulCycle.objects.filter(equipment_id__in=history.trucks).order_by("started_at")
    loading: dict[int, list[float]] = {}
    dumping: dict[int, list[float]] = {}
    index = {truck: unit for unit, truck in enumerate(history.trucks)}
    for c in cycles.only("equipment_id", "started_at", "load_s", "haul_s"):
        unit = index[c.equipment_id]
        loading.setdefault(unit, []).append(c.started_at.timestamp())
        dumping.setdefault(unit, []).append(c.started_at.timestamp() + c.load_s + c.haul_s)
    history.labels["haul_cycles"] = sum(len(v) for v in loading.values())
    for moment in np.unique(history.end_s):
        rows = np.flatnonzero(history.end_s == moment)
        trucks = {
            history.trucks[int(history.unit[r])]: (
                site.pk,
                *fixes[(int(history.unit[r]), int(moment))],
            )
            for r in rows
        }
        planned = routes.route_inputs(trucks, datetime.fromtimestamp(int(moment), UTC))
        for r in rows:
            unit = int(history.unit[r])
            found = planned.get(history.trucks[unit])
            if found is None:
                continue
            history.ahead[r] = found.ahead
            if found.eta is None:
                continue
            history.eta[r] = found.eta
            stops = dumping if found.eta[_TO_DUMP] >= 0.5 else loading
            after = [t for t in stops.get(unit, ()) if t > moment]
            if after and after[0] - moment <= ETA_MAX_S:
                history.eta_s[r] = after[0] - moment


# --- training ---------------------------------------------------------------------------------------


@dataclass
class OnsiteRun:
    """What ``train_challengers`` did: a line per head, the versions registered."""

    site: str
    since: datetime
    until: datetime
    windows: int
    labels: dict[str, int]
    registered: list[ModelVersion] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def champion_backbone(head: str) -> ModelVersion:
    """The backbone the champion ``head`` runs on (else the L1 champion): the one a challenger
    is trained on, so it differs from the champion in its head alone."""
    alias = ModelAlias.objects.select_related("version__parent").filter(
        name=head, alias=ModelAlias.Alias.CHAMPION
    )
    row = alias.first()
    if row is not None and row.version.parent is not None:
        return row.version.parent
    fallback = (
        ModelAlias.objects.select_related("version")
        .filter(name=L1_NAME, alias=ModelAlias.Alias.CHAMPION)
        .first()
    )
    if fallback is None:
        raise ValueError(f"no champion {head} head or {L1_NAME} backbone to train on")
    return fallback.version


def train_challengers(
    site: Site,
    since: datetime,
    until: datetime | None = None,
    *,
    by: Any = None,
    heads: Sequence[str] = HEADS,
    head_seconds: float | None = None,
    head_epochs: int | None = None,
    device: str = "cpu",
    seed: int = 0,
    root: Path | str | None = None,
    say: Callable[[str], None] = log.info,
) -> OnsiteRun:
    """Train the heads on ``site``'s history since ``since``, save them under ``root``
    (default ``settings.MODELS_DIR``), register them (into the artifact store) and make them
    challengers. A head without enough labelled windows is left
    out (the run says why)."""
    # Imported here: PyTorch is loaded by the processes that train, not by every one that
    # imports this app.
    from fleet.learning import services
    from fleet.learning.pipeline.training import TaskData, TrainConfig, _calibrate_eta, head_config
    from fleet.learning.runs import next_version
    from models import export_checkpoint_onnx, fit_head, load_backbone, save_head

    until = until or timezone.now()
    history = site_history(site, since, until, say=say)
    run = OnsiteRun(site.slug, since, until, len(history), dict(history.labels))
    defaults = TrainConfig()
    root = Path(root or settings.MODELS_DIR)
    version = ""
    for head in heads:
        rows, targets, feats = history.task(head)
        if len(rows) < MIN_ROWS:
            run.lines.append(f"{head}: {len(rows)} labelled windows (< {MIN_ROWS}): not trained")
            continue
        if head == "fault" and not targets[:, 1:].any():
            run.lines.append(f"{head}: no window of a recorded fault: not trained")
            continue
        parent = champion_backbone(head)
        local = services.local_checkpoint(parent.path)  # fetched from the artifact store
        backbone = load_backbone(local, device=device)
        if not version:
            version = next_version(root)
        _stage_backbone(root, backbone.checkpoint_id, local)
        cut = int(len(rows) * (1 - VAL_SHARE))
        train = TaskData(
            rows[:cut], history.window[rows[:cut]], targets[:cut], _part(feats, cut, True)
        )
        val = TaskData(
            rows[cut:], history.window[rows[cut:]], targets[cut:], _part(feats, cut, False)
        )
        say(f"{head}: {len(train.rows)} windows to train, {len(val.rows)} to validate")
        trained = fit_head(
            backbone,
            head,
            train.windows,
            train.targets,
            train.features,
            config=head_config(head),
            val=val.val() if len(val.rows) else None,
            epochs=head_epochs or defaults.head_epochs,
            patience=defaults.head_patience,
            max_seconds=head_seconds if head_seconds is not None else defaults.head_seconds,
            device=device,
            seed=seed,
            progress=False,
        )
        if head == "eta" and len(val.rows):
            _calibrate_eta(trained, val)
        extra: dict[str, Any] = {
            "trained_on": {
                "site": site.slug,
                "since": since.isoformat(),
                "until": until.isoformat(),
                "windows": len(rows),
                "labels": dict(history.labels),
            }
        }
        if head == "fault":
            extra["decision"] = _champion_rule()
        manifest = save_head(trained, root, name=head, version=version, extra=extra)
        path = root / head / version / "manifest.json"
        export_checkpoint_onnx(path)
        registered = services.register_version(path, by=by)
        services.promote(head, registered.version, ModelAlias.Alias.CHALLENGER, by=by)
        run.registered.append(registered)
        metrics = ", ".join(
            f"{k} {v:.3g}" for k, v in sorted(trained.metrics.items()) if isinstance(v, float)
        )
        run.lines.append(
            f"{manifest['id']} registered, challenger ({len(rows)} windows; {metrics})"
        )
    return run


def _stage_backbone(root: Path, checkpoint_id: str, local: Path) -> None:
    """A head's manifest names its backbone at ``<root>/<name>/<version>``: where this host
    holds no such directory, a link to the backbone's verified local copy stands there (its own
    backbone chain resolves beside it in the cache), so saving, exporting and publishing the
    head find it."""
    name, _, number = checkpoint_id.partition("@")
    where = root / name / number
    if not where.exists():
        where.parent.mkdir(parents=True, exist_ok=True)
        where.symlink_to(local.resolve(), target_is_directory=True)


def _part(feats: np.ndarray | None, cut: int, first: bool) -> np.ndarray | None:
    if feats is None:
        return None
    return feats[:cut] if first else feats[cut:]


def _champion_rule() -> dict[str, Any]:
    """The champion fault head's decision rule: chosen on validation data at the serving
    cadence; a site's history has too few faults to choose one on its own."""
    from fleet.learning.tasks import manifest as manifest_of

    row = (
        ModelAlias.objects.select_related("version").filter(name="fault", alias="champion").first()
    )
    if row is None:
        return {}
    return dict((manifest_of(str(row.version)).get("extra") or {}).get("decision") or {})
