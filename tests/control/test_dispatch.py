"""Dispatch on the platform: plans and assignments through the outbox, a loading unit down moving
the trucks heading to it, operators' assignments holding until the next dump — as services and
over REST, and end to end with simulated trucks through the real broker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from fleet.control import dispatching
from fleet.control.models import Assignment, Command, DispatchPlan, DispatchTruck
from fleet.mine.mapfile import import_site_map
from fleet.mine.models import LoadingUnit
from fleet.protocol import wire
from fleet.telemetry.intake import Inbound
from fleet.telemetry.services import EquipmentDirectory, ingest_batch
from tests.conftest import wait_until
from tests.control.conftest import LiveMine, autonomous_trucks
from tests.factories import LAT0, LON0, D, small_site_map


def two_shovel_map(slug: str = "dispatchpit") -> dict:
    """The small test pit with a second ore shovel, SH-02, at the end of a road south of the
    junction: SH-01 is nearer the crusher, so a small fleet is planned all on SH-01."""
    doc = small_site_map(slug=slug)
    far = [LON0, LAT0 - D, 2900.0]
    doc["features"] += [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": far},
            "properties": {"featureType": "roadNode", "nodeId": 4},
        },
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [[LON0, LAT0, 2900.0], far]},
            "properties": {
                "featureType": "way",
                "wayId": 12,
                "name": "South bench road",
                "startNode": 2,
                "endNode": 4,
            },
        },
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": far},
            "properties": {
                "featureType": "loadingUnit",
                "name": "SH-02",
                "loadingRateTph": 6000,
                "material": "ore",
            },
        },
    ]
    return doc


@pytest.fixture
def pit(db):
    dispatching.clear_caches()
    return import_site_map(two_shovel_map()).site


def report_state(truck, state: str, way_id: int | None, assignment_id=None) -> None:
    """A truck's HaulTruckProductionStateV2 through ingest (as if it came over MQTT)."""
    body = {
        "AssignmentId": str(assignment_id) if assignment_id else None,
        "WayId": way_id,
        "AutonomyMode": "Autonomous",
        "ProductionState": state,
    }
    payload = wire.encode(
        "HaulTruckProductionStateV2", body, equipment_id=truck.id, timestamp=datetime.now(UTC)
    )
    topic = f"iso23725/v1/{truck.site.slug}/{truck.id}/up/HaulTruckProductionStateV2"
    result = ingest_batch(
        [Inbound("mqtt", payload, datetime.now(UTC), topic=topic)], EquipmentDirectory()
    )
    assert not result.refused, result.refused


def unit(site, name: str) -> LoadingUnit:
    return LoadingUnit.objects.get(site=site, name=name)


def load_request(command: Command) -> dict:
    return next(r for r in command.body if r["Task"] == "Load")


# --- services ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_switching_dispatch_on_solves_and_records_a_plan(pit):
    autonomous_trucks(pit, 3)
    dispatching.set_enabled(pit, True)
    plan = DispatchPlan.objects.get(site=pit)
    assert plan.status == "optimal" and plan.trucks == 3 and plan.tph > 0
    # Three trucks cannot keep SH-01 busy: the plan puts them all on its shorter cycle.
    assert {r["unitName"] for r in plan.plan["routes"]} == {"SH-01"}
    assert "the fleet's truck-hours" in plan.plan["binding"]
    assert {u["name"] for u in plan.inputs["units"]} == {"SH-01", "SH-02"}


