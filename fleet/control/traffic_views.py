"""REST for traffic permissions: viewers list them with their trail; supervisors grant or revoke
one by hand, always with a reason. Thin views over fleet.control.traffic_services."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from fleet.api import QueryParameters, query_parameters
from fleet.api.sites import SiteScopedMixin, visible_or_404
from fleet.control import traffic_services
from fleet.control.filters import TrafficPermissionFilter
from fleet.control.models import TrafficPermission


class TrafficPermissionEventSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    status = serializers.CharField()
    reason = serializers.CharField()
    actor = serializers.CharField()


class TrafficPermissionSerializer(serializers.ModelSerializer):
    truck = serializers.CharField(source="equipment.name", read_only=True)
    zone_name = serializers.CharField(source="zone.name", read_only=True)
    events = TrafficPermissionEventSerializer(many=True, read_only=True)

    class Meta:
        model = TrafficPermission
        fields = [
            "id",
            "site",
            "equipment",
            "truck",
            "zone",
            "zone_name",
            "way_id",
            "loaded",
            "gate",
            "status",
            "reason",
            "decided_by",
            "requested_at",
            "last_asked_at",
            "granted_at",
            "entered_at",
            "closed_at",
            "overtakes",
            "event_id",
            "acknowledged_at",
            "events",
        ]


class TrafficPermissionListParameters(QueryParameters):
    limit = serializers.IntegerField(
        min_value=1, max_value=500, default=100, help_text="How many, newest first"
    )


class CanDecide(permissions.BasePermission):
    """Reading needs view_trafficpermission (viewers); deciding by hand needs
    decide_trafficpermission (supervisors)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in permissions.SAFE_METHODS:
            return user.has_perm("control.view_trafficpermission")
        return user.has_perm("control.decide_trafficpermission")


class TrafficPermissionListView(SiteScopedMixin, generics.ListAPIView):
    queryset = TrafficPermission.objects.select_related("equipment", "zone").prefetch_related(
        "events"
    )
    serializer_class = TrafficPermissionSerializer
    filterset_class = TrafficPermissionFilter
    permission_classes = [CanDecide]
    pagination_class = None

    @extend_schema(
        parameters=[TrafficPermissionListParameters],
        summary="Traffic permissions with their audit trail, newest first",
    )
    def get(self, request: Request) -> Response:
        limit = query_parameters(request, TrafficPermissionListParameters)["limit"]
        chosen = self.filter_queryset(self.get_queryset()).order_by("-requested_at")[:limit]
        return Response(TrafficPermissionSerializer(chosen, many=True).data)


class TrafficDecisionSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300)


class TrafficPermissionDecideView(APIView):
    """Grant a waiting request or revoke a permission by hand (supervisors). One view, two
    routes: ``action`` names the service."""

    permission_classes = [CanDecide]
    action = "grant"
    SERVICES = {
        "grant": traffic_services.grant_by_hand,
        "revoke": traffic_services.revoke_by_hand,
    }

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "permission_id",
                OpenApiTypes.UUID,
                OpenApiParameter.PATH,
                description="The traffic permission's id",
            )
        ],
        request=TrafficDecisionSerializer,
        responses={
            200: TrafficPermissionSerializer,
            409: OpenApiResponse(
                description="Not possible now (it would conflict, or it is already closed)"
            ),
        },
    )
    def post(self, request: Request, permission_id: str) -> Response:
        payload = TrafficDecisionSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        permission = visible_or_404(TrafficPermission.objects, request.user, pk=permission_id)
        try:
            permission = self.SERVICES[self.action](
                permission, reason=payload.validated_data["reason"], actor=request.user
            )
        except ValidationError as error:
            return Response({"detail": error.messages[0]}, status=status.HTTP_409_CONFLICT)
        permission.refresh_from_db()
        return Response(TrafficPermissionSerializer(permission).data)
