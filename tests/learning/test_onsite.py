"""Learning on site, end to end through the real database and broker: a simulated shift stored
as the mine's telemetry, the simulator's fault labels imported as workshop records and an
operator's verdict; ``train_models --site --since`` trains challengers from that history
through the serving feature code; live serving sends the champion's windows to them too; their
answers are stored in shadow and acted on by no one; both versions' figures are in the API and
the admin; an operator may not promote, a supervisor does, and the audit keeps the figures."""

from __future__ import annotations

import dataclasses
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest
from django.core.management import call_command
from django.db import connection

from fleet.audit import AuditError
from fleet.control import alerts
from fleet.control.models import Alert
from fleet.learning import deployments, onsite, services, serving, shadow
from fleet.learning.features import FAULT_CLASSES, HEADS, RAW_CHANNELS
from fleet.learning.models import (
    AliasChange,
    ModelAlias,
    ModelVersion,
    Prediction,
    ShadowPrediction,
)
from fleet.learning.pipeline.datasets import SiteRun
from fleet.learning.pipeline.sites import site_world
from fleet.learning.runs import register_run
from fleet.learning.signals import prediction_recorded
from fleet.learning.tasks import store_predictions
from fleet.simulator import faults
from fleet.telemetry.partitions import ensure_history_partitions
from fleet.vehicles.models import WorkshopRecord
from inference.wire import decode_arrays, encode_arrays
from models import load_runtime
from tests.factories import haul_truck
from tests.learning.test_serving import health_body, queues, read_one  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def run(small_data) -> SiteRun:
    run = small_data.runs["D"]
    series = run.series.copy()
    heading = RAW_CHANNELS.index("heading_deg")
    series[:, heading] = np.round(series[:, heading]) % 360
    return dataclasses.replace(run, series=series)


def faulty_trucks(run: SiteRun, n: int = 2) -> list[int]:
    """Trucks of the run with a fault of a class starting in the first half of the shift."""
    ev = run.events
    chosen: list[int] = []
    for e in np.argsort(ev["onset_s"]).tolist():
        kind = faults.KINDS[int(ev["kind"][e])]
        truck = int(ev["truck"][e])
        if kind in FAULT_CLASSES and ev["onset_s"][e] < run.time_s[-1] / 2 and truck not in chosen:
            chosen.append(truck)
    assert len(chosen) >= n, "the small data's held-out run has faults early enough"
    return chosen[:n]


def store_shift(run: SiteRun, k: int, truck, end_at: datetime) -> None:
    """Truck ``k`` of the run as stored telemetry, its last second at ``end_at``: a position
    per second with a fix, a health reading per second, a payload reading every 10 s."""
    frame = site_world(run.spec.site).frame
    x, y = run.channel("x_m")[k], run.channel("y_m")[k]
    lon, lat = frame.to_lonlat(x.astype(np.float64), y.astype(np.float64))
    last = len(run.time_s) - 1
    positions, events = [], []
    for r in range(last + 1):
        at = end_at - timedelta(seconds=last - r)
        if run.gps_ok[k, r]:
            positions.append(
                (
                    truck.id,
                    at,
                    at,
                    float(lon[r]),
                    float(lat[r]),
                    float(run.channel("elevation_m")[k, r]),
                    int(run.channel("heading_deg")[k, r]),
                    float(run.channel("speed_kmh")[k, r]),
                )
            )
        body = orjson.dumps(health_body(run, k, r)).decode()
        events.append((truck.id, "BasicMachineHealthV2", at + timedelta(milliseconds=300), body))
        if r % 10 == 0:
            payload = {"PayloadWeight": float(run.channel("payload_t")[k, r])}
            events.append((truck.id, "HaulTruckPayloadV1", at, json.dumps(payload)))
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO telemetry_position (equipment_id, sent_at, received_at, location, "
            "elevation_m, heading_deg, speed_kmh, body_digest, late) VALUES (%s, %s, %s, "
            "ST_SetSRID(ST_MakePoint(%s, %s), 4326), %s, %s, %s, 0, false)",
            positions,
        )
        cursor.executemany(
            "INSERT INTO telemetry_event (equipment_id, message_name, sent_at, received_at, "
            "body, sequence, body_digest, late) VALUES (%s, %s, %s, %s, %s, -1, 0, false)",
            [(e, name, at, at, body) for e, name, at, body in events],
        )


