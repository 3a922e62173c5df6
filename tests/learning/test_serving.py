"""Live predictions: inputs from stored telemetry as training builds them, requests on the
pool's queues (real RabbitMQ, read back with kombu), the callback storing and broadcasting."""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

from fleet.celery import app as celery_app
from fleet.learning import serving
from fleet.learning.features import (
    HEALTH_EXTRAS,
    TYRES,
    context_names,
    cut_windows,
    series_context,
    trajectory_features,
)
from fleet.learning.models import Prediction
from fleet.learning.pipeline.datasets import FAULT_CLASSES, RAW_CHANNELS, SiteRun
from fleet.learning.pipeline.sites import site_world
from fleet.learning.runs import register_run
from fleet.learning.signals import prediction_recorded
from fleet.learning.tasks import store_prediction, store_predictions
from fleet.live.groups import site_group
from fleet.telemetry.intake import Inbound
from fleet.telemetry.partitions import ensure_history_partitions
from fleet.telemetry.services import EquipmentDirectory, ingest_batch
from inference.pool import PackLimit
from inference.wire import encode_arrays
from models import load_runtime
from tests.factories import haul_truck, truck_message

TRUCK_IN_RUN = 1
END_ROW = 1500  # a window end with more than HISTORY_S of history before it


@pytest.fixture(scope="module")
def run(small_data) -> SiteRun:
    """The held-out site's run with its heading as the wire carries it (whole degrees):
    the same data on both sides of the comparison."""
    run = small_data.runs["D"]
    series = run.series.copy()
    heading = RAW_CHANNELS.index("heading_deg")
    series[:, heading] = np.round(series[:, heading]) % 360
    return dataclasses.replace(run, series=series)


@pytest.fixture
def truck(site):
    return haul_truck(site)


@pytest.fixture
def queues():
    """Queue names of this test's own on the real broker, deleted afterwards."""
    names: list[str] = []

    def make(head: str) -> str:
        names.append(f"test-serving-{uuid.uuid4().hex[:10]}.{head}")
        return names[-1]

    yield make
    with celery_app.connection_for_write() as conn:
        channel = conn.default_channel
        for name in names:
            channel.queue_delete(name)


def store_history(run: SiteRun, truck, end_at: datetime, rows: int = serving.HISTORY_S + 30):
    """The run's truck up to END_ROW as stored telemetry: a position (where it had a fix) and
    a BasicMachineHealthV2 body per second, the last one at ``end_at``."""
    ensure_history_partitions()
    frame = site_world(run.spec.site).frame
    k, first = TRUCK_IN_RUN, END_ROW - rows + 1
    assert run.gps_ok[k, END_ROW], "the window must end on a fix"
    x, y = run.channel("x_m")[k], run.channel("y_m")[k]
    lon, lat = frame.to_lonlat(x.astype(np.float64), y.astype(np.float64))
    positions, events = [], []
    for r in range(first, END_ROW + 1):
        at = end_at - timedelta(seconds=END_ROW - r)
        if run.gps_ok[k, r]:
            positions.append(
                (
                    truck.id,
                    at,
                    float(lon[r]),
                    float(lat[r]),
                    int(run.channel("heading_deg")[k, r]),
                    float(run.channel("speed_kmh")[k, r]),
                    float(run.channel("elevation_m")[k, r]),
                )
            )
        body = health_body(run, k, r)
        events.append((truck.id, at + timedelta(milliseconds=300), orjson.dumps(body).decode()))
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO telemetry_position (equipment_id, sent_at, received_at, location, "
            "elevation_m, heading_deg, speed_kmh, body_digest, late) VALUES (%s, %s, %s, "
            "ST_SetSRID(ST_MakePoint(%s, %s), 4326), %s, %s, %s, 0, false)",
            [(e, at, at, lo, la, el, h, s) for e, at, lo, la, h, s, el in positions],
        )
        cursor.executemany(
            "INSERT INTO telemetry_event (equipment_id, message_name, sent_at, received_at, "
            "body, sequence, body_digest, late) "
            "VALUES (%s, 'BasicMachineHealthV2', %s, %s, %s, -1, 0, false)",
            [(e, at, at, body) for e, at, body in events],
        )