@pytest.mark.django_db
def test_a_truck_that_dumps_is_sent_to_the_neediest_loading_unit_before_it_leaves(pit):
    (truck,) = autonomous_trucks(pit, 1)
    dispatching.set_enabled(pit, True)
    report_state(truck, "Hauling", 10)
    assert not Assignment.objects.exists()
    report_state(truck, "Dumping", 10)
    assignment = Assignment.objects.get(equipment=truck)
    assert assignment.loading_unit.name == "SH-01" and assignment.actor == "dispatcher"
    assert assignment.plan == DispatchPlan.objects.get(site=pit)
    assert "tipping" in assignment.reason and "SH-01" in assignment.reason
    report_state(truck, "Driving", 10)  # leaving the dump: nothing new to decide
    assert Assignment.objects.filter(equipment=truck).count() == 1
    command = assignment.command
    assert command.message_name == "HaulTruckAssignmentRequestV2" and command.reason
    assert [r["Task"] for r in command.body] == ["Offload", "Load"]
    assert load_request(command)["AssignmentId"] == str(assignment.assignment_id)
    assert load_request(command)["DestinationId"] == 11  # the way ending at SH-01
    assert command.events.get().status == "issued"


@pytest.mark.django_db
def test_a_site_not_dispatched_is_only_tracked(pit):
    (truck,) = autonomous_trucks(pit, 1)
    report_state(truck, "Dumping", 10)
    report_state(truck, "Driving", 10)
    assert DispatchTruck.objects.get(equipment=truck).production_state == "Driving"
    assert not Assignment.objects.exists()


@pytest.mark.django_db
def test_a_loading_unit_down_moves_the_trucks_heading_to_it(pit, operator):
    trucks = autonomous_trucks(pit, 3)
    dispatching.set_enabled(pit, True)
    for truck in trucks:
        report_state(truck, "Dumping", 10)
        report_state(truck, "Driving", 10)
    assert set(Assignment.objects.values_list("loading_unit__name", flat=True)) == {"SH-01"}
    _, result = dispatching.set_unit_availability(
        unit(pit, "SH-01"), available=False, reason="hydraulic leak", actor=operator
    )
    assert result is not None and result.plan.trigger == "unit-down"
    assert {r["unitName"] for r in result.plan.plan["routes"]} == {"SH-02"}
    assert sorted(a.equipment_id for a in result.moved) == sorted(t.id for t in trucks)
    for truck in trucks:
        latest = Assignment.objects.filter(equipment=truck).order_by("-at").first()
        assert latest.loading_unit.name == "SH-02" and "SH-01 down" in latest.reason
        # The earlier assignment's command is replaced, not queued behind.
        statuses = Command.objects.filter(equipment=truck).values_list("status", flat=True)
        assert sorted(statuses) == ["issued", "superseded"]


@pytest.mark.django_db
def test_a_replan_locks_the_open_commands_in_serial_order_before_replacing_any(pit, operator):
    """The ingest process locks commands by serial when it records answers; a re-plan that
    locked them truck by truck in its own order deadlocked against it (CI, 2026-12-06)."""
    trucks = autonomous_trucks(pit, 3)
    dispatching.set_enabled(pit, True)
    for truck in reversed(trucks):
        report_state(truck, "Dumping", 10)
        report_state(truck, "Driving", 10)
    with CaptureQueriesContext(connection) as queries:
        dispatching.set_unit_availability(
            unit(pit, "SH-01"), available=False, reason="hydraulic leak", actor=operator
        )
    on_commands = [
        q["sql"]
        for q in queries.captured_queries
        if '"control_command"' in q["sql"].split("WHERE")[0]
    ]
    first_lock = next(
        i for i, sql in enumerate(on_commands) if sql.endswith('FOR UPDATE OF "control_command"')
    )
    first_change = next(i for i, sql in enumerate(on_commands) if sql.startswith("UPDATE"))
    assert first_lock < first_change
    assert 'ORDER BY "control_command"."serial" ASC' in on_commands[first_lock]
    assert all(str(t.id).replace("-", "") in on_commands[first_lock] for t in trucks)


@pytest.mark.django_db
def test_a_truck_at_its_loading_unit_stays_when_the_plan_changes(pit, operator):
    first, second = autonomous_trucks(pit, 2)
    dispatching.set_enabled(pit, True)
    for truck in (first, second):
        report_state(truck, "Dumping", 10)
        report_state(truck, "Driving", 10)
    report_state(first, "Loading", 11)
    _, result = dispatching.set_unit_availability(
        unit(pit, "SH-02"), available=True, reason="back on the bench", actor=operator,
        dig_rate_tph=3000.0,
    )  # fmt: skip
    assert first.id not in {a.equipment_id for a in result.moved}