def label_log(run: SiteRun, ks: list[int], trucks: list, end_at: datetime) -> str:
    """The simulator's fault-label log (``simulate --labels``) of those trucks."""
    ev, last = run.events, run.time_s[-1]
    start = end_at - timedelta(seconds=float(last))
    lines = []
    for e in range(len(ev["onset_s"])):
        if int(ev["truck"][e]) not in ks:
            continue
        truck = trucks[ks.index(int(ev["truck"][e]))]
        onset, end = float(ev["onset_s"][e]), float(ev["end_s"][e])
        row = {
            "equipment_id": str(truck.id),
            "kind": faults.KINDS[int(ev["kind"][e])],
            "channel": str(ev["channel"][e]),
            "tyre": None,
            "onset_s": onset,
            "end_s": end,
            "intensity": float(ev["intensity"][e]),
            "unit": "",
            "onset": (start + timedelta(seconds=onset)).isoformat(),
            "end": (start + timedelta(seconds=end)).isoformat() if end < last else None,
        }
        lines.append(json.dumps(row))
    return "\n".join(lines) + "\n"


def served_by(manifest_path, inputs: dict) -> dict:
    """A replica's pack result for ``inputs`` (``inference.worker``'s format)."""
    runtime = load_runtime(manifest_path, device="cpu")
    outputs = runtime.run(inputs)
    n = len(next(iter(inputs.values())))
    return {
        "outputs": encode_arrays(outputs),
        "pack": True,
        "chunks": [[0, n, 1.0, 0.8, n, 1]],
        "replica": "cpu-0@node-a",
        "model_id": runtime.model_id,
        "device": "cpu",
    }


