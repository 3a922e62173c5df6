"""Users are members of sites: the API, the all-stop and the live feed show a user their own
sites only, within their role; superusers see every site. A site that is not yours answers as
one that does not exist (404), so its id is not even confirmed."""

from __future__ import annotations

import asyncio

import pytest
import websockets
from django.contrib.auth.models import User

from fleet.control import alerts
from fleet.control.models import Alert, AllStop
from fleet.mine.mapfile import import_site_map
from fleet.mine.models import Site
from tests.conftest import _user_with_role
from tests.factories import (
    LAT0,
    LON0,
    haul_truck,
    small_site_map,
    square,
    user_with_password,
)
from tests.live.test_websocket import connect, session_cookie, ws_url


@pytest.fixture
def two_sites(db) -> tuple[Site, Site]:
    north = import_site_map(small_site_map(slug="north-pit")).site
    south = import_site_map(small_site_map(slug="south-pit")).site
    return north, south


@pytest.fixture
def north_operator(two_sites) -> User:
    """An operator of the north pit only."""
    user = _user_with_role("nora-north", "operator", crew=False)
    user.sites.add(two_sites[0])
    return user


def logged_in(api_client, user: User):
    api_client.force_authenticate(user)
    return api_client


def site_slugs(client) -> list[str]:
    return [f["properties"]["slug"] for f in client.get("/api/v1/sites/").json()["features"]]


def test_lists_hold_only_the_users_sites(two_sites, north_operator, api_client):
    north, south = two_sites
    north_truck, south_truck = haul_truck(north, "HT-N1"), haul_truck(south, "HT-S1")
    for truck in (north_truck, south_truck):
        alerts.raise_alert(
            truck, alerts.Finding(kind="test", severity="warning", source="t", reason="r")
        )
    client = logged_in(api_client, north_operator)

    assert site_slugs(client) == ["north-pit"]
    assert [t["name"] for t in client.get("/api/v1/trucks/").json()] == ["HT-N1"]
    assert [e["name"] for e in client.get("/api/v1/equipment/").json()["results"]] == ["HT-N1"]
    listed = client.get("/api/v1/alerts/").json()["results"]
    assert [a["equipment"] for a in listed] == [str(north_truck.id)]


def test_another_sites_rows_are_not_found(two_sites, north_operator, api_client):
    _, south = two_sites
    south_truck = haul_truck(south, "HT-S1")
    south_alert = alerts.raise_alert(
        south_truck, alerts.Finding(kind="test", severity="warning", source="t", reason="r")
    )[0]
    client = logged_in(api_client, north_operator)

    assert client.get(f"/api/v1/sites/{south.id}/").status_code == 404
    assert client.get(f"/api/v1/sites/{south.id}/map/").status_code == 404
    assert client.get(f"/api/v1/trucks/{south_truck.id}/positions/").status_code == 404
    stop = client.post(f"/api/v1/trucks/{south_truck.id}/stop/", {"reason": "x"}, format="json")
    assert stop.status_code == 404
    acknowledge = client.post(f"/api/v1/alerts/{south_alert.pk}/acknowledge/", {}, format="json")
    assert acknowledge.status_code == 404
    assert Alert.objects.get(pk=south_alert.pk).status == Alert.Status.OPEN


def test_an_operator_cannot_all_stop_a_site_that_is_not_theirs(
    two_sites, north_operator, api_client
):
    north, south = two_sites
    client = logged_in(api_client, north_operator)

    refused = client.post(f"/api/v1/sites/{south.id}/all-stop/", {"reason": "x"}, format="json")
    applied = client.post(f"/api/v1/sites/{north.id}/all-stop/", {"reason": "x"}, format="json")

    assert refused.status_code == 404 and applied.status_code == 201
    assert list(AllStop.objects.values_list("site__slug", flat=True)) == ["north-pit"]


def test_a_zone_on_another_site_is_refused_naming_the_field(two_sites, north_operator, api_client):
    _, south = two_sites
    client = logged_in(api_client, north_operator)
    zone = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [square(LON0, LAT0, 0.0004)]},
        "properties": {"site": str(south.id), "name": "Blast", "policies": {"exclusion": {}}},
    }

    before = south.zones.count()

    answer = client.post("/api/v1/zones/", zone, format="json")

    assert answer.status_code == 400 and "site" in answer.json()
    assert south.zones.count() == before


def test_a_superuser_sees_every_site(two_sites, api_client):
    root = user_with_password("root", superuser=True, email="root@mine.local")
    assert site_slugs(logged_in(api_client, root)) == ["north-pit", "south-pit"]


def test_the_live_feed_of_another_site_is_refused(asgi_server, two_sites, north_operator):
    north, south = two_sites
    cookie = session_cookie(north_operator)

    async def scenario():
        async with await connect(ws_url(asgi_server, north), cookie) as socket:
            assert '"hello"' in await asyncio.wait_for(socket.recv(), 10)
        socket = await connect(ws_url(asgi_server, south), cookie)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
        assert closed.value.rcvd.code == 4404

    asyncio.run(scenario())
