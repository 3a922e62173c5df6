"""Live updates over a real websocket from a real ASGI server (uvicorn), through Redis."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from django.contrib.gis.geos import Polygon
from django.test import Client

from fleet.mine import services
from tests.factories import LAT0, LON0, square


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def ws_url(base: str, site) -> str:
    return base.replace("http://", "ws://") + f"/ws/sites/{site.id}/"


async def connect(url: str, cookie: str | None):
    headers = {"Cookie": cookie} if cookie else {}
    return await websockets.connect(url, additional_headers=headers, origin="http://127.0.0.1")


def test_a_viewer_sees_a_zone_change_live(asgi_server, site, viewer):
    cookie = session_cookie(viewer)

    async def scenario():
        async with await connect(ws_url(asgi_server, site), cookie) as socket:
            hello = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert hello == {
                "event": "hello",
                "data": {"site": {"id": str(site.id), "name": site.name, "slug": site.slug}},
            }
            zone = await asyncio.to_thread(
                services.create_zone,
                site=site,
                name="Blast",
                geometry=Polygon(square(LON0, LAT0, 0.0004), srid=4326),
                policies={"exclusion": {}},
            )
            event = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert event == {
                "event": "zone.changed",
                "data": {"id": str(zone.id), "name": "Blast", "status": "pending"},
            }

    asyncio.run(scenario())


@pytest.mark.parametrize(("who", "code"), [(None, 4401), ("outsider", 4403)])
def test_the_live_feed_is_closed_to_those_without_a_role(asgi_server, site, request, who, code):
    cookie = session_cookie(request.getfixturevalue(who)) if who else None

    async def scenario():
        socket = await connect(ws_url(asgi_server, site), cookie)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
        assert closed.value.rcvd.code == code

    asyncio.run(scenario())


def test_a_viewer_sees_a_truck_move_live_when_it_reports(asgi_server, site, viewer):
    """A position posted by a truck reaches the control room's websocket, coalesced."""
    import orjson
    from rest_framework.test import APIClient

    from fleet.vehicles.credentials import issue_credentials
    from tests.factories import haul_truck, truck_message

    truck = haul_truck(site)
    token = issue_credentials(truck).api_token
    cookie = session_cookie(viewer)

    def report() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Truck {token}")
        message = orjson.loads(truck_message(truck.id, lon=LON0 + 0.0021, speed=41.0))
        assert client.post("/api/v1/vehicle/messages/", [message], format="json").status_code == 200

    async def scenario():
        async with await connect(ws_url(asgi_server, site), cookie) as socket:
            await asyncio.wait_for(socket.recv(), 10)  # hello
            await asyncio.to_thread(report)
            event = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert event["event"] == "positions"
            (moved,) = event["data"]["trucks"]
            assert moved["equipmentId"] == str(truck.id)
            assert moved["lon"] == pytest.approx(LON0 + 0.0021)
            assert moved["speedKmh"] == 41.0

    asyncio.run(scenario())


def test_a_socket_with_nothing_to_receive_for_a_while_stays_open(asgi_server, site, viewer):
    """channels_redis waits up to 5 s in BZPOPMIN for a socket's next event; redis-py 8 also
    times reads out after 5 s by default, which killed the consumer of every socket whose site
    was quiet that long (settings.CHANNEL_REDIS_READ_TIMEOUT_S)."""
    from fleet.live.broadcast import broadcast_now

    cookie = session_cookie(viewer)

    async def scenario():
        async with await connect(ws_url(asgi_server, site), cookie) as socket:
            await asyncio.wait_for(socket.recv(), 10)  # hello
            await asyncio.sleep(12)  # two of channels_redis' 5 s waits with nothing to receive
            await asyncio.to_thread(broadcast_now, site.id, "alert", {"id": "after-the-quiet"})
            event = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert event == {"event": "alert", "data": {"id": "after-the-quiet"}}

    asyncio.run(scenario())


def test_health_readings_reach_only_the_sockets_watching_the_truck(asgi_server, site, viewer):
    """The machine detail's charts: a page says which trucks it shows ({"watch": [...]}) and
    gets their health readings only; a page watching none gets none (fleet/live/consumers.py)."""
    from fleet.live.broadcast import broadcast_now

    cookie = session_cookie(viewer)
    health = {
        "trucks": [
            {"equipmentId": "truck-a", "coolantC": 80.0},
            {"equipmentId": "truck-b", "coolantC": 90.0},
        ]
    }

    async def scenario():
        url = ws_url(asgi_server, site)
        async with await connect(url, cookie) as watching, await connect(url, cookie) as other:
            for socket in (watching, other):
                await asyncio.wait_for(socket.recv(), 10)  # hello
            await watching.send(json.dumps({"watch": ["truck-a"]}))
            await other.send(json.dumps({"watch": "not a list"}))  # ignored
            await asyncio.sleep(0.3)
            await asyncio.to_thread(broadcast_now, site.id, "health", health)
            await asyncio.sleep(0.2)  # its own frame
            await asyncio.to_thread(broadcast_now, site.id, "alert", {"id": 1, "status": "open"})
            seen = []
            for socket in (watching, other):
                frames = [json.loads(await asyncio.wait_for(socket.recv(), 10))]
                if frames[0]["event"] != "alert":
                    frames.append(json.loads(await asyncio.wait_for(socket.recv(), 10)))
                seen.append(frames)
            return seen

    watched, unwatched = asyncio.run(scenario())

    assert watched[0] == {"event": "health", "data": {"trucks": [health["trucks"][0]]}}
    assert [frame["event"] for frame in unwatched] == ["alert"]