def test_a_challenger_trained_on_the_sites_history_runs_in_shadow_and_a_supervisor_promotes_it(
    run,
    site,
    trained,
    queues,  # noqa: F811 (the fixture imported above)
    tmp_path,
    api_client,
    viewer,
    operator,
    supervisor,
    client,
    admin_user,
    django_capture_on_commit_callbacks,
):
    register_run(trained)  # the champions, trained on the simulated sites
    ensure_history_partitions()
    ks = faulty_trucks(run)
    trucks = [haul_truck(site, f"HT-{i:03d}") for i in range(len(ks))]
    # The last stored second on the 30 s grid of the history's windows (compared below).
    now = int(datetime.now(UTC).timestamp())
    end_at = datetime.fromtimestamp(now - now % 30 - 30, UTC)
    for k, truck in zip(ks, trucks, strict=True):
        store_shift(run, k, truck, end_at)
    labels = tmp_path / "fault-labels.jsonl"
    labels.write_text(label_log(run, ks, trucks, end_at))
    call_command("import_fault_labels", str(labels), "--site", site.slug, stdout=io.StringIO())
    assert WorkshopRecord.objects.filter(source="simulator").count() >= 2
    # An operator judged one alert a false alarm: a label too (normal running there).
    alert, _ = alerts.raise_alert(
        trucks[0],
        alerts.Finding(kind="fault:brake_fade", severity="warning", source="fault@1", reason="x"),
    )
    alerts.resolve_alert(alert, actor=operator, verdict=Alert.Verdict.FALSE_ALARM)

    # --- train from history ----------------------------------------------------------------
    since = end_at - timedelta(seconds=float(run.time_s[-1])) + timedelta(seconds=960)
    out = io.StringIO()
    call_command(
        "train_models",
        "--site",
        site.slug,
        "--since",
        since.isoformat(),
        "--head-seconds",
        "1",
        "--root",
        str(tmp_path / "models"),
        "--json",
        stdout=out,
        stderr=io.StringIO(),
    )
    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    assert summary["windows"] > 100
    assert summary["labels"]["workshop_simulator"] >= 2
    assert summary["labels"]["verdict_false_alarm"] == 1
    assert summary["labels"]["fault_windows"] > 0
    challengers = {
        row.name: row.version
        for row in ModelAlias.objects.select_related("version").filter(alias="challenger")
    }
    # No haul cycles stored: ETA has no labels, so no ETA challenger (the run says why).
    assert set(challengers) == {"fault", "trajectory", "payload"}
    assert sorted(summary["challengers"]) == sorted(str(v) for v in challengers.values())
    fault_champion = ModelAlias.objects.get(name="fault", alias="champion").version
    challenger = challengers["fault"]
    assert challenger.version > fault_champion.version
    assert challenger.parent_id == fault_champion.parent_id  # the champion's backbone
    # The site's history windows are the ones live serving builds from the same telemetry.
    history = onsite.site_history(site, since, end_at)
    [live] = serving.build_inputs({trucks[0].id: site.id}, now=end_at + timedelta(seconds=1))
    assert live.window_end == end_at
    [same] = np.flatnonzero((history.unit == 0) & (history.end_s == int(end_at.timestamp())))
    np.testing.assert_allclose(live.window, history.window[same], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(live.context, history.context[same], rtol=1e-5, atol=1e-3)

    # --- the challenger in shadow -------------------------------------------------------------
    shadows = {d.name: d for d in deployments.challenger_deployments()}
    assert set(shadows) == {"fault.shadow", "trajectory.shadow", "payload.shadow"}
    assert shadows["trajectory.shadow"].priority == "best-effort"
    assert shadows["fault.shadow"].model_id == str(challenger)
    routes = {"fault": {"queue": queues("fault")}, "fault.shadow": {"queue": queues("shadow")}}
    report = serving.dispatch({t.id: site.id for t in trucks}, routes=routes)
    assert report["fault:sent"] == 2 and report["fault.shadow:sent"] == 2
    messages = {name: read_one(route["queue"]) for name, route in routes.items()}
    metas = {name: m.payload[2]["callbacks"][0]["args"][0] for name, m in messages.items()}
    assert messages["fault.shadow"].payload[0][0] == "fault.shadow"
    assert metas["fault.shadow"]["shadow"] is True and "shadow" not in metas["fault"]

    decided: list[dict] = []

    def seen(sender, **kwargs):
        decided.append(kwargs)

    prediction_recorded.connect(seen)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            for name, message in messages.items():
                inputs = decode_arrays(message.payload[0][1])
                version = challenger if name == "fault.shadow" else fault_champion
                manifest_path = services.local_checkpoint(version.path) / "manifest.json"
                store_predictions(served_by(manifest_path, inputs), metas[name])
    finally:
        prediction_recorded.disconnect(seen)
    assert ShadowPrediction.objects.filter(model_id=str(challenger)).count() == 2
    assert not Prediction.objects.filter(model_id=str(challenger)).exists()
    # Only the champion's answers were handed to control to act on.
    assert {d["model_id"] for d in decided} == {str(fault_champion)} and len(decided) == 2
    assert not Alert.objects.filter(source=str(challenger)).exists()

    # --- the figures in the API ---------------------------------------------------------------
    api_client.force_authenticate(viewer)
    answer = api_client.get("/api/v1/models/fault/shadow/", {"hours": 2})
    assert answer.status_code == 200
    body = answer.json()
    assert body["champion"]["version"] == str(fault_champion)
    assert body["challenger"]["version"] == str(challenger)
    for side in ("champion", "challenger"):
        figures = body[side]
        assert figures["windows"] == 2 and figures["trucks"] == 2
        for key in ("positive_rate", "alarms_per_truck_hour", "compute_ms_p50", "age_s_p50"):
            assert key in figures
        assert figures["labelled_faults"] >= 1
    assert body["challenger"]["agreement"]["pairs"] == 2
    assert 0 <= body["challenger"]["agreement"]["same_decision"] <= 1
    listed = api_client.get("/api/v1/models/shadow/")
    assert {m["name"] for m in listed.json()} == {"fault", "trajectory", "payload"}

    # --- the admin shows both -------------------------------------------------------------------
    client.force_login(admin_user)
    page = client.get("/admin/learning/modelversion/shadow/", {"hours": 2})
    assert page.status_code == 200
    text = page.content.decode()
    assert str(fault_champion) in text and str(challenger) in text
    assert "event F1 against labels" in text and "Promote" in text
    # Kept for the docs' picture of the page (docs/models.md, "Learning on site").
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "shadow-admin.html").write_text(text)

    # --- promotion: supervisors only, audited with the figures ----------------------------------
    promote = f"/api/v1/models/versions/{challenger.pk}/promote/"
    api_client.force_authenticate(operator)
    assert api_client.post(promote, {"alias": "champion"}).status_code == 403
    api_client.force_authenticate(supervisor)
    with django_capture_on_commit_callbacks(execute=True):
        promoted = api_client.post(promote, {"alias": "champion", "hours": 2})
    assert promoted.status_code == 200
    assert promoted.json()["label"] == str(challenger)
    assert promoted.json()["figures"]["challenger"]["windows"] == 2
    change = AliasChange.objects.filter(name="fault", alias="champion").first()
    assert change.by == supervisor and change.to_version == challenger
    assert change.from_version == fault_champion
    assert change.figures["challenger"]["version"] == str(challenger)
    assert change.figures["champion"]["windows"] == 2
    change.figures = {}
    with pytest.raises(AuditError):
        change.save()
    # Promoted: the challenger alias still names it, so it is no shadow of itself any more.
    assert "fault.shadow" not in {d.name for d in deployments.challenger_deployments()}
    audit = api_client.get("/api/v1/models/changes/", {"name": "fault"}).json()["results"][0]
    assert audit["by"] == supervisor.username and audit["figures"]["challenger"]["windows"] == 2
    assert ModelVersion.objects.get(pk=challenger.pk).aliases.filter(alias="champion").exists()
    assert set(HEADS) >= set(challengers)
    assert shadow.shadowed_names() == ["fault", "payload", "trajectory"]
