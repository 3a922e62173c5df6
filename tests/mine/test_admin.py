"""The offline admin console: every page opens, maps never leave the server, zones follow their
lifecycle, and machine secrets are shown once and stored only as hashes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.gis.geos import Polygon
from django.test import Client
from django.urls import reverse

from fleet.mine.models import PolicyZone, ZoneResponse
from fleet.vehicles.credentials import authenticate_api_token, issue_credentials
from fleet.vehicles.models import Credential, Equipment, WorkshopRecord
from fleet.vehicles.passwords import check_mosquitto_hash
from tests.factories import LAT0, LON0, square

DOMAIN_APPS = ("mine", "vehicles")
REGISTERED = sorted(
    (model._meta.app_label, model._meta.model_name)
    for model in admin.site._registry
    if model._meta.app_label in DOMAIN_APPS
)
URL_ATTRIBUTE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


@pytest.fixture
def client_as_admin(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def truck(site) -> Equipment:
    return Equipment.objects.create(
        site=site, kind="haul_truck", name="HT-001", payload_capacity_t=90, autonomous=True
    )


@pytest.fixture
def every_model(site, truck) -> None:
    """At least one row of every registered model, so each change page can be opened."""
    issue_credentials(truck)
    ZoneResponse.objects.create(
        zone=site.zones.first(),
        equipment=truck,
        request="activate",
        accepted=True,
        responded_at=datetime.now(tz=UTC),
    )
    WorkshopRecord.objects.create(
        equipment=truck,
        kind=WorkshopRecord.Kind.BRAKE_FADE,
        channel="brake_temp_c",
        found_at=datetime.now(tz=UTC),
    )


def admin_url(app: str, model: str, view: str, *args: object) -> str:
    return reverse(f"admin:{app}_{model}_{view}", args=args)


def outside_urls(html: str) -> list[str]:
    """Every src/href in the page that would make the browser leave this server."""
    return [url for url in URL_ATTRIBUTE.findall(html) if re.match(r"(?i)(https?:)?//", url)]


def zone_form(site, **overrides: object) -> dict[str, str]:
    polygon = Polygon(square(LON0, LAT0 - 0.002, 0.0004), srid=4326)
    data = {
        "name": "Bench 4 closed",
        "site": str(site.pk),
        "geometry": polygon.ewkt,
        "policies": json.dumps({"exclusion": {}}),
        "replaces": "",
    }
    data.update({k: str(v) for k, v in overrides.items()})
    return data


def run_action(client: Client, url: str, action: str, pks: list[object]):
    return client.post(
        url, {"action": action, "_selected_action": [str(pk) for pk in pks]}, follow=True
    )


# --- every page --------------------------------------------------------------------------------


def test_every_model_of_the_mine_and_the_fleet_is_registered():
    names = {name for _, name in REGISTERED}
    assert names == {
        "site",
        "roadnetwork",
        "roadnode",
        "way",
        "policyzone",
        "zoneresponse",
        "loadingunit",
        "dumppoint",
        "area",
        "equipment",
        "credential",
        "workshoprecord",
    }


@pytest.mark.parametrize(("app", "model"), REGISTERED)
def test_each_changelist_and_change_page_opens(client_as_admin, every_model, app, model):
    changelist = client_as_admin.get(admin_url(app, model, "changelist"))
    assert changelist.status_code == 200
    obj = changelist.context["cl"].result_list[0]
    change = client_as_admin.get(admin_url(app, model, "change", obj.pk))
    assert change.status_code == 200


@pytest.mark.parametrize(("app", "model"), REGISTERED)
def test_each_changelist_searches_without_error(client_as_admin, every_model, app, model):
    response = client_as_admin.get(admin_url(app, model, "changelist"), {"q": "no-such thing 7"})
    assert response.status_code == 200


def test_the_console_is_titled_for_the_control_room(client_as_admin):
    response = client_as_admin.get(reverse("admin:index"))
    assert "Haulmind control" in response.content.decode()


def test_computed_lengths_grades_and_areas_are_shown(client_as_admin, site):
    ways = client_as_admin.get(admin_url("mine", "way", "changelist")).content.decode()
    assert "+5.3 %" in ways  # the ramp climbs 20 m over 378 m
    assert "378 m" in ways
    site_page = client_as_admin.get(admin_url("mine", "site", "change", site.pk)).content.decode()
    assert "km²" in site_page


# --- offline maps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "needs_object"),
    [("policyzone", False), ("site", True), ("way", True), ("area", True), ("loadingunit", True)],
)
def test_map_widgets_load_only_vendored_openlayers(client_as_admin, site, model, needs_object):
    if needs_object:
        obj = apps.get_model("mine", model).objects.first()
        url = admin_url("mine", model, "change", obj.pk)
    else:
        url = admin_url("mine", model, "add")
    html = client_as_admin.get(url).content.decode()
    assert "/static/vendor/ol/ol.js" in html and "/static/vendor/ol/ol.css" in html
    assert "/static/fleet/offline-mapwidget.js" in html
    assert outside_urls(html) == []
    lowered = html.lower()
    assert (
        "openstreetmap" not in lowered and "cdn." not in lowered and "ol.source.osm" not in lowered
    )


def test_the_widget_draws_the_site_boundary_and_roads_for_context(client_as_admin, site):
    html = client_as_admin.get(admin_url("mine", "policyzone", "add")).content.decode()
    context = json.loads(
        re.search(r'id="id_geometry_context"[^>]*>(.*?)</script>', html, re.S).group(1)
    )
    kinds = sorted(f["properties"]["featureType"] for f in context["features"])
    assert kinds == ["siteBoundary", "way", "way"]
    assert ">null</textarea>" not in html  # an empty policies box, not the JSON literal


def test_the_site_map_page_draws_the_whole_map_offline(client_as_admin, site):
    change = client_as_admin.get(admin_url("mine", "site", "change", site.pk)).content.decode()
    map_url = reverse("admin:mine_site_map", args=[site.pk])
    assert map_url in change
    response = client_as_admin.get(map_url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/vendor/ol/ol.js" in html and "/static/fleet/site-map.js" in html
    assert outside_urls(html) == []
    assert "openstreetmap" not in html.lower()
    data = json.loads(re.search(r'id="site-map-data"[^>]*>(.*?)</script>', html, re.S).group(1))
    kinds = {f.get("featureType") or f["properties"]["featureType"] for f in data["features"]}
    assert kinds == {
        "siteBoundary",
        "roadNode",
        "way",
        "policyZone",
        "loadingUnit",
        "dumpPoint",
        "area",
    }


def test_the_site_map_of_an_unknown_site_is_not_found(client_as_admin, db):
    response = client_as_admin.get(
        reverse("admin:mine_site_map", args=["4b1d0000-0000-0000-0000-000000000000"])
    )
    assert response.status_code == 404


def test_a_user_without_staff_access_cannot_open_the_site_map(operator, site):
    client = Client()
    client.force_login(operator)
    response = client.get(reverse("admin:mine_site_map", args=[site.pk]))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


# --- policy zones ------------------------------------------------------------------------------


def add_zone(client: Client, site, **overrides: object):
    return client.post(admin_url("mine", "policyzone", "add"), zone_form(site, **overrides))


def test_the_zone_form_refuses_a_bow_tie_polygon(client_as_admin, site):
    bow_tie = Polygon(
        [
            (LON0, LAT0),
            (LON0 + 0.001, LAT0 + 0.001),
            (LON0 + 0.001, LAT0),
            (LON0, LAT0 + 0.001),
            (LON0, LAT0),
        ],
        srid=4326,
    )
    response = add_zone(client_as_admin, site, name="Bow tie", geometry=bow_tie.ewkt)
    assert response.status_code == 200
    assert "Self-intersection" in response.content.decode()
    assert not PolicyZone.objects.filter(name="Bow tie").exists()


def test_the_zone_form_refuses_an_unknown_policy(client_as_admin, site):
    response = add_zone(client_as_admin, site, policies=json.dumps({"teleport": {}}))
    html = response.content.decode()
    assert response.status_code == 200
    assert "unknown policy &#x27;teleport&#x27;" in html
    assert not PolicyZone.objects.filter(name="Bench 4 closed").exists()


def test_the_zone_form_refuses_a_negative_speed_limit(client_as_admin, site):
    policies = {"speedLimit": {"type": "absolute", "value": -5}}
    response = add_zone(client_as_admin, site, policies=json.dumps(policies))
    assert response.status_code == 200
    assert "speedLimit.value must not be negative, got -5" in response.content.decode()
    assert not PolicyZone.objects.filter(name="Bench 4 closed").exists()


def test_the_zone_form_refuses_a_zone_outside_the_site(client_as_admin, site):
    far = Polygon(square(LON0 + 1, LAT0, 0.0004), srid=4326)
    response = add_zone(client_as_admin, site, geometry=far.ewkt)
    assert "outside the site" in response.content.decode()


def test_the_zone_form_accepts_geojson_drawn_on_the_web_mercator_map(client_as_admin, site):
    # What the browser's widget submits: GeoJSON in the map's EPSG:3857.
    drawn = Polygon(square(LON0, LAT0 - 0.002, 0.0004), srid=4326).transform(3857, clone=True)
    response = add_zone(client_as_admin, site, geometry=drawn.geojson)
    assert response.status_code == 302
    zone = PolicyZone.objects.get(name="Bench 4 closed")
    assert zone.geometry.srid == 4326
    assert zone.geometry.centroid.distance(drawn.transform(4326, clone=True).centroid) < 1e-6


def test_a_valid_zone_is_created_pending_by_the_user(client_as_admin, admin_user, site):
    policies = {"speedLimit": {"type": "absolute", "value": "8.3"}}
    response = add_zone(client_as_admin, site, policies=json.dumps(policies))
    assert response.status_code == 302
    zone = PolicyZone.objects.get(name="Bench 4 closed")
    assert zone.status == PolicyZone.Status.PENDING
    assert zone.created_by == admin_user
    assert zone.policies == {"speedLimit": {"type": "absolute", "value": 8.3}}
    assert zone.area_m2 > 5000


def test_an_existing_zone_is_read_only(client_as_admin, site):
    zone = site.zones.first()
    url = admin_url("mine", "policyzone", "change", zone.pk)
    page = client_as_admin.get(url)
    html = page.content.decode()
    assert page.status_code == 200
    assert 'name="_save"' not in html and "Replace zone" in html
    assert "/static/vendor/ol/ol.js" in html  # the zone is shown on a (read-only) map
    assert client_as_admin.post(url, zone_form(site, name="Edited")).status_code == 403
    assert (
        client_as_admin.post(admin_url("mine", "policyzone", "delete", zone.pk)).status_code == 403
    )
    zone.refresh_from_db()
    assert zone.name == "Ramp 30 km/h"


def test_replace_zone_prefills_a_new_zone_that_replaces_the_old(client_as_admin, site):
    old = site.zones.first()
    form = client_as_admin.get(admin_url("mine", "policyzone", "add") + f"?replaces={old.pk}")
    assert form.context["adminform"].form.initial["replaces"] == old.pk
    data = zone_form(site, replaces=old.pk, name="Ramp 20 km/h")
    data["policies"] = json.dumps({"speedLimit": {"type": "absolute", "value": 5.5}})
    assert client_as_admin.post(admin_url("mine", "policyzone", "add"), data).status_code == 302
    new = PolicyZone.objects.get(name="Ramp 20 km/h")
    assert new.replaces == old


def test_activate_action_activates_a_pending_zone(client_as_admin, site):
    add_zone(client_as_admin, site)
    zone = PolicyZone.objects.get(name="Bench 4 closed")
    response = run_action(
        client_as_admin, admin_url("mine", "policyzone", "changelist"), "activate", [zone.pk]
    )
    zone.refresh_from_db()
    assert zone.status == PolicyZone.Status.ACTIVE and zone.activated_at is not None
    assert "Activated: Bench 4 closed" in response.content.decode()


def test_activating_an_active_zone_reports_why_not(client_as_admin, site):
    zone = site.zones.get(status="active")
    response = run_action(
        client_as_admin, admin_url("mine", "policyzone", "changelist"), "activate", [zone.pk]
    )
    html = response.content.decode().lower()
    assert "cannot activate zone &#x27;ramp 30 km/h&#x27;: it is active" in html


def test_request_deletion_action_sends_an_active_zone_to_pending_delete(client_as_admin, site):
    zone = site.zones.get(status="active")
    url = admin_url("mine", "policyzone", "changelist")
    run_action(client_as_admin, url, "request_deletion", [zone.pk])
    zone.refresh_from_db()
    assert zone.status == PolicyZone.Status.PENDING_DELETE


def test_a_viewer_cannot_activate_zones(viewer, site):
    viewer.is_staff = True
    viewer.save()
    client = Client()
    client.force_login(viewer)
    page = client.get(admin_url("mine", "policyzone", "changelist"))
    assert page.status_code == 200
    assert 'value="activate"' not in page.content.decode()
    zone = site.zones.first()
    run_action(client, admin_url("mine", "policyzone", "changelist"), "activate", [zone.pk])
    assert client.get(admin_url("mine", "policyzone", "add")).status_code == 403


def test_an_operator_can_add_and_activate_zones(operator, site):
    operator.is_staff = True
    operator.save()
    client = Client()
    client.force_login(operator)
    assert add_zone(client, site).status_code == 302
    zone = PolicyZone.objects.get(name="Bench 4 closed")
    run_action(client, admin_url("mine", "policyzone", "changelist"), "activate", [zone.pk])
    zone.refresh_from_db()
    assert zone.status == PolicyZone.Status.ACTIVE


# --- machine credentials -----------------------------------------------------------------------


def shown_secrets(html: str) -> list[str]:
    return re.findall(r'<code class="secret">([^<]+)</code>', html)


def test_issue_credentials_shows_the_secrets_once_and_stores_only_hashes(client_as_admin, truck):
    url = admin_url("vehicles", "equipment", "changelist")
    response = run_action(client_as_admin, url, "issue_machine_credentials", [truck.pk])
    html = response.content.decode()
    assert "shown once" in html
    assert "no-store" in response["Cache-Control"]
    mqtt_password, api_token = shown_secrets(html)
    stored = list(Credential.objects.filter(equipment=truck).values_list("secret_hash", flat=True))
    assert len(stored) == 2
    assert all(mqtt_password not in h and api_token.split("_", 2)[2] not in h for h in stored)
    mqtt_hash = Credential.objects.get(equipment=truck, kind="mqtt").secret_hash
    assert check_mosquitto_hash(mqtt_password, mqtt_hash)
    assert authenticate_api_token(api_token) == truck
    # Nowhere else in the console shows them again.
    for page in (url, admin_url("vehicles", "equipment", "change", truck.pk)):
        again = client_as_admin.get(page).content.decode()
        assert mqtt_password not in again and api_token not in again
    credentials = client_as_admin.get(admin_url("vehicles", "credential", "changelist"))
    assert api_token.split("_", 2)[2] not in credentials.content.decode()


def test_a_manned_machine_gets_no_credentials_from_the_console(client_as_admin, site):
    dozer = Equipment.objects.create(site=site, kind="ancillary", name="DZ-1")
    url = admin_url("vehicles", "equipment", "changelist")
    response = run_action(client_as_admin, url, "issue_machine_credentials", [dozer.pk])
    assert "not autonomous" in response.content.decode()
    assert not Credential.objects.filter(equipment=dozer).exists()


def test_revoke_action_revokes_the_machines_credentials(client_as_admin, truck):
    issued = issue_credentials(truck)
    credential = Credential.objects.get(equipment=truck, kind="api")
    response = run_action(
        client_as_admin,
        admin_url("vehicles", "credential", "changelist"),
        "revoke",
        [credential.pk],
    )
    assert "Revoked credentials of HT-001 (2)" in response.content.decode()
    assert not Credential.objects.filter(equipment=truck, revoked_at__isnull=True).exists()
    assert authenticate_api_token(issued.api_token) is None


def test_credentials_cannot_be_added_or_edited_in_the_console(client_as_admin, truck):
    issue_credentials(truck)
    credential = Credential.objects.filter(equipment=truck).first()
    assert client_as_admin.get(admin_url("vehicles", "credential", "add")).status_code == 403
    change_url = admin_url("vehicles", "credential", "change", credential.pk)
    assert client_as_admin.post(change_url, {"key_id": "x"}).status_code == 403
    assert "secret_hash" not in client_as_admin.get(change_url).content.decode()


def test_equipment_is_filtered_and_searched(client_as_admin, truck, site):
    Equipment.objects.create(site=site, kind="light_vehicle", name="LV-7")
    url = admin_url("vehicles", "equipment", "changelist")
    by_kind = client_as_admin.get(url, {"kind__exact": "haul_truck"}).context["cl"].result_list
    assert [e.name for e in by_kind] == ["HT-001"]
    by_id = client_as_admin.get(url, {"q": str(truck.pk)[:8]}).context["cl"].result_list
    assert [e.name for e in by_id] == ["HT-001"]
    autonomous = client_as_admin.get(url, {"autonomous__exact": "1"}).context["cl"].result_list
    assert [e.name for e in autonomous] == ["HT-001"]
