"""The one place that pushes events to websocket clients.

Callers inside a transaction get the push after the commit (``transaction.on_commit``), so a
client never sees a change that was rolled back.
"""

from __future__ import annotations

import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from fleet.live.groups import site_group


def broadcast_now(site_id: uuid.UUID | str, event: str, data: dict[str, Any]) -> None:
    """Push at once; for callers outside a transaction (ingest, after its commit)."""
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(
        site_group(site_id), {"type": "live.event", "event": event, "data": data}
    )


def broadcast_on_commit(site_id: uuid.UUID | str, event: str, data: dict[str, Any]) -> None:
    transaction.on_commit(lambda: broadcast_now(site_id, event, data))
