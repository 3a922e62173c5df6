"""Websocket consumers: thin, with an explicit authorisation check."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from fleet.live.frames import FrameBuilder
from fleet.live.groups import site_group

# Close codes in the 4000-4999 range are the application's own (RFC 6455).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
# Events whose per-truck items go only to the sockets watching that truck (``receive_json``).
WATCHED_ONLY = "health"
MAX_WATCHED = 20


class SiteLiveConsumer(AsyncJsonWebsocketConsumer):
    """``/ws/sites/<site_id>/``: the live events of one site, for a user whose role may view
    sites and who is a member of this one (``fleet.api.sites``; superusers see every site)."""

    pending: FrameBuilder
    flush_task: asyncio.Task | None = None
    last_frame_at = float("-inf")
    # The trucks whose machine detail this page has open: only their ``health`` readings are
    # sent (every truck's, once a second, would be most of a big site's bytes for nothing).
    watched: frozenset[str] = frozenset()

    async def connect(self) -> None:
        self.pending = FrameBuilder()
        # Accept first, then close with a reason code: a bare handshake 403 tells a dashboard
        # nothing about whether to log in again or give up.
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await database_sync_to_async(user.has_perm)("mine.view_site"):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        site = await self._site(user, self.scope["url_route"]["kwargs"]["site_id"])
        if site is None:  # no such site, or not one of the user's: the same answer
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = site_group(site["id"])
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_json(
            {"event": "hello", "data": {"site": {k: str(v) for k, v in site.items()}}}
        )

    async def disconnect(self, code: int) -> None:
        if self.flush_task is not None:
            self.flush_task.cancel()
        group = getattr(self, "group", None)
        if group:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The page's one message: ``{"watch": [EquipmentId, ...]}``, the trucks whose detail
        it shows (``[]``: none). Anything else is ignored: the feed is the server's to send."""
        if not isinstance(content, dict) or not isinstance(content.get("watch"), list):
            return
        self.watched = frozenset(str(truck) for truck in content["watch"][:MAX_WATCHED])

    async def live_event(self, message: dict[str, Any]) -> None:
        """Gather; send at most LIVE_MAX_FRAMES_PER_S frames a second (fleet.live.frames)."""
        data = message["data"]
        if message["event"] == WATCHED_ONLY:
            data = {
                "trucks": [
                    t for t in data.get("trucks") or () if t.get("equipmentId") in self.watched
                ]
            }
            if not data["trucks"]:
                return
        self.pending.add(message["event"], data)
        if self.flush_task is not None:
            return  # a frame is already due
        wait = self.last_frame_at + 1 / settings.LIVE_MAX_FRAMES_PER_S - time.monotonic()
        if wait <= 0:
            await self._send_frame()
        else:
            self.flush_task = asyncio.create_task(self._send_frame_in(wait))

    async def _send_frame_in(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self.flush_task = None
        await self._send_frame()

    async def _send_frame(self) -> None:
        frame = self.pending.take()
        if frame is not None:
            self.last_frame_at = time.monotonic()
            await self.send_json(frame)

    @database_sync_to_async
    def _site(self, user: Any, site_id: str) -> dict | None:
        from fleet.api.sites import visible_sites

        try:
            wanted = uuid.UUID(site_id)
        except ValueError:
            return None
        return visible_sites(user).filter(id=wanted).values("id", "name", "slug").first()
