import pytest

from fleet.mine.models import PolicyZone
from tests.factories import LAT0, LON0, square

BOW_TIE = [
    [
        [LON0, LAT0],
        [LON0 + 0.001, LAT0 + 0.001],
        [LON0 + 0.001, LAT0],
        [LON0, LAT0 + 0.001],
        [LON0, LAT0],
    ]
]


def zone_payload(site, policies, coordinates=None) -> dict:
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": coordinates or [square(LON0, LAT0, 0.0004)]},
        "properties": {"site": str(site.id), "name": "Road closed", "policies": policies},
    }


def test_a_viewer_reads_the_site_map_as_one_feature_collection(api_client, viewer, site):
    api_client.force_authenticate(viewer)
    response = api_client.get(f"/api/v1/sites/{site.id}/map/")
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "FeatureCollection"
    kinds = {f.get("featureType") or f["properties"].get("featureType") for f in body["features"]}
    assert kinds == {
        "siteBoundary",
        "roadNode",
        "way",
        "policyZone",
        "loadingUnit",
        "dumpPoint",
        "area",
    }


def test_ways_come_as_geojson_features_with_their_wayid(api_client, viewer, site):
    api_client.force_authenticate(viewer)
    body = api_client.get("/api/v1/ways/", {"site": str(site.id)}).json()
    assert body["type"] == "FeatureCollection"
    ramp = next(f for f in body["features"] if f["id"] == 11)
    assert ramp["geometry"]["type"] == "LineString" and ramp["properties"]["one_lane"] is True


def test_an_outsider_without_a_role_sees_nothing(api_client, outsider, site):
    api_client.force_authenticate(outsider)
    assert api_client.get("/api/v1/zones/").status_code == 403
    assert api_client.get(f"/api/v1/sites/{site.id}/map/").status_code == 403


def test_anonymous_requests_are_refused(api_client, site):
    assert api_client.get("/api/v1/sites/").status_code in {401, 403}


def test_an_operator_closes_a_road_with_an_exclusion_zone_and_activates_it(
    api_client, operator, site
):
    api_client.force_authenticate(operator)
    created = api_client.post(
        "/api/v1/zones/", zone_payload(site, {"exclusion": {}}), format="json"
    )
    assert created.status_code == 201, created.json()
    zone_id = created.json()["id"]
    assert created.json()["properties"]["status"] == "pending"
    activated = api_client.post(f"/api/v1/zones/{zone_id}/activate/")
    assert activated.status_code == 200 and activated.json()["properties"]["status"] == "active"
    deleted = api_client.delete(f"/api/v1/zones/{zone_id}/")
    assert deleted.status_code == 202 and deleted.json()["properties"]["status"] == "pending_delete"


def test_a_viewer_cannot_create_or_activate_zones(api_client, viewer, site):
    api_client.force_authenticate(viewer)
    assert (
        api_client.post(
            "/api/v1/zones/", zone_payload(site, {"exclusion": {}}), format="json"
        ).status_code
        == 403
    )
    zone = site.zones.first()
    assert api_client.post(f"/api/v1/zones/{zone.id}/activate/").status_code == 403


@pytest.mark.parametrize(
    ("policies", "coordinates", "reason"),
    [
        ({"exclusion": {}}, BOW_TIE, "Self-intersection"),
        ({"warpDrive": {}}, None, "unknown policy 'warpDrive'"),
        ({"speedLimit": {"type": "absolute", "value": -10}}, None, "must not be negative"),
    ],
)
def test_an_invalid_zone_is_refused_with_a_reason(
    api_client, operator, site, policies, coordinates, reason
):
    api_client.force_authenticate(operator)
    before = PolicyZone.objects.count()
    response = api_client.post(
        "/api/v1/zones/", zone_payload(site, policies, coordinates), format="json"
    )
    assert response.status_code == 400
    assert reason in str(response.json())
    assert PolicyZone.objects.count() == before


def test_zones_are_never_edited_in_place(api_client, supervisor, site):
    api_client.force_authenticate(supervisor)
    zone = site.zones.first()
    response = api_client.patch(
        f"/api/v1/zones/{zone.id}/", {"properties": {"name": "x"}}, format="json"
    )
    assert response.status_code == 405


def test_the_openapi_schema_and_its_docs_are_served_from_this_host(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"openapi" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html and "cdn" not in html.lower() and "https://" not in html
