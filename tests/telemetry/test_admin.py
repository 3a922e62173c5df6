"""The quarantine and the outbox are browsable in the admin, read-only."""

from __future__ import annotations

from datetime import UTC, datetime

from fleet.control import services as control
from fleet.telemetry.intake import Inbound
from fleet.telemetry.models import Rejection
from fleet.telemetry.services import EquipmentDirectory, ingest_batch
from tests.factories import haul_truck


def test_an_admin_reads_a_refused_message_and_cannot_edit_it(client, admin_user, site):
    truck = haul_truck(site)
    topic = f"iso23725/v1/{site.slug}/{truck.id}/up/MachinePositionV1"
    ingest_batch(
        [Inbound("mqtt", b'{"Protocol": 7}', datetime.now(UTC), topic=topic)], EquipmentDirectory()
    )
    rejection = Rejection.objects.get()
    client.force_login(admin_user)

    listing = client.get("/admin/telemetry/rejection/?reason=bad_protocol")
    page = client.get(f"/admin/telemetry/rejection/{rejection.pk}/change/")

    assert listing.status_code == 200 and "bad_protocol" in listing.text
    assert page.status_code == 200 and "{&quot;Protocol&quot;: 7}" in page.text
    assert 'name="_save"' not in page.text


def test_an_admin_follows_a_commands_audit_trail(client, admin_user, site):
    command = control.stop_truck(haul_truck(site), reason="person on the haul road")
    client.force_login(admin_user)

    page = client.get(f"/admin/control/command/{command.pk}/change/")

    assert page.status_code == 200
    assert "person on the haul road" in page.text
    assert client.get("/admin/control/command/add/").status_code == 403


def test_prometheus_metrics_are_served_to_loopback_with_the_rejection_counter(client, db):
    # db: the scrape reads the known ingest replicas (fleet.telemetry.replicas).
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    refused = client.get("/metrics", REMOTE_ADDR="10.1.2.3")

    assert response.status_code == 200
    assert b"haulmind_ingest_rejected_total" in response.content
    assert refused.status_code == 403
