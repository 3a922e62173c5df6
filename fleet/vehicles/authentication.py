"""REST authentication for machines: ``Authorization: Truck hm_<key>_<secret>``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from fleet.vehicles.credentials import authenticate_api_token
from fleet.vehicles.models import Equipment

KEYWORD = "Truck"


class MachineIdentity:
    """The ``request.user`` of a machine: authenticated, with no human permissions at all."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def __init__(self, equipment: Equipment) -> None:
        self.equipment = equipment

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False

    def __str__(self) -> str:
        return f"machine {self.equipment.name}"


class TruckTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Any) -> tuple[MachineIdentity, Equipment] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode(errors="replace") != KEYWORD:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(f"expected 'Authorization: {KEYWORD} <token>'")
        equipment = authenticate_api_token(header[1].decode(errors="replace"))
        if equipment is None:
            raise exceptions.AuthenticationFailed("unknown, revoked or malformed machine token")
        return MachineIdentity(equipment), equipment

    def authenticate_header(self, request: Any) -> str:
        return KEYWORD


class TruckTokenScheme(OpenApiAuthenticationExtension):
    """Documents the machine token in the OpenAPI schema."""

    target_class = "fleet.vehicles.authentication.TruckTokenAuthentication"
    name = "truckToken"

    def get_security_definition(self, auto_schema: Any) -> dict:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": f"`{KEYWORD} hm_<key>_<secret>`, issued by `manage.py provision_equipment`",
        }


class IsMachine:
    """Only machine tokens; a human session or token gets 403."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return isinstance(request.user, MachineIdentity)

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        return True
