"""What one dashboard gets, and how often: at most ``LIVE_MAX_FRAMES_PER_S`` websocket frames a
second per client, each carrying only what changed since the last.

Events for a site reach each of its sockets through the channel layer as they happen (every
ingest replica's ``positions``, each alert, command, zone...). A busy site makes far more of
them than a browser should draw, so each socket gathers them between frames: a truck's newer
position replaces its older one (a frame holds each truck once, at its newest), and so do a
newer state of the same alert, command, permission, production state or prediction; everything
else is kept, in order. Nothing is dropped: a truck that moved is in the next frame.

A frame with one event is sent as that event (``{"event": ..., "data": ...}``); with several,
as ``{"event": "batch", "data": [{"event": ..., "data": ...}, ...]}``.
"""

from __future__ import annotations

from typing import Any

# Events that describe the latest state of one thing: a newer one replaces the older within a
# frame. The value names the fields that identify the thing.
LATEST_BY: dict[str, tuple[str, ...]] = {
    "alert": ("id",),
    "command.changed": ("commandId",),
    "traffic.changed": ("permissionId",),
    "dispatch.assigned": ("equipmentId",),
    "prediction": ("equipmentId", "model"),  # a truck's newest output of each head
    "collision.risk": ("riskId",),
}
# Events whose data is a list of per-truck items, each the truck's latest.
TRUCK_LISTS = {"positions": "trucks", "productionStates": "changes", "health": "trucks"}


class FrameBuilder:
    """The events gathered for one socket since its last frame."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._order: list[tuple[str, Any]] = []  # (event, key) in first-seen order
        self._latest: dict[tuple[str, Any], dict[str, Any]] = {}
        self._trucks: dict[str, dict[str, dict[str, Any]]] = {}  # event -> equipmentId -> item
        self._serial = 0

    def __bool__(self) -> bool:
        return bool(self._order)

    def add(self, event: str, data: dict[str, Any]) -> None:
        if event in TRUCK_LISTS:
            self._add_truck_items(event, data.get(TRUCK_LISTS[event]) or [])
            return
        fields = LATEST_BY.get(event, ())
        key = tuple(data.get(name) for name in fields) if fields else None
        if key is None or None in key:  # an event of its own: kept as it is, in order
            self._serial += 1
            key = ("#", self._serial)
        slot = (event, key)
        if slot not in self._latest:
            self._order.append(slot)
        self._latest[slot] = data

    def _add_truck_items(self, event: str, items: list[dict[str, Any]]) -> None:
        slot = (event, None)
        if slot not in self._latest:
            self._order.append(slot)
            self._latest[slot] = {}
        trucks = self._trucks.setdefault(event, {})
        for item in items:
            trucks[str(item.get("equipmentId"))] = item

    def take(self) -> dict[str, Any] | None:
        """The frame to send now (None when nothing changed), and start the next one."""
        events = []
        for event, key in self._order:
            if event in TRUCK_LISTS:
                items = list(self._trucks.get(event, {}).values())
                events.append({"event": event, "data": {TRUCK_LISTS[event]: items}})
            else:
                events.append({"event": event, "data": self._latest[(event, key)]})
        self._reset()
        if not events:
            return None
        if len(events) == 1:
            return events[0]
        return {"event": "batch", "data": events}