@pytest.mark.django_db
def test_a_truck_assigned_by_hand_keeps_it_until_its_next_dump(pit, operator):
    truck, _other = autonomous_trucks(pit, 2)
    dispatching.set_enabled(pit, True)
    manual = dispatching.assign_by_hand(
        truck, unit(pit, "SH-02"), reason="clean-up load", actor=operator
    )
    assert manual.manual and manual.actor == operator.username
    assert DispatchTruck.objects.get(equipment=truck).manual_hold
    # The optimiser works around it: a re-plan does not move it.
    result = dispatching.replan(pit, trigger="operator", reason="test")
    assert truck.id not in {a.equipment_id for a in result.moved}
    report_state(truck, "Driving", 12)
    assert Assignment.objects.filter(equipment=truck).count() == 1
    # After its next dump the dispatcher has it again.
    report_state(truck, "Dumping", 10)
    report_state(truck, "Driving", 10)
    latest = Assignment.objects.filter(equipment=truck).order_by("-at").first()
    assert not latest.manual and latest.actor == "dispatcher"
    assert not DispatchTruck.objects.get(equipment=truck).manual_hold


@pytest.mark.django_db
def test_a_released_truck_is_dispatched_at_once(pit, operator):
    (truck,) = autonomous_trucks(pit, 1)
    dispatching.set_enabled(pit, True)
    dispatching.assign_by_hand(truck, unit(pit, "SH-02"), reason="clean-up", actor=operator)
    report_state(truck, "Driving", 10)
    assignment = dispatching.release_truck(truck, reason="not needed", actor=operator)
    assert assignment is not None and assignment.loading_unit.name == "SH-01"
    assert "released by" in assignment.reason


# --- REST ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_operators_report_a_loading_unit_down_and_viewers_cannot(pit, api_client, operator, viewer):
    autonomous_trucks(pit, 2)
    dispatching.set_enabled(pit, True)
    sh01 = unit(pit, "SH-01")
    url = f"/api/v1/loading-units/{sh01.pk}/availability/"
    api_client.force_authenticate(viewer)
    assert api_client.post(url, {"available": False, "reason": "x"}).status_code == 403
    assert api_client.get(f"/api/v1/sites/{pit.id}/dispatch/").status_code == 200
    api_client.force_authenticate(operator)
    missing = api_client.post(url, {"available": False})
    assert missing.status_code == 400 and "reason" in missing.json()
    answer = api_client.post(url, {"available": False, "reason": "bucket teeth"})
    assert answer.status_code == 201
    assert answer.json()["plan"]["trigger"] == "unit-down"
    state = api_client.get(f"/api/v1/sites/{pit.id}/dispatch/").json()
    down = next(u for u in state["units"] if u["name"] == "SH-01")
    assert down["available"] is False and down["planned_tph"] == 0.0


@pytest.mark.django_db
def test_operators_assign_by_hand_and_only_supervisors_switch_dispatch(
    pit, api_client, operator, supervisor
):
    (truck,) = autonomous_trucks(pit, 1)
    api_client.force_authenticate(operator)
    url = f"/api/v1/sites/{pit.id}/dispatch/"
    assert api_client.post(url, {"enabled": True}).status_code == 403
    api_client.force_authenticate(supervisor)
    assert api_client.post(url, {"enabled": True}).json()["enabled"] is True
    api_client.force_authenticate(operator)
    bad = api_client.post(
        f"/api/v1/trucks/{truck.id}/assignment/", {"loading_unit": 999_999, "reason": "x"}
    )
    assert bad.status_code == 400 and "loading_unit" in bad.json()
    made = api_client.post(
        f"/api/v1/trucks/{truck.id}/assignment/",
        {"loading_unit": unit(pit, "SH-02").pk, "reason": "clean-up"},
    )
    assert made.status_code == 201 and made.json()["manual"] is True
    listed = api_client.get(f"/api/v1/dispatch/assignments/?truck={truck.id}").json()
    assert listed[0]["reason"].startswith("by hand") and listed[0]["loading_unit"] == "SH-02"
    release = f"/api/v1/trucks/{truck.id}/assignment/release/"
    assert api_client.post(release, {"reason": "done"}).status_code in (200, 204)
    assert api_client.post(release, {"reason": "again"}).status_code == 409


