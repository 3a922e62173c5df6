"""The OpenAPI schema's part of the API's conventions (``fleet.api``): the refusals each
operation can answer, and their bodies. Apart from ``fleet.api`` because drf-spectacular's
AutoSchema imports DRF's generic views, which import the default paginator from there."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import permissions
from rest_framework.settings import api_settings

ERROR = {
    "type": "object",
    "description": "A refusal, with a sentence an operator or integrator can read.",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
VALIDATION_ERROR = {
    "type": "object",
    "description": "Each query parameter or body field at fault (nested ones named with dots, "
    f"the body as a whole as `{api_settings.NON_FIELD_ERRORS_KEY}`) with its messages.",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
    "example": {"limit": ["A valid integer is required."]},
}
ERROR_DESCRIPTIONS = {
    400: "Bad input: a parameter or body field is malformed, out of range or refused",
    401: "No credentials, or credentials that are wrong, revoked or malformed",
    403: "The credentials do not carry the permission this needs",
    404: "Nothing is found under this path",
    415: "The body is not JSON",
}
BODY_METHODS = {"POST", "PUT", "PATCH"}


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's schema, with the refusals each operation can answer and their bodies."""

    def _component(self, name: str, schema: dict[str, Any]) -> dict[str, str]:
        component = ResolvedComponent(
            name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema
        )
        self.registry.register_on_missing(component)
        return component.ref

    def _error_codes(self) -> set[int]:
        codes: set[int] = set()
        perms = [type(permission) for permission in self.view.get_permissions()]
        if perms and not all(perm is permissions.AllowAny for perm in perms):
            codes |= {401, 403}
        if "{" in self.path:
            codes.add(404)
        takes_body = self.method in BODY_METHODS and self.get_request_serializer() is not None
        if takes_body:
            codes.add(415)
        query = [p for p in self._get_parameters() if p.get("in") == "query"]
        if takes_body or query or self.method in BODY_METHODS | {"DELETE"}:
            codes.add(400)
        return codes

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        declared = {int(code) for code in responses if str(code).isdigit()}
        for code in sorted(self._error_codes() | {c for c in declared if c >= 400}):
            if str(code) not in responses:
                responses[str(code)] = {"description": ERROR_DESCRIPTIONS[code]}
            response = responses[str(code)]
            if "content" not in response:
                error = self._component("Error", ERROR)
                schema: dict[str, Any] = error
                if code == 400:
                    invalid = self._component("ValidationError", VALIDATION_ERROR)
                    schema = {"oneOf": [invalid, error]}
                response["content"] = {"application/json": {"schema": schema}}
        return dict(sorted(responses.items()))
