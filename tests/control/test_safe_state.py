"""Safe state on link loss (ISO 17757): the FMS beats on each site's fleet topic; trucks that stop
hearing it stop themselves, say so (SafeStateV1), and the platform shows which are stopped for
that reason; when the beat comes back they resume. Real broker, simulated trucks."""

from __future__ import annotations

import threading

import pytest

from fleet.control.delivery import OutboxDelivery
from fleet.control.models import TruckState
from fleet.protocol import wire
from tests.conftest import wait_until
from tests.control.conftest import LiveMine, autonomous_trucks

pytestmark = pytest.mark.django_db(transaction=True)


def test_trucks_stop_when_the_fms_heartbeat_is_lost_and_resume_when_it_returns(
    mqtt_broker, site, tmp_path, settings, api_client, viewer
):
    settings.FMS_HEARTBEAT_MS = 200
    mine = LiveMine(
        mqtt_broker, site, autonomous_trucks(site, 3), tmp_path / "c.json", heartbeat_timeout_s=1.5
    )
    mine.start()
    try:
        wait_until(lambda: mine.fleet.received["FmsHeartbeatV1"] >= 6, 10, "heartbeats heard")
        assert not mine.fleet.safe_stopped

        mine.delivery.stop()  # the FMS falls silent
        wait_until(lambda: mine.fleet.safe_stopped, 10, "the trucks' safe stop")
        assert all(mine.fleet.engine.stopped[:3])
        api_client.force_authenticate(viewer)
        wait_until(
            lambda: (
                len(
                    api_client.get("/api/v1/control/states/", {"safe_stopped": "true"}).json()[
                        "results"
                    ]
                )
                == 3
            ),
            10,
            "three trucks shown as safe-stopped",
        )

        beating = OutboxDelivery("outbox-back")  # the FMS is back
        thread = threading.Thread(target=beating.run, daemon=True)
        thread.start()
        try:
            wait_until(lambda: not mine.fleet.safe_stopped, 10, "the trucks resuming")
            assert not any(mine.fleet.engine.stopped[:3])
            wait_until(
                lambda: not TruckState.objects.filter(safe_stopped_at__isnull=False).exists(),
                10,
                "the safe stop cleared",
            )
        finally:
            beating.stop()
            thread.join(10)
    finally:
        mine.stop()


def test_the_heartbeat_and_the_safe_state_are_valid_wire_messages():
    beat = wire.parse_fms_message(
        wire.encode("FmsHeartbeatV1", {"IntervalMs": 1000}, equipment_id=None)
    )
    assert beat.bodies["FmsHeartbeatV1"].interval_ms == 1000
    with pytest.raises(wire.WireError):
        wire.encode(
            "SafeStateV1",
            {"State": "Asleep", "Cause": "HeartbeatLost"},
            equipment_id="6b1c7a1e-1111-4222-8333-444455556666",
        )


def test_each_site_with_machines_in_service_gets_one_heartbeat_however_many_trucks(site):
    from fleet.control import services

    autonomous_trucks(site, 5)
    # One slug per site: a row per truck would beat the site's fleet topic once per truck
    # per interval (each of 300 trucks heard 300 heartbeats a second).
    assert services.heartbeat_sites() == [site.slug]
