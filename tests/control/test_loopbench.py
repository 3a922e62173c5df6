"""``bench loop``'s model path without timing anything: its figures from constructed rounds and
records, and its probe's telemetry as a window live serving builds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from fleet.control.loopbench import ModelRound, figures_of_model_rounds
from fleet.learning import serving
from fleet.learning.loopbench import SentWindow, probe_history, probe_messages
from fleet.learning.recent import RecentTelemetry
from fleet.protocol import wire

T0 = 1_800_000_000.0  # seconds since the epoch


def sent(truck: uuid.UUID, at: float, task: str) -> SentWindow:
    # newest sample 80 ms before the send, stored 30 ms before it, built in 20 ms
    return SentWindow(truck, at - 0.080, at - 0.030, at, task, 20.0)


def prediction(at: float, queue_ms: float = 2.0, compute_ms: float = 3.0) -> dict:
    return {"created_at": datetime.fromtimestamp(at, UTC), "queue_ms": queue_ms,
            "compute_ms": compute_ms}  # fmt: skip


def test_each_part_of_the_model_path_is_the_gap_between_two_records():
    a = uuid.uuid4()
    rounds = [ModelRound(a, sent(a, T0, "task-a"), T0 + 0.100)]
    stored = {"task-a": T0 + 0.010}  # the slice worker stored the result
    predictions = {a: prediction(T0 + 0.030)}  # the callback stored the prediction
    issued = {a: T0 + 0.060}  # the health rule issued the stop

    figures = figures_of_model_rounds(rounds, stored, predictions, issued)

    assert figures["model_probes"] == figures["model_stopped"] == 1
    assert figures["model_p99_ms"] == pytest.approx(100.0)
    assert figures["window_age_p99_ms"] == pytest.approx(80.0)
    assert figures["window_build_p99_ms"] == pytest.approx(20.0)
    assert figures["model_pool_p99_ms"] == pytest.approx(10.0)
    assert figures["model_infer_p99_ms"] == pytest.approx(5.0)  # the batcher's wait + forward
    assert figures["model_callback_p99_ms"] == pytest.approx(20.0)
    assert figures["model_decide_p99_ms"] == pytest.approx(30.0)
    assert figures["model_outbox_p99_ms"] == pytest.approx(40.0)
    assert figures["model_outbox_p50_ms"] == pytest.approx(40.0)  # one probe: p50 = p99
    # The parts add up to the whole.
    parts = ("pool", "callback", "decide", "outbox")
    assert sum(figures[f"model_{p}_p99_ms"] for p in parts) == pytest.approx(100.0)


def test_a_probe_without_its_stop_counts_as_measured_but_not_stopped():
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    rounds = [
        ModelRound(a, sent(a, T0, "task-a"), T0 + 0.100),
        ModelRound(b, sent(b, T0 + 1, "task-b"), None),  # no stop within the wait
        ModelRound(c, None, None),  # its window was never sent
    ]
    figures = figures_of_model_rounds(rounds, {}, {}, {})

    assert (figures["model_probes"], figures["model_stopped"]) == (3, 1)
    assert figures["model_p50_ms"] == pytest.approx(100.0)
    # Records missing (no result, prediction or command found): those parts are not guessed.
    assert figures["model_pool_p99_ms"] is None and figures["model_decide_p99_ms"] is None


def test_with_no_stop_at_all_there_are_no_figures_but_the_counts():
    a = uuid.uuid4()
    figures = figures_of_model_rounds([ModelRound(a, sent(a, T0, "t"), None)], {}, {}, {})
    assert figures["model_stopped"] == 0 and figures["model_p99_ms"] is None


def test_a_probes_telemetry_is_valid_on_the_wire_and_a_window_live_serving_builds():
    end = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
    messages = probe_history(end) + probe_messages(end.replace(second=1), serving.WINDOW_S)
    truck = uuid.uuid4()
    buffers = RecentTelemetry()
    for name, body, at in messages:
        payload = wire.encode(name, body, equipment_id=truck, timestamp=at)  # validates
        buffers.record([SimpleNamespace(envelope=wire.parse_message(payload))])
    since = end - timedelta(seconds=serving.HISTORY_S + 10)

    outcome, inputs = serving.truck_inputs(truck, uuid.uuid4(), buffers.seconds(truck, since))

    assert outcome == "built"
    assert inputs.window_end == end.replace(second=1)
    assert inputs.inputs("fault") is not None
