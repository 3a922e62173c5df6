"""ISO 23725 zone policies (``properties.policies`` of a policy-zone Feature).

The wire form is a JSON object keyed by policy name. We are strict on structure and ranges,
tolerant where the meaning is unambiguous (``"12.5"`` is the number 12.5), and every rejection
says which policy and field is wrong, because a supervisor reads the message, not a traceback.
"""

from __future__ import annotations

import math
from typing import Any

from django.core.exceptions import ValidationError

POLICY_NAMES = (
    "exclusion",
    "speedLimit",
    "lowTraction",
    "roughRoad",
    "controlledAccess",
    "trafficPermission",
)
SPEED_LIMIT_TYPES = ("absolute", "percent")
# 70 m/s (252 km/h) is far above any haul truck; a larger value is a unit mistake (km/h vs m/s).
MAX_ABSOLUTE_SPEED_MPS = 70.0


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ValidationError(f"{where} must be a number, not a boolean")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValidationError(f"{where} must be a number, got {value!r}") from None
    if not isinstance(value, int | float):
        raise ValidationError(f"{where} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValidationError(f"{where} must be finite")
    return float(value)


def _empty(body: Any, name: str) -> dict:
    if body not in ({}, None):
        raise ValidationError(f"policy {name} takes no parameters; expected {{}}")
    return {}


def _speed_limit(body: Any) -> dict:
    if not isinstance(body, dict):
        raise ValidationError("policy speedLimit must be an object {type, value}")
    unknown = set(body) - {"type", "value"}
    if unknown:
        raise ValidationError(f"policy speedLimit has unknown fields: {', '.join(sorted(unknown))}")
    kind = body.get("type")
    if kind not in SPEED_LIMIT_TYPES:
        raise ValidationError(
            f"speedLimit.type must be one of {', '.join(SPEED_LIMIT_TYPES)}, got {kind!r}"
        )
    value = _number(body.get("value"), "speedLimit.value")
    if value < 0:
        raise ValidationError(f"speedLimit.value must not be negative, got {value:g}")
    if kind == "absolute" and value > MAX_ABSOLUTE_SPEED_MPS:
        raise ValidationError(
            f"speedLimit.value {value:g} m/s is above {MAX_ABSOLUTE_SPEED_MPS:g} m/s; "
            "absolute limits are in metres per second"
        )
    if kind == "percent" and value > 100:
        raise ValidationError(f"speedLimit.value {value:g} % is above 100 %")
    return {"type": kind, "value": value}


def _controlled_access(body: Any) -> dict:
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("ownerId"), str)
        or not body["ownerId"]
    ):
        raise ValidationError(
            "policy controlledAccess must be an object {ownerId: <equipment UUID>}"
        )
    unknown = set(body) - {"ownerId"}
    if unknown:
        raise ValidationError(
            f"policy controlledAccess has unknown fields: {', '.join(sorted(unknown))}"
        )
    return {"ownerId": body["ownerId"].lower()}


def _traffic_permission(body: Any) -> dict:
    # The published examples carry no parameters; we accept an optional capacity so a loading
    # area can admit, say, two trucks. Default 1: one-lane roads and intersections.
    if body in ({}, None):
        return {}
    if not isinstance(body, dict) or set(body) - {"capacity"}:
        raise ValidationError("policy trafficPermission takes {} or {capacity: <int >= 1>}")
    capacity = _number(body["capacity"], "trafficPermission.capacity")
    if capacity < 1 or capacity != int(capacity):
        raise ValidationError("trafficPermission.capacity must be a whole number >= 1")
    return {"capacity": int(capacity)}


_VALIDATORS = {
    "exclusion": lambda body: _empty(body, "exclusion"),
    "speedLimit": _speed_limit,
    "lowTraction": lambda body: _empty(body, "lowTraction"),
    "roughRoad": lambda body: _empty(body, "roughRoad"),
    "controlledAccess": _controlled_access,
    "trafficPermission": _traffic_permission,
}


def validate_policies(policies: Any) -> dict:
    """Return the normalised policies, or raise ``ValidationError`` listing every problem."""
    if not isinstance(policies, dict):
        raise ValidationError("policies must be a JSON object keyed by policy name")
    if not policies:
        raise ValidationError("a zone needs at least one policy")
    errors: list[str] = []
    normalised: dict[str, dict] = {}
    for name, body in policies.items():
        validator = _VALIDATORS.get(name)
        if validator is None:
            errors.append(f"unknown policy {name!r}; expected one of {', '.join(POLICY_NAMES)}")
            continue
        try:
            normalised[name] = validator(body)
        except ValidationError as exc:
            errors.extend(exc.messages)
    if "exclusion" in normalised and len(normalised) > 1:
        errors.append(
            "exclusion forbids entry altogether; it cannot be combined with other policies"
        )
    if errors:
        raise ValidationError(errors)
    return normalised