def health_body(run: SiteRun, k: int, r: int) -> dict:
    """One health reading in the wire's form (as the simulator's link publishes it)."""
    value = {name: float(run.channel(name)[k, r]) for name in RAW_CHANNELS}
    return {
        "FuelLevel": value["fuel_pct"],
        "Tire": [
            {
                "TirePosition": t,
                "TirePressure": value[f"tyre_pressure_kpa_{t}"],
                "TireTemperature": value[f"tyre_temp_c_{t}"],
            }
            for t in TYRES
        ],
        "Additional": [
            {"SensorId": sensor, "Value": value[channel], "Unit": unit}
            for channel, sensor, unit in HEALTH_EXTRAS
        ],
    }


def recent_end() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)


# --- inputs ---------------------------------------------------------------------------------------


def test_live_inputs_are_the_training_features_of_the_same_telemetry(run, site, truck):
    store_history(run, truck, recent_end())
    k, end = np.asarray([TRUCK_IN_RUN]), np.asarray([END_ROW])

    [live] = serving.build_inputs({truck.id: site.id})

    window = cut_windows(run.series, k, end, serving.WINDOW_S)[0]
    track = slice(0, 2)  # metres from the last fix: the local frames differ by ~1e-4
    np.testing.assert_allclose(live.window[track], window[track], atol=0.1)
    np.testing.assert_allclose(live.window[2:], window[2:], rtol=1e-5, atol=1e-3)
    expected = series_context(run.series, k, end, run.spec.hz)[0]
    np.testing.assert_allclose(live.context, expected, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(
        live.trajectory, trajectory_features(window[None])[0], rtol=1e-4, atol=1e-4
    )
    assert live.window.shape == (25, serving.WINDOW_S) and live.context.shape == (
        len(context_names()),
    )


def test_a_truck_with_less_than_a_window_of_history_is_left_out(run, site, truck):
    store_history(run, truck, recent_end(), rows=serving.WINDOW_S - 5)

    assert serving.build_inputs({truck.id: site.id}) == []


# --- sending --------------------------------------------------------------------------------------


def read_one(queue: str):
    with celery_app.connection_for_read() as conn:
        simple = conn.SimpleQueue(queue)
        try:
            message = simple.get(timeout=10)
            message.ack()
            return message
        finally:
            simple.close()


def test_a_due_truck_gets_one_request_per_routed_head_and_the_rest_are_counted(
    run, site, truck, queues
):
    store_history(run, truck, recent_end())
    routes = {head: {"queue": queues(head)} for head in ("fault", "trajectory", "eta")}

    report = serving.dispatch({truck.id: site.id}, routes=routes)

    assert report == {
        "fault:sent": 1,
        "trajectory:sent": 1,
        "eta:no_stop": 1,  # no production state stored: no known next stop (test_routes)
        "payload:no_route": 1,  # the pool does not serve it: skipped, never an error
    }
    message = read_one(routes["fault"]["queue"])
    assert message.headers["task"] == "inference.infer"
    deployment, inputs, _ = message.payload[0]
    assert deployment == "fault" and set(inputs) == {"window", "features"}
    assert message.payload[1] == {"pack": True, "keys": [str(truck.id)]}  # a pack of one
    [callback] = message.payload[2]["callbacks"]
    assert callback["task"] == "learning.store_predictions"
    assert callback["args"][0]["head"] == "fault"
    assert callback["args"][0]["rows"][0]["truck"] == str(truck.id) and message.headers["expires"]
    # Named, because the slice worker sends it with its own app, whose default queue is Celery's
    assert callback["options"]["queue"] == settings.CELERY_TASK_DEFAULT_QUEUE
    assert read_one(routes["trajectory"]["queue"]).payload[0][0] == "trajectory"


def test_every_due_trucks_window_for_a_head_goes_in_one_pack_cut_at_its_cap(run, site, queues):
    trucks = [haul_truck(site, f"HT-{i:03d}") for i in range(3)]
    for truck in trucks:
        store_history(run, truck, recent_end())
    routes = {"payload": {"queue": queues("payload")}}
    built = serving.build_inputs({t.id: site.id for t in trucks})
    report: Counter[str] = Counter()

    serving._send_all(built, ["payload"], routes, None, report)  # no limits: one pack
    message = read_one(routes["payload"]["queue"])
    _, inputs, _ = message.payload[0]
    assert inputs["window"]["shape"] == [3, 25, serving.WINDOW_S]
    assert message.payload[1]["keys"] == [str(t.equipment_id) for t in built]
    rows = message.payload[2]["callbacks"][0]["args"][0]["rows"]
    assert [r["truck"] for r in rows] == message.payload[1]["keys"]

    limits = {"payload": PackLimit(cap=2, replicas=1, min_rows=1)}
    serving._send_all(built, ["payload"], routes, None, report, limits)
    sizes = sorted(len(read_one(routes["payload"]["queue"]).payload[1]["keys"]) for _ in "ab")
    assert sizes == [1, 2] and report == {"payload:sent": 6}


def test_a_truck_is_decided_once_per_interval(run, site, truck, queues):
    store_history(run, truck, recent_end())
    routes = {"payload": {"queue": queues("payload")}}

    assert serving.dispatch({truck.id: site.id}, routes=routes)["payload:sent"] == 1
    assert serving.dispatch({truck.id: site.id}, routes=routes) == {}


def test_without_a_pool_every_head_is_skipped_without_reading_history(
    site, truck, django_assert_num_queries
):
    before = serving.REQUESTS.labels("fault", "no_route")._value.get()

    with django_assert_num_queries(0):
        report = serving.dispatch({truck.id: site.id}, routes={})

    assert report == {f"{head}:no_route": 1 for head in serving.HEADS}
    assert serving.REQUESTS.labels("fault", "no_route")._value.get() == before + 1


@pytest.mark.django_db(transaction=True)
def test_ingesting_a_message_sends_the_trucks_requests_after_the_commit(
    run, site, truck, queues, monkeypatch
):
    end_at = recent_end()
    store_history(run, truck, end_at - timedelta(seconds=1))
    routes = {"payload": {"queue": queues("payload")}}
    monkeypatch.setattr(serving, "current_routes", lambda: routes)
    topic = f"iso23725/v1/{site.slug}/{truck.id}/up/MachinePositionV1"
    payload = truck_message(truck.id, at=end_at)

    ingest_batch([Inbound("mqtt", payload, datetime.now(UTC), topic=topic)], EquipmentDirectory())

    assert serving.DISPATCHER.wait_idle(20)
    message = read_one(routes["payload"]["queue"])
    assert message.payload[0][0] == "payload"


# --- the callback ---------------------------------------------------------------------------------


@pytest.fixture
def champions(db, trained):
    register_run(trained)
    return trained


def served(trained, head: str, inputs: dict) -> dict:
    """The response a replica sends back (``inference.worker``'s result format)."""
    runtime = load_runtime(trained.manifests[head], device="cpu")
    outputs = runtime.run(inputs)
    return {
        "outputs": encode_arrays(outputs),
        "queue_ms": 1.5,
        "compute_ms": 0.7,
        "batch_rows": 1,
        "batch_requests": 1,
        "replica": "cpu-0@node-a",
        "model_id": runtime.model_id,
        "device": "cpu",
    }


def received(channel: str) -> dict:
    return async_to_sync(get_channel_layer().receive)(channel)


@pytest.fixture
def listening(site):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(site_group(site.id), channel)
    yield channel
    async_to_sync(layer.group_discard)(site_group(site.id), channel)


def test_the_callback_stores_a_fault_prediction_and_pushes_it_to_the_site(
    run, site, truck, champions, listening, django_capture_on_commit_callbacks
):
    store_history(run, truck, recent_end())
    [inputs] = serving.build_inputs({truck.id: site.id})
    result = served(champions, "fault", inputs.inputs("fault"))

    with django_capture_on_commit_callbacks(execute=True):
        pk = store_prediction(result, serving.callback_meta(inputs, "fault"))

    prediction = Prediction.objects.get(pk=pk)
    assert (prediction.equipment_id, prediction.model_name) == (truck.id, "fault")
    assert prediction.model_id == "fault@1" and prediction.window_end == inputs.window_end
    assert set(prediction.outputs["probabilities"]) == set(FAULT_CLASSES)
    assert prediction.outputs["rule"] == champions.details["fault_rule"]
    assert "alarms" not in prediction.outputs  # control decides (tests/control/test_alerts.py)
    assert (prediction.queue_ms, prediction.compute_ms, prediction.replica) == (
        1.5,
        0.7,
        "cpu-0@node-a",
    )
    event = received(listening)
    assert event["event"] == "prediction"
    assert event["data"]["equipmentId"] == str(truck.id) and event["data"]["model"] == "fault"


def test_trajectory_eta_and_payload_answers_are_read_as_training_reads_them(
    run, site, truck, champions, django_capture_on_commit_callbacks
):
    store_history(run, truck, recent_end())
    [inputs] = serving.build_inputs({truck.id: site.id})
    eta_inputs = {"window": inputs.window[None], "features": np.zeros((1, 9), np.float32)}

    with django_capture_on_commit_callbacks(execute=True):
        for head, batch in (
            ("trajectory", inputs.inputs("trajectory")),
            ("payload", inputs.inputs("payload")),
            ("eta", eta_inputs),
        ):
            store_prediction(served(champions, head, batch), serving.callback_meta(inputs, head))

    out = {p.model_name: p.outputs for p in Prediction.objects.filter(equipment=truck)}
    assert out["trajectory"]["horizons_s"] == [1, 3, 5]
    assert len(out["trajectory"]["positions"]) == 3
    lon, lat, _ = inputs.origin
    for p_lon, p_lat in out["trajectory"]["positions"]:  # within a few hundred metres
        assert abs(p_lon - lon) < 0.01 and abs(p_lat - lat) < 0.01
    assert isinstance(out["payload"]["tonnes"], float)
    assert out["eta"]["p10_s"] <= out["eta"]["p50_s"] <= out["eta"]["p90_s"]


def test_a_packs_callback_records_every_row_in_bulk_and_control_sees_each(
    run, site, champions, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    trucks = [haul_truck(site, f"HT-{i:03d}") for i in range(3)]
    for truck in trucks:
        store_history(run, truck, recent_end())
    built = serving.build_inputs({t.id: site.id for t in trucks})
    gone = dataclasses.replace(built[0], equipment_id=uuid.uuid4())  # not (or no longer) known
    rows = [*built, gone]
    stacked = {
        name: np.concatenate([t.inputs("fault")[name] for t in rows])
        for name in ("window", "features")
    }
    result = served(champions, "fault", stacked)
    result["chunks"] = [[0, 4, 2.0, 3.0, 4, 1]]
    seen: list[dict] = []

    def decided(sender, **kwargs):
        seen.append(kwargs)

    prediction_recorded.connect(decided)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            pks = store_predictions(result, serving.pack_meta(rows, "fault"))
    finally:
        prediction_recorded.disconnect(decided)

    stored = {p.equipment_id: p for p in Prediction.objects.filter(pk__in=pks)}
    assert set(stored) == {t.equipment_id for t in built} and len(pks) == 3
    assert [s["equipment_id"] for s in seen] == [t.equipment_id for t in built]
    assert all(s["head"] == "fault" for s in seen)
    for i, truck in enumerate(built):  # each row as its own request would have stored it
        alone = served(champions, "fault", truck.inputs("fault"))
        with django_capture_on_commit_callbacks(execute=True):
            single = Prediction.objects.get(
                pk=store_prediction(alone, serving.callback_meta(truck, "fault"))
            )
        pack_row = stored[truck.equipment_id]
        assert pack_row.window_end == single.window_end == truck.window_end
        for name, p in single.outputs["probabilities"].items():
            assert pack_row.outputs["probabilities"][name] == pytest.approx(p, abs=1e-5), i
        assert (pack_row.queue_ms, pack_row.compute_ms, pack_row.batch_rows) == (2.0, 3.0, 4)
