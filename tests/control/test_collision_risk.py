"""Collision risk on the database: machines placed by the telemetry they sent (the latest
state in Redis, as ingest writes it) and by the trajectory head's predictions; the
interventions go through the outbox with their reasons, are audited, debounced, and resumed
when the risk clears unless something else holds the truck."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from fleet.audit import AuditError
from fleet.control import collision_services, services
from fleet.control.models import Alert, CollisionIntervention, CollisionRisk, Command
from fleet.learning.models import Prediction
from fleet.simulator import physics
from fleet.telemetry.intake import Inbound
from fleet.telemetry.services import EquipmentDirectory, ingest_batch
from tests.conftest import wait_until
from tests.control.conftest import LiveMine, autonomous_trucks
from tests.factories import haul_truck, truck_message

RIM, RAMP = 10, 11  # the small site's two-lane rim road and one-lane ramp


@pytest.fixture(autouse=True)
def quick_clearing(settings):
    settings.COLLISION_CLEAR_S = 0
    collision_services._roads.clear()


def send(site, truck, name: str, body, at: datetime | None = None) -> None:
    topic = f"iso23725/v1/{site.slug}/{truck.id}/up/{name}"
    at = at or datetime.now(UTC)
    inbound = Inbound("mqtt", truck_message(truck.id, name, body, at=at), at, topic=topic)
    result = ingest_batch([inbound], EquipmentDirectory())
    assert not result.refused, result.refused


def drive(
    site,
    truck,
    way: int,
    s: float,
    *,
    forward: bool = True,
    kmh: float = 30.0,
    at: datetime | None = None,
) -> None:
    """Report ``truck`` at ``s`` m along ``way``, driving along it (or against it), at ``at``
    (default now: positions sent a moment apart are extrapolated apart)."""
    frame, roads = collision_services.site_roads(site)
    road = roads[way]
    point = road.at(np.array([s]))[0]
    tangent = road.at(np.array([s + 1.0]))[0] - road.at(np.array([s - 1.0]))[0]
    if not forward:
        tangent = -tangent
    heading = round(math.degrees(math.atan2(tangent[0], tangent[1]))) % 360
    lon, lat = frame.to_lonlat(point)
    state = {"WayId": way, "AutonomyMode": "Autonomous", "ProductionState": "Hauling"}
    send(site, truck, "HaulTruckProductionStateV2", state, at)
    position = {
        "Heading": heading,
        "Latitude": round(float(lat), 8),
        "Longitude": round(float(lon), 8),
        "Elevation": 2900.0,
        "LatitudeAccuracy": 0.4,
        "LongitudeAccuracy": 0.5,
        "ElevationAccuracy": 0.8,
        "HeadingAccuracy": 1.5,
        "Speed": kmh,
    }
    send(site, truck, "MachinePositionV1", position, at)


def stops(truck, mode: str = "Apply") -> list[Command]:
    return list(
        Command.objects.filter(
            equipment=truck, message_name="MachineAllStopRequestV1", body__ModeAllStop=mode
        ).order_by("serial")
    )


def test_a_follower_too_close_slows_down_once_and_resumes_when_the_gap_opens(site):
    leader, follower = haul_truck(site, "HT-001"), haul_truck(site, "HT-002")
    now = datetime.now(UTC)  # one instant: the gap is 35 m however slowly the test runs
    drive(site, leader, RIM, 250, at=now)
    drive(site, follower, RIM, 215, at=now)  # 35 m behind at the same speed

    report = collision_services.assess_collision_risk(site)
    assert (report.machines, report.risks, report.commands) == (2, 1, 1)
    assert report.fallback == 2 and report.candidates == 1
    (command,) = stops(follower)
    assert not stops(leader)
    assert command.reason.startswith("slow-down (ISO 21815-2; sent as a stop")
    assert re.search(r"collision risk with HT-001, closest approach 3[4-6] m in ", command.reason)
    assert "constant velocity along way 10 (no fresh prediction)" in command.reason
    (record,) = CollisionIntervention.objects.all()
    assert (record.kind, record.command, record.equipment) == ("slow_down", command, follower)
    with pytest.raises(AuditError):
        record.delete()
    (alert,) = Alert.objects.all()  # the operator's alert, with the command it caused
    assert (alert.equipment, alert.kind, alert.severity) == (follower, "collision_risk", "warning")
    assert alert.reason == command.reason and alert.command_ids == [command.command_id]
    assert alert.source == "rule:collision-risk" and alert.inputs["dCaM"] == pytest.approx(
        35, abs=1
    )

    # Seen again: the same pair is not acted on twice.
    again = collision_services.assess_collision_risk(site)
    assert again.risks == 1 and again.commands == 0
    assert len(stops(follower)) == 1 and CollisionIntervention.objects.count() == 1

    # The leader pulls away: the risk closes and the follower is resumed.
    drive(site, leader, RIM, 400)
    cleared = collision_services.assess_collision_risk(site)
    assert (cleared.risks, cleared.resumed) == (0, 1)
    (resume,) = stops(follower, "Remove")
    assert resume.reason.startswith("resume: collision risk with HT-001 cleared")
    assert resume.body["ModeAllStopId"] == command.body["ModeAllStopId"]
    risk = CollisionRisk.objects.get()
    assert risk.closed_at is not None and risk.min_d_ca_m == pytest.approx(35, abs=1)
    assert list(risk.interventions.order_by("at").values_list("kind", flat=True)) == [
        "slow_down",
        "resume",
    ]


def test_head_on_on_the_one_lane_ramp_stops_both(site):
    up, down = haul_truck(site, "HT-001"), haul_truck(site, "HT-002")
    drive(site, up, RAMP, 100, kmh=36)
    drive(site, down, RAMP, 180, forward=False, kmh=36)  # 80 m apart, closing at 20 m/s

    report = collision_services.assess_collision_risk(site)
    assert report.risks == 1 and report.commands == 2
    for truck, other in ((up, "HT-002"), (down, "HT-001")):
        (command,) = stops(truck)
        assert command.reason.startswith(f"stop (ISO 21815-2): collision risk with {other}")
        assert re.search(r"closest approach 0 m in (3\.[789]|4\.0) s", command.reason)

    # Both now stand, facing each other on the one-lane ramp: released they would meet again,
    # so the risk stays open and neither is released (one must back off: an operator's call).
    drive(site, up, RAMP, 120, kmh=0)
    drive(site, down, RAMP, 160, forward=False, kmh=0)
    report = collision_services.assess_collision_risk(site)
    assert (report.risks, report.resumed, report.commands) == (1, 0, 0)
    assert not stops(up, "Remove") and not stops(down, "Remove")
    assert "held, as if released at 20 km/h" in CollisionRisk.objects.get().source


def test_two_trucks_held_at_a_junction_go_one_after_the_other(site):
    rim_length = collision_services.site_roads(site)[1][RIM].length
    east, down = haul_truck(site, "HT-001"), haul_truck(site, "HT-002")
    drive(site, east, RIM, rim_length - 40, kmh=36)  # both 40 m from the junction, 4 s away
    drive(site, down, RAMP, 40, forward=False, kmh=36)
    assert collision_services.assess_collision_risk(site).commands == 2

    # Both stand; released together they would meet at the junction: one goes first.
    drive(site, east, RIM, rim_length - 30, kmh=0)
    drive(site, down, RAMP, 30, forward=False, kmh=0)
    report = collision_services.assess_collision_risk(site)
    assert report.resumed == 1 and CollisionRisk.objects.get().closed_at is None
    (first,) = stops(east, "Remove") + stops(down, "Remove")
    waiting = down if first.equipment == east else east
    assert first.reason.startswith(
        f"resume: goes first after the collision-risk stop with {waiting.name}"
    )
    assert not stops(waiting, "Remove")

    # The first one drives through and away: the other is resumed.
    drive(site, first.equipment, RIM, 100, forward=False, kmh=36)  # back west along the rim
    report = collision_services.assess_collision_risk(site)
    assert report.resumed == 1 and CollisionRisk.objects.get().closed_at is not None
    (resume,) = stops(waiting, "Remove")
    assert resume.reason.startswith(f"resume: collision risk with {first.equipment.name} cleared")


def test_oncoming_trucks_on_the_two_lane_rim_road_pass_in_their_lanes(site):
    east, west = haul_truck(site, "HT-001"), haul_truck(site, "HT-002")
    drive(site, east, RIM, 100)
    drive(site, west, RIM, 180, forward=False)
    report = collision_services.assess_collision_risk(site)
    assert report.machines == 2 and report.risks == 0 and not Command.objects.exists()


def test_a_truck_behind_a_standing_one_is_left_to_its_own_perception(site):
    standing, mover = haul_truck(site, "HT-001"), haul_truck(site, "HT-002")
    drive(site, standing, RIM, 300, kmh=0)
    drive(site, mover, RIM, 150, kmh=40)  # 150 m short, reaching it in 13.5 s
    report = collision_services.assess_collision_risk(site)  # pairs of moving machines only
    assert report.machines == 2 and report.risks == 0 and not Command.objects.exists()


def test_an_operators_stop_is_not_lifted_when_the_risk_clears(site, operator):
    leader, follower = haul_truck(site, "HT-001"), haul_truck(site, "HT-002")
    drive(site, leader, RIM, 250)
    drive(site, follower, RIM, 215)
    collision_services.assess_collision_risk(site)
    services.stop_truck(follower, reason="inspection", actor=operator)
    drive(site, leader, RIM, 450)
    assert collision_services.assess_collision_risk(site).resumed == 0
    assert not stops(follower, "Remove")


def test_a_fresh_trajectory_prediction_is_used_and_named(site):
    a, b = haul_truck(site, "HT-001"), haul_truck(site, "HT-002")
    drive(site, a, RAMP, 100, kmh=0.0)  # standing by the telemetry...
    drive(site, b, RAMP, 250, forward=False, kmh=36)  # ... while HT-002 comes down the ramp
    # ... but the trajectory head says HT-001 is starting up the one-lane ramp at 10 m/s.
    frame, roads = collision_services.site_roads(site)
    ahead = roads[RAMP].at(np.array([110.0, 130.0, 150.0]))
    lons, lats = frame.to_lonlat(ahead)
    Prediction.objects.create(
        equipment=a,
        model_name="trajectory",
        model_id="trajectory@7",
        window_end=datetime.now(UTC) - timedelta(seconds=0.2),
        outputs={
            "horizons_s": [1, 3, 5],
            "positions": [[float(x), float(y)] for x, y in zip(lons, lats, strict=True)],
        },
    )
    report = collision_services.assess_collision_risk(site)
    assert report.risks == 1 and report.fallback == 1
    (command,) = stops(a)
    assert command.reason.startswith("prevent-motion (ISO 21815-2): collision risk with HT-002")
    assert "path of HT-001 from trajectory@7" in command.reason
    assert stops(b)[0].reason.startswith("stop (ISO 21815-2): collision risk with HT-001")
    source = CollisionRisk.objects.get().source
    assert "HT-001: trajectory@7" in source and "HT-002: constant velocity along way 11" in source


def test_a_trajectory_answer_arriving_in_the_callback_is_assessed_at_once(site):
    """The inference callback (learning.store_prediction) stores the trajectory head's answer
    and hands the site to control, which stops the truck the prediction puts on the other."""
    import inference.worker  # noqa: F401  (PyTorch: imported before the window's clock starts)
    from fleet.learning.tasks import store_prediction
    from inference.wire import encode_arrays

    a, b = haul_truck(site, "HT-001"), haul_truck(site, "HT-002")
    drive(site, a, RIM, 100, kmh=0.0)
    drive(site, b, RIM, 260, kmh=10.0)
    frame, roads = collision_services.site_roads(site)
    lon, lat = frame.to_lonlat(roads[RIM].at(np.array([100.0]))[0])
    ahead_m = np.array([[[30.0, 0.0], [90.0, 0.0], [150.0, 0.0]]], dtype=np.float32)  # 30 m/s
    result = {
        "outputs": encode_arrays({"positions_m": ahead_m}),
        "queue_ms": 1.0,
        "compute_ms": 1.0,
        "batch_rows": 1,
        "batch_requests": 1,
        "model_id": "trajectory@3",
    }
    meta = {
        "truck": str(a.id),
        "head": "trajectory",
        "window_end": datetime.now(UTC).isoformat(),
        "origin": [float(lon), float(lat), 90.0],
    }
    store_prediction(result, meta)
    (command,) = stops(a)
    assert "collision risk with HT-002" in command.reason
    assert "path of HT-001 from trajectory@3" in command.reason


def test_stale_positions_and_exempt_states_are_not_placed(site, settings):
    a, b, c = (haul_truck(site, f"HT-00{n}") for n in (1, 2, 3))
    drive(site, a, RIM, 100)
    drive(site, b, RIM, 120)
    send(
        site,
        c,
        "HaulTruckProductionStateV2",
        {"WayId": RIM, "AutonomyMode": "Autonomous", "ProductionState": "Queued"},
    )
    settings.COLLISION_EXEMPT_STATES = ["Hauling"]
    assert collision_services.assess_collision_risk(site).machines == 0
    settings.COLLISION_EXEMPT_STATES = []
    assert collision_services.assess_collision_risk(site).machines == 2  # c has no position


# --- end to end: simulated trucks through the real broker ------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_truck_closing_on_the_one_ahead_is_stopped_obeys_and_is_resumed(
    mqtt_broker, site, tmp_path, monkeypatch
):
    """Two simulated trucks leave the park 2 s apart on the same road: the second closes on
    the first (the simulated trucks here follow at 30 m, as a careless truck would: under the
    50 m safety distance; the simulator's own default keeps 60 m). The assessment, run as beat runs it, stops it through the outbox; the truck
    obeys and acknowledges; once the leader is clear the follower is resumed and drives on."""
    monkeypatch.setattr(physics, "FOLLOW_GAP", 30.0)
    monkeypatch.setattr(physics, "FOLLOW_MIN", 30.0)
    mine = LiveMine(mqtt_broker, site, autonomous_trucks(site, 2), tmp_path / "credentials.json")
    mine.fleet.engine.timer[:] = [0.0, 2.0]
    leader, follower = mine.trucks
    mine.start()
    try:
        wait_until(
            lambda: collision_services.assess_collision_risk(site) and stops(follower),
            60,
            "a collision-risk stop for the follower",
        )
        (command,) = stops(follower)
        assert f"collision risk with {leader.name}, closest approach" in command.reason
        assert "constant velocity along way" in command.reason
        wait_until(
            lambda: Command.objects.get(pk=command.pk).status == "acknowledged",
            20,
            "the follower's acknowledgement",
        )
        assert mine.fleet.engine.stopped[1] and not mine.fleet.engine.stopped[0]
        assert not stops(leader)

        wait_until(
            lambda: collision_services.assess_collision_risk(site) and stops(follower, "Remove"),
            60,
            "the follower resumed once the leader is clear",
        )
        wait_until(lambda: not mine.fleet.engine.stopped[1], 20, "the follower driving again")
        kinds = list(
            CollisionIntervention.objects.filter(equipment=follower)
            .order_by("at")
            .values_list("kind", flat=True)
        )
        assert kinds[-1] == "resume" and kinds[0] in ("slow_down", "stop")
    finally:
        mine.stop()


def test_the_beat_task_assesses_every_active_site(site, settings):
    from fleet.control import tasks

    entry = settings.CELERY_BEAT_SCHEDULE["assess-collision-risk"]
    assert (entry["task"], entry["schedule"]) == ("control.assess_collision_risk", 1.0)
    leader, follower = haul_truck(site, "HT-001"), haul_truck(site, "HT-002")
    drive(site, leader, RIM, 250)
    drive(site, follower, RIM, 215)
    assert tasks.assess_collision_risk.apply().get() == 1  # open risks over the sites
    assert len(stops(follower)) == 1
