"""REST for the control room's zone list: each zone of a site in force (or on its way in or
out) with every machine's answer to it. Thin: the answers are gathered in fleet.control.zones."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from fleet.api.sites import visible_or_404
from fleet.control import zones
from fleet.mine.models import Site


class RejectionSerializer(serializers.Serializer):
    machine = serializers.CharField()
    reason = serializers.CharField()


class ZoneAnswersSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="zone.id")
    name = serializers.CharField(source="zone.name")
    status = serializers.CharField(source="zone.status")
    policies = serializers.JSONField(source="zone.policies")
    reason = serializers.CharField(source="zone.reason")
    delete_reason = serializers.CharField(source="zone.delete_reason")
    activated_at = serializers.DateTimeField(source="zone.activated_at", allow_null=True)
    deleted_at = serializers.DateTimeField(source="zone.deleted_at", allow_null=True)
    request = serializers.ChoiceField(
        choices=["activate", "deactivate"], help_text="The request the answers are to"
    )
    accepted = serializers.ListField(child=serializers.CharField())
    rejected = RejectionSerializer(many=True)
    waiting = serializers.ListField(child=serializers.CharField())
    silent = serializers.ListField(
        child=serializers.CharField(), help_text="Asked, never answered (expired)"
    )


class CanViewZones(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("mine.view_policyzone"))


class SiteZoneAnswersView(APIView):
    """GET /api/v1/sites/<id>/zone-answers/ (viewers)."""

    permission_classes = [CanViewZones]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "site_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The site's id"
            )
        ],
        responses=ZoneAnswersSerializer(many=True),
        summary="The site's zones (and those deleted in the last 15 min) with each machine's "
        "answer to the latest request about it",
    )
    def get(self, request: Request, site_id: str) -> Response:
        site = visible_or_404(Site.objects, request.user, "", pk=site_id)
        return Response(ZoneAnswersSerializer(zones.site_zone_answers(site.pk), many=True).data)
