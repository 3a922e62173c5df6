"""A dashboard's socket on a busy site, over a real ASGI server and the Redis channel layer:
hundreds of events a second arrive as at most LIVE_MAX_FRAMES_PER_S frames a second, and every
truck that moved is in them (fleet.live.frames)."""

from __future__ import annotations

import asyncio
import json
import time

from fleet.live.broadcast import broadcast_now
from tests.live.test_websocket import connect, session_cookie, ws_url

TRUCKS = [f"truck-{i:03d}" for i in range(200)]


def publish_busy_second(site) -> None:
    """Two ingest replicas' worth: 100 position events (100 trucks each), an alert every 50 ms."""
    for step in range(100):
        half = TRUCKS[(step % 2) * 100 : (step % 2) * 100 + 100]
        trucks = [{"equipmentId": t, "longitude": step, "latitude": 0.0} for t in half]
        broadcast_now(site.id, "positions", {"trucks": trucks})
        if step % 5 == 0:
            broadcast_now(site.id, "alert", {"id": step, "status": "open"})
        time.sleep(0.01)


def test_a_busy_site_reaches_the_page_in_at_most_ten_frames_a_second(asgi_server, site, viewer):
    cookie = session_cookie(viewer)

    async def scenario():
        async with await connect(ws_url(asgi_server, site), cookie) as socket:
            await asyncio.wait_for(socket.recv(), 10)  # hello
            sender = asyncio.create_task(asyncio.to_thread(publish_busy_second, site))
            # Until the sender is done and the socket has been quiet for 0.5 s: on a loaded
            # machine the busy second takes more than a second to send (seen: over 3 s).
            frames, started = [], time.monotonic()
            while time.monotonic() - started < 30.0:
                try:
                    frames.append(
                        (time.monotonic(), json.loads(await asyncio.wait_for(socket.recv(), 0.5)))
                    )
                except TimeoutError:
                    if sender.done():
                        break
            await sender
            return frames

    frames = asyncio.run(scenario())

    events = [e for _, f in frames for e in (f["data"] if f["event"] == "batch" else [f])]
    seen = {
        t["equipmentId"] for e in events if e["event"] == "positions" for t in e["data"]["trucks"]
    }
    assert seen == set(TRUCKS)
    assert {e["data"]["id"] for e in events if e["event"] == "alert"} == set(range(0, 100, 5))
    times = [at for at, _ in frames]
    worst = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert worst <= 11, f"{worst} frames in one second"  # 10, plus one in flight at the edge
    assert len(frames) >= 5  # gathered, not withheld: a busy second still streams
