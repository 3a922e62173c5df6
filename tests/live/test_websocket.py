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
