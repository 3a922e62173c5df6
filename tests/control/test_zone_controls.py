"""The control room's zone controls over REST: an operator draws a zone and puts it in force in
one call (with a reason sent to the trucks), deactivates it with a reason, and follows each
machine's answer; viewers read but are refused (403); a bad zone is a 400 naming the field."""

from __future__ import annotations

import pytest

from fleet.control.models import Command
from fleet.mine.models import PolicyZone
from tests.control.conftest import autonomous_trucks
from tests.control.test_zones import answer, online
from tests.factories import LAT0, LON0, square

pytestmark = pytest.mark.django_db

BOW_TIE = [
    [LON0, LAT0],
    [LON0 + 0.001, LAT0 + 0.001],
    [LON0 + 0.001, LAT0],
    [LON0, LAT0 + 0.001],
    [LON0, LAT0],
]


def drawn(site, **changes) -> dict:
    body = {
        "site": str(site.id),
        "name": "Rock fall, east ramp",
        "geometry": {"type": "Polygon", "coordinates": [square(LON0, LAT0, 0.0004)]},
        "policies": {"speedLimit": {"type": "absolute", "value": 15 / 3.6}},
        "reason": "loose rock on the ramp",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def answers_of(api_client, site) -> dict[str, dict]:
    response = api_client.get(f"/api/v1/sites/{site.id}/zone-answers/")
    assert response.status_code == 200, response.content
    return {row["name"]: row for row in response.json()}


def test_an_operator_draws_a_zone_into_force_and_deactivates_it_following_each_answer(
    api_client, operator, site, django_capture_on_commit_callbacks
):
    first, second, _not_connected = autonomous_trucks(site, 3)
    online(first, second)
    api_client.force_authenticate(operator)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post("/api/v1/zones/draw/", drawn(site), format="json")
    assert response.status_code == 201, response.content
    zone = PolicyZone.objects.get(pk=response.json()["id"])
    assert zone.status == PolicyZone.Status.ACTIVE and zone.reason == "loose rock on the ramp"
    assert zone.created_by == operator
    sent = Command.objects.filter(message_name="ActivateZoneRequestV1")
    assert sorted(sent.values_list("equipment__name", flat=True)) == [first.name, second.name]
    assert sent.first().reason.endswith(": loose rock on the ramp")

    row = answers_of(api_client, site)["Rock fall, east ramp"]
    assert (row["status"], row["request"], row["waiting"]) == (
        "active",
        "activate",
        [first.name, second.name],
    )
    answer(site, first, "ActivateZoneResponseV1", {"ZoneId": str(zone.id), "Status": "Accepted"})
    answer(
        site,
        second,
        "ActivateZoneResponseV1",
        {"ZoneId": str(zone.id), "Status": "Rejected", "Reason": "map out of date"},
    )
    row = answers_of(api_client, site)["Rock fall, east ramp"]
    assert row["accepted"] == [first.name] and row["waiting"] == []
    assert row["rejected"] == [{"machine": second.name, "reason": "map out of date"}]

    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(
            f"/api/v1/zones/{zone.id}/deactivate/", {"reason": "rock cleared"}, format="json"
        )
    assert response.status_code == 202, response.content
    zone.refresh_from_db()
    assert (zone.status, zone.delete_reason) == (PolicyZone.Status.PENDING_DELETE, "rock cleared")
    row = answers_of(api_client, site)["Rock fall, east ramp"]
    assert (row["request"], row["waiting"]) == ("deactivate", [first.name, second.name])
    answer(site, first, "DeactivateZoneResponseV1", {"ZoneId": str(zone.id), "Status": "Accepted"})
    row = answers_of(api_client, site)["Rock fall, east ramp"]
    assert (row["accepted"], row["waiting"]) == ([first.name], [second.name])
    # Deactivating it again is refused with the reason.
    again = api_client.post(f"/api/v1/zones/{zone.id}/deactivate/", {"reason": "x"}, format="json")
    assert again.status_code == 400 and "Pending delete" in str(again.json())


def test_a_viewer_reads_the_zones_and_answers_but_may_neither_draw_nor_deactivate(
    api_client, viewer, operator, site
):
    api_client.force_authenticate(operator)
    zone_id = api_client.post("/api/v1/zones/draw/", drawn(site), format="json").json()["id"]
    api_client.force_authenticate(viewer)
    assert "Rock fall, east ramp" in answers_of(api_client, site)
    refused = api_client.post("/api/v1/zones/draw/", drawn(site, name="Mine"), format="json")
    assert refused.status_code == 403
    refused = api_client.post(f"/api/v1/zones/{zone_id}/deactivate/", {"reason": "x"})
    assert refused.status_code == 403
    assert PolicyZone.objects.get(pk=zone_id).status == PolicyZone.Status.ACTIVE
    assert not PolicyZone.objects.filter(name="Mine").exists()


def test_an_outsider_sees_no_answers_and_draws_on_no_foreign_site(
    api_client, operator, outsider, site
):
    api_client.force_authenticate(outsider)
    assert api_client.get(f"/api/v1/sites/{site.id}/zone-answers/").status_code == 403
    api_client.force_authenticate(operator)
    site.members.remove(operator)
    assert api_client.get(f"/api/v1/sites/{site.id}/zone-answers/").status_code == 404
    refused = api_client.post("/api/v1/zones/draw/", drawn(site), format="json")
    assert refused.status_code == 400 and "site" in refused.json()


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"geometry": {"type": "Polygon", "coordinates": [BOW_TIE]}}, "geometry", "not valid"),
        (
            {"geometry": {"type": "Polygon", "coordinates": [square(LON0, LAT0, 0.00002)]}},
            "geometry",
            "less than a haul truck",
        ),
        ({"geometry": None}, "geometry", "required"),
        ({"policies": None}, "policies", "required"),
        ({"policies": {}}, "policies", "at least one policy"),
        (
            {"policies": {"speedLimit": {"type": "absolute", "value": 90}}},
            "policies",
            "metres per second",
        ),
        ({"reason": None}, "reason", "required"),
        ({"name": ""}, "name", "blank"),
    ],
)
def test_a_bad_zone_is_a_400_naming_the_field_and_nothing_is_stored(
    api_client, operator, site, changes, field, words
):
    api_client.force_authenticate(operator)
    response = api_client.post("/api/v1/zones/draw/", drawn(site, **changes), format="json")
    assert response.status_code == 400, response.content
    assert words in " ".join(response.json()[field])
    assert not PolicyZone.objects.filter(name="Rock fall, east ramp").exists()
