"""Live compliance with the policy zones, decided as a message is admitted (before its batch is
stored): a truck inside an active exclusion zone, or above the lowest speed limit of the zones
it is in, raises an alert and, where configured, a stop; repeats are debounced and folded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.gis.geos import Polygon

from fleet.control import compliance
from fleet.control.models import Alert, Command
from fleet.mine import services as mine
from fleet.telemetry.intake import Inbound
from fleet.telemetry.services import EquipmentDirectory, ingest_batch
from fleet.telemetry.signals import messages_admitted
from tests.factories import LAT0, LON0, haul_truck, square, truck_message

INSIDE = {"lon": LON0, "lat": LAT0}
OUTSIDE = {"lon": LON0 + 0.01, "lat": LAT0}


@pytest.fixture(autouse=True)
def fresh_rules(settings):
    settings.CONTROL_ZONE_INDEX_S = 0
    settings.CONTROL_ALERT_REPEAT_S = 30
    compliance.INDEX.invalidate()
    compliance.DEBOUNCE.clear()
    yield
    compliance.DEBOUNCE.clear()


@pytest.fixture
def truck(site):
    return haul_truck(site)


def zone(site, policies, *, name="Blast area", half=0.0004, active=True):
    created = mine.create_zone(
        site=site,
        name=name,
        geometry=Polygon(square(LON0, LAT0, half), srid=4326),
        policies=policies,
    )
    return mine.activate_zone(created) if active else created


def send(site, truck, *, at=None, speed=20.0, **where):
    payload = truck_message(truck.id, at=at, speed=speed, **(where or INSIDE))
    topic = f"iso23725/v1/{site.slug}/{truck.id}/up/MachinePositionV1"
    result = ingest_batch(
        [Inbound("mqtt", payload, datetime.now(UTC), topic=topic)], EquipmentDirectory()
    )
    assert not result.refused, result.refused
    return result


def test_a_truck_in_an_exclusion_zone_is_alerted_and_stopped_before_its_message_is_stored(
    site, truck
):
    blast = zone(site, {"exclusion": {}})
    seen_before_store: list[int] = []

    def at_store(sender, admitted, **kwargs):  # runs in the batch's transaction, after the store
        seen_before_store.append(Alert.objects.filter(equipment=truck).count())

    messages_admitted.connect(at_store, dispatch_uid="test-compliance-order")
    try:
        send(site, truck, speed=12.0)
    finally:
        messages_admitted.disconnect(dispatch_uid="test-compliance-order")

    alert = Alert.objects.get()
    assert (alert.kind, alert.severity, alert.source) == (
        "exclusion",
        "critical",
        "compliance.exclusion",
    )
    assert alert.inputs["zone_id"] == str(blast.id) and "Blast area" in alert.reason
    stop = Command.objects.get(equipment=truck, message_name="MachineAllStopRequestV1")
    assert stop.body["ModeAllStop"] == "Apply" and f"alert {alert.pk}" in stop.reason
    assert alert.command_ids == [stop.command_id]
    assert seen_before_store == [1]  # decided before the batch's store, not after its commit


def test_outside_the_zone_or_with_the_zone_not_active_nothing_happens(site, truck):
    zone(site, {"exclusion": {}}, name="Not yet", active=False)
    send(site, truck)
    zone(site, {"exclusion": {}})
    send(site, truck, **OUTSIDE)
    assert not Alert.objects.exists() and not Command.objects.filter(equipment=truck).exists()


def test_a_late_message_is_history_not_a_finding(site, truck, settings):
    zone(site, {"exclusion": {}})
    send(site, truck, at=datetime.now(UTC) - timedelta(seconds=settings.INGEST_LATE_AFTER_S + 5))
    assert not Alert.objects.exists()


def test_repeats_are_debounced_then_folded_and_stop_once(site, truck, settings):
    zone(site, {"exclusion": {}})
    for _ in range(5):
        send(site, truck)
    assert Alert.objects.get().count == 1  # within CONTROL_ALERT_REPEAT_S: not acted on again

    settings.CONTROL_ALERT_REPEAT_S = 0
    send(site, truck)
    alert = Alert.objects.get()
    assert alert.count == 2  # folded into the open alert
    assert Command.objects.filter(equipment=truck).count() == 1  # the stop is not repeated


def test_the_lowest_speed_limit_where_the_truck_is_applies(site, truck, settings):
    settings.CONTROL_STOP_ON_SPEEDING = True
    settings.CONTROL_SPEED_TOLERANCE_KMH = 2
    zone(site, {"speedLimit": {"type": "absolute", "value": 10.0}}, name="Ramp")  # 36 km/h
    narrow = zone(
        site, {"speedLimit": {"type": "absolute", "value": 5.0}}, name="Crusher", half=0.0002
    )  # 18 km/h

    send(site, truck, speed=19.5)  # within the tolerance
    assert not Alert.objects.exists()
    send(site, truck, speed=25.0)

    alert = Alert.objects.get()
    assert (alert.kind, alert.severity) == ("speeding", "warning")
    assert alert.inputs["zone_id"] == str(narrow.id) and alert.inputs["limit_kmh"] == 18.0
    assert alert.channel == "MachinePositionV1.Speed"
    assert Command.objects.get(equipment=truck).message_name == "MachineAllStopRequestV1"


def test_speeding_stops_only_where_configured(site, truck, settings):
    settings.CONTROL_STOP_ON_SPEEDING = False
    zone(site, {"speedLimit": {"type": "percent", "value": 50}})  # of the site's mapped speed
    send(site, truck, speed=site.default_speed_kmh * 0.5 + 10)
    assert Alert.objects.get().kind == "speeding"
    assert not Command.objects.filter(equipment=truck).exists()
