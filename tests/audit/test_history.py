"""Machines, sites and users that history refers to are retired or deactivated, never deleted:
the database refuses (PROTECT), and the admin says what to do instead, without an error page."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.contrib.gis.geos import Polygon
from django.db.models import ProtectedError
from django.test import Client

from fleet.learning.models import Prediction
from fleet.mine.models import PolicyZone, Site
from fleet.telemetry.models import HaulCycle
from fleet.vehicles.credentials import issue_credentials
from fleet.vehicles.models import Credential, Equipment
from tests.factories import LAT0, LON0, haul_truck, square

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_of_superuser(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def messages_of(response) -> str:
    return " ".join(str(m) for m in response.context["messages"])


# --- machines -----------------------------------------------------------------------------------


@pytest.fixture
def prediction(truck) -> Prediction:
    from django.utils import timezone

    return Prediction.objects.create(
        equipment=truck,
        model_name="fault",
        model_id="fault-head@1",
        window_end=timezone.now(),
        outputs={"verdict": "ok"},
    )


@pytest.fixture
def haul_cycle(truck) -> HaulCycle:
    from datetime import timedelta

    from django.utils import timezone

    started = timezone.now() - timedelta(minutes=20)
    return HaulCycle.objects.create(
        equipment=truck,
        loading_unit=truck.site.loading_units.first(),
        started_at=started,
        ended_at=started + timedelta(minutes=18),
        tonnes=88.0,
    )


@pytest.mark.parametrize(
    "history", ["command", "zone_response", "prediction", "credentials", "haul_cycle"]
)
def test_a_machine_with_history_cannot_be_deleted(request, truck, history):
    if history == "credentials":
        issue_credentials(truck)
    else:
        request.getfixturevalue(history)
    with pytest.raises(ProtectedError):
        truck.delete()
    assert Equipment.objects.filter(pk=truck.pk).exists()


def test_deleting_a_machine_with_history_in_the_admin_says_to_retire_it(
    client_of_superuser, command, truck
):
    url = f"/admin/vehicles/equipment/{truck.pk}/delete/"
    response = client_of_superuser.post(url, {"post": "yes"}, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == f"/admin/vehicles/equipment/{truck.pk}/change/"
    text = messages_of(response)
    assert "HT-001 is kept" in text and "1 command" in text and "Retire" in text
    assert Equipment.objects.filter(pk=truck.pk).exists()


def test_bulk_deleting_machines_with_history_in_the_admin_says_to_retire_them(
    client_of_superuser, command, truck, site
):
    spare = haul_truck(site, "HT-002")
    response = client_of_superuser.post(
        "/admin/vehicles/equipment/",
        {"action": "delete_selected", "_selected_action": [truck.pk, spare.pk], "post": "yes"},
        follow=True,
    )
    assert response.status_code == 200
    assert "HT-001 is kept" in messages_of(response)
    assert Equipment.objects.filter(pk__in=[truck.pk, spare.pk]).count() == 2


def test_a_machine_without_history_can_still_be_deleted_by_a_superuser(client_of_superuser, site):
    typo = haul_truck(site, "HT-0001")
    client_of_superuser.post(f"/admin/vehicles/equipment/{typo.pk}/delete/", {"post": "yes"})
    assert not Equipment.objects.filter(pk=typo.pk).exists()


def test_a_supervisor_may_not_delete_a_machine_at_all(supervisor, site):
    supervisor.is_staff = True
    supervisor.save()
    client = Client()
    client.force_login(supervisor)
    spare = haul_truck(site, "HT-002")
    assert client.post(f"/admin/vehicles/equipment/{spare.pk}/delete/").status_code == 403


def test_retiring_machines_keeps_their_history_and_revokes_their_credentials(
    supervisor, command, truck
):
    issue_credentials(truck)
    supervisor.is_staff = True
    supervisor.save()
    client = Client()
    client.force_login(supervisor)
    response = client.post(
        "/admin/vehicles/equipment/",
        {"action": "retire", "_selected_action": [truck.pk]},
        follow=True,
    )
    assert "Retired HT-001" in messages_of(response)
    truck.refresh_from_db()
    assert truck.status == Equipment.Status.RETIRED
    assert not Credential.objects.filter(equipment=truck, revoked_at__isnull=True).exists()
    assert truck.commands.get() == command and command.events.count() == 1


def test_a_loading_unit_named_by_a_haul_cycle_cannot_be_deleted(haul_cycle):
    with pytest.raises(ProtectedError):
        haul_cycle.loading_unit.delete()


# --- sites --------------------------------------------------------------------------------------


def test_a_site_whose_only_history_is_a_zone_cannot_be_deleted(db):
    bare = Site.objects.create(
        name="Bare pit",
        slug="barepit",
        utm_srid=32719,
        boundary=Polygon(square(LON0, LAT0, 0.005), srid=4326),
    )
    zone = PolicyZone.objects.create(
        site=bare,
        name="Closed bench",
        geometry=Polygon(square(LON0, LAT0, 0.0005), srid=4326),
        policies={"exclusion": {}},
    )
    with pytest.raises(ProtectedError):
        bare.delete()
    assert PolicyZone.objects.filter(pk=zone.pk).exists()


def test_deleting_a_site_with_history_in_the_admin_says_to_deactivate_it(client_of_superuser, site):
    response = client_of_superuser.post(
        f"/admin/mine/site/{site.pk}/delete/", {"post": "yes"}, follow=True
    )
    assert response.status_code == 200
    text = messages_of(response)
    assert f"{site.name} is kept" in text and "policy zone" in text and "Deactivate" in text
    assert Site.objects.filter(pk=site.pk).exists()


def test_a_site_is_deactivated_once_its_machines_are_retired(client_of_superuser, site, truck):
    def deactivate():
        return client_of_superuser.post(
            "/admin/mine/site/",
            {"action": "deactivate", "_selected_action": [site.pk]},
            follow=True,
        )

    refused = messages_of(deactivate())
    assert "retire its machines first" in refused and "HT-001" in refused
    site.refresh_from_db()
    assert site.active

    truck.status = Equipment.Status.RETIRED
    truck.save()
    assert f"Deactivated {site.name}" in messages_of(deactivate())
    site.refresh_from_db()
    assert not site.active and site.zones.exists()


# --- users --------------------------------------------------------------------------------------


def test_a_user_who_issued_a_command_cannot_be_deleted(command, supervisor):
    with pytest.raises(ProtectedError):
        supervisor.delete()
    command.refresh_from_db()
    assert command.issued_by == supervisor


def test_deleting_a_user_with_history_in_the_admin_says_to_deactivate_them(
    admin_user, command, supervisor
):
    client = Client()
    client.force_login(admin_user)
    response = client.post(
        f"/admin/auth/user/{supervisor.pk}/delete/", {"post": "yes"}, follow=True
    )
    assert response.status_code == 200
    text = messages_of(response)
    assert "sofia-supervisor is kept" in text and "Deactivate" in text
    assert User.objects.filter(pk=supervisor.pk).exists()


def test_deactivating_a_user_keeps_their_history_and_ends_their_access(
    admin_user, command, supervisor
):
    client = Client()
    client.force_login(admin_user)
    response = client.post(
        "/admin/auth/user/",
        {"action": "deactivate", "_selected_action": [supervisor.pk, admin_user.pk]},
        follow=True,
    )
    text = messages_of(response)
    assert "Deactivated sofia-supervisor" in text and "not your own account" in text
    supervisor.refresh_from_db()
    admin_user.refresh_from_db()
    assert not supervisor.is_active and admin_user.is_active
    command.refresh_from_db()
    assert command.issued_by == supervisor


def test_a_user_without_history_can_still_be_deleted_by_the_admin_role(admin_user, viewer):
    client = Client()
    client.force_login(admin_user)
    client.post(f"/admin/auth/user/{viewer.pk}/delete/", {"post": "yes"})
    assert not User.objects.filter(pk=viewer.pk).exists()