# --- end to end ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_replan_when_a_shovel_goes_down_reaches_the_trucks_and_they_report_it(
    mqtt_broker, tmp_path, operator
):
    dispatching.clear_caches()
    site = import_site_map(two_shovel_map("dispatche2e")).site
    trucks = autonomous_trucks(site, 3)
    dispatching.set_enabled(site, True)
    mine = LiveMine(mqtt_broker, site, trucks, tmp_path / "credentials.json").start()
    try:
        # Each truck is dispatched when it leaves the park, and reports its AssignmentId.
        def reported(truck) -> bool:
            state = DispatchTruck.objects.filter(equipment=truck).select_related("assignment")
            row = state.first()
            return bool(
                row
                and row.assignment
                and row.reported_assignment_id == row.assignment.assignment_id
            )

        wait_until(lambda: reported(trucks[0]), 60, "the first truck reporting its assignment")

        # The trucks leave the park one after another, so on a loaded machine the first to
        # report may be bound for SH-02 while the others are not yet dispatched: wait for
        # one that is on its way to SH-01.
        def heading_to_sh01() -> bool:
            return DispatchTruck.objects.filter(
                equipment__in=trucks, assignment__loading_unit__name="SH-01", arrived=False
            ).exists()

        wait_until(heading_to_sh01, 60, "a truck on its way to SH-01")
        _, result = dispatching.set_unit_availability(
            unit(site, "SH-01"), available=False, reason="boom cylinder", actor=operator
        )
        moved = {a.equipment_id: a for a in result.moved}
        assert moved, "the re-plan moved the trucks heading to SH-01"
        assert all(a.loading_unit.name == "SH-02" for a in moved.values())

        def all_report_the_new_assignment() -> bool:
            states = DispatchTruck.objects.filter(equipment_id__in=moved)
            return all(
                s.reported_assignment_id == moved[s.pk].assignment_id for s in states
            ) and len(states) == len(moved)

        wait_until(all_report_the_new_assignment, 60, "the moved trucks reporting it")
        commands = Command.objects.filter(pk__in=[a.command_id for a in moved.values()])
        wait_until(
            lambda: set(commands.values_list("status", flat=True)) == {"acknowledged"},
            30,
            "the assignments acknowledged",
        )
    finally:
        mine.stop()
    assert uuid.UUID(str(next(iter(moved.values())).assignment_id))


@pytest.mark.django_db
def test_the_large_generated_mine_imports_and_is_planned():
    from fleet.mine.demo import create_large_mine

    dispatching.clear_caches()
    summary = create_large_mine(40, pits=2, loading_units=6)
    assert summary.loading_units == 6 and summary.trucks_active == 40
    site = LoadingUnit.objects.filter(name="P1-SH01").get().site
    result = dispatching.replan(site, trigger="operator", reason="test")
    assert result.plan.status == "optimal" and result.plan.tph > 0


def test_the_dispatch_command_switches_a_site_on_and_off(pit, capsys):
    autonomous_trucks(pit, 3)
    call_command("dispatch", pit.slug, "on")
    assert dispatching.enabled(pit) and DispatchPlan.objects.filter(site=pit).exists()
    assert f"dispatch at {pit.slug}: on; latest plan" in capsys.readouterr().out

    call_command("dispatch", pit.slug, "off")
    assert not dispatching.enabled(pit)
    with pytest.raises(CommandError, match="no site 'nowhere'"):
        call_command("dispatch", "nowhere", "status")
