"""The MQTT topic layout (docs/protocol.md), in one place.

``{root}/{site}/{EquipmentId}/up/{MessageName}``   truck -> FMS
``{root}/{site}/{EquipmentId}/down/{MessageName}`` FMS -> one truck
``{root}/{site}/fleet/down/{MessageName}``         FMS -> every truck of the site (all-stop)
``{root}/{site}/{EquipmentId}/connection``          retained connection state + last will

``root`` is ``settings.MQTT_TOPIC_ROOT`` (``iso23725/v1``). No level may contain ``+ # / $``.
"""

from __future__ import annotations

from django.conf import settings

FLEET = "fleet"


def _root() -> str:
    return settings.MQTT_TOPIC_ROOT


def up_filter(site_slug: str, equipment_id: str) -> str:
    return f"{_root()}/{site_slug}/{equipment_id}/up/#"


def down_filter(site_slug: str, equipment_id: str) -> str:
    return f"{_root()}/{site_slug}/{equipment_id}/down/#"


def fleet_down_filter(site_slug: str) -> str:
    return f"{_root()}/{site_slug}/{FLEET}/down/#"


def fleet_down_topic(site_slug: str, message_name: str) -> str:
    return f"{_root()}/{site_slug}/{FLEET}/down/{message_name}"


def connection_topic(site_slug: str, equipment_id: str) -> str:
    return f"{_root()}/{site_slug}/{equipment_id}/connection"


def down_topic(site_slug: str, equipment_id: str, message_name: str) -> str:
    return f"{_root()}/{site_slug}/{equipment_id}/down/{message_name}"


def up_topic(site_slug: str, equipment_id: str, message_name: str) -> str:
    return f"{_root()}/{site_slug}/{equipment_id}/up/{message_name}"
