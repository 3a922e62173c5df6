"""A socket's frames: each truck once at its newest, a thing's newest state once, the rest in
order; nothing dropped (fleet.live.frames)."""

from __future__ import annotations

from fleet.live.frames import FrameBuilder


def position(truck: str, x: float) -> dict:
    return {"equipmentId": truck, "longitude": x}


def test_nothing_gathered_is_no_frame():
    assert FrameBuilder().take() is None


def test_one_event_is_sent_as_it_is():
    frame = FrameBuilder()
    frame.add("zone.changed", {"id": "z1", "status": "active"})
    assert frame.take() == {"event": "zone.changed", "data": {"id": "z1", "status": "active"}}


def test_each_truck_once_at_its_newest_position_and_no_truck_dropped():
    frame = FrameBuilder()
    frame.add("positions", {"trucks": [position("a", 1), position("b", 1)]})  # replica 1
    frame.add("positions", {"trucks": [position("a", 2), position("c", 1)]})  # replica 2

    sent = frame.take()

    assert sent == {
        "event": "positions",
        "data": {"trucks": [position("a", 2), position("b", 1), position("c", 1)]},
    }
    assert frame.take() is None  # the next frame starts empty: only what changes


def test_a_things_newest_state_replaces_the_older_and_the_rest_keep_their_order():
    frame = FrameBuilder()
    frame.add("alert", {"id": 7, "status": "open"})
    frame.add("allstop.changed", {"mode": "Apply"})
    frame.add("alert", {"id": 7, "status": "acknowledged"})
    frame.add("alert", {"id": 8, "status": "open"})
    frame.add("allstop.changed", {"mode": "Remove"})
    frame.add("prediction", {"equipmentId": "a", "model": "fault", "p": 0.1})
    frame.add("prediction", {"equipmentId": "a", "model": "eta", "s": 40})
    frame.add("prediction", {"equipmentId": "a", "model": "fault", "p": 0.2})

    sent = frame.take()

    assert sent["event"] == "batch"
    assert [(e["event"], e["data"]) for e in sent["data"]] == [
        ("alert", {"id": 7, "status": "acknowledged"}),
        ("allstop.changed", {"mode": "Apply"}),
        ("alert", {"id": 8, "status": "open"}),
        ("allstop.changed", {"mode": "Remove"}),
        ("prediction", {"equipmentId": "a", "model": "fault", "p": 0.2}),
        ("prediction", {"equipmentId": "a", "model": "eta", "s": 40}),
    ]


def test_health_readings_are_each_trucks_newest_like_positions():
    frame = FrameBuilder()
    frame.add("health", {"trucks": [{"equipmentId": "a", "coolantC": 80}]})
    frame.add("health", {"trucks": [{"equipmentId": "a", "coolantC": 81}]})
    frame.add("health", {"trucks": [{"equipmentId": "b", "coolantC": 70}]})

    assert frame.take() == {
        "event": "health",
        "data": {
            "trucks": [{"equipmentId": "a", "coolantC": 81}, {"equipmentId": "b", "coolantC": 70}]
        },
    }
