"""REST endpoints of the mine map: thin, the logic is in services and mapfile."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from fleet.accounts.permissions import RolePermission
from fleet.api import INT_MAX, QueryParameters, query_parameters
from fleet.api.sites import SiteScopedMixin, may_see_site
from fleet.mine import mapfile, services
from fleet.mine.filters import (
    AreaFilter,
    DumpPointFilter,
    LoadingUnitFilter,
    PolicyZoneFilter,
    RoadNetworkFilter,
    WayFilter,
)
from fleet.mine.models import Area, DumpPoint, LoadingUnit, PolicyZone, RoadNetwork, Site, Way
from fleet.mine.serializers import (
    AreaSerializer,
    DumpPointSerializer,
    LoadingUnitSerializer,
    PolicyZoneSerializer,
    RoadNetworkSerializer,
    SiteSerializer,
    WaySerializer,
    ZoneDrawSerializer,
    ZoneReasonSerializer,
)


def _refuse(exc: DjangoValidationError) -> serializers.ValidationError:
    return serializers.ValidationError({"detail": exc.messages})


class MapParameters(QueryParameters):
    revision = serializers.IntegerField(
        min_value=0,
        max_value=INT_MAX,
        required=False,
        help_text="Road-network revision (default: the active one)",
    )


class SiteViewSet(SiteScopedMixin, viewsets.ReadOnlyModelViewSet):
    site_field = ""
    queryset = Site.objects.all()
    serializer_class = SiteSerializer
    pagination_class = None

    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        parameters=[MapParameters],
        summary="The whole site map as one GeoJSON FeatureCollection (docs/map-format.md)",
    )
    @action(detail=True, methods=["get"], url_path="map")
    def map(self, request: Request, pk: str | None = None) -> Response:
        site = self.get_object()
        revision = query_parameters(request, MapParameters).get("revision")
        network = None
        if revision is not None:
            network = get_object_or_404(RoadNetwork, site=site, revision=revision)
        return Response(mapfile.export_site_map(site, network))


class RoadNetworkViewSet(SiteScopedMixin, viewsets.ReadOnlyModelViewSet):
    queryset = RoadNetwork.objects.select_related("site")
    serializer_class = RoadNetworkSerializer
    filterset_class = RoadNetworkFilter


class WayViewSet(SiteScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Ways of the active road network, or of ``?revision=`` with ``?site=``."""

    queryset = Way.objects.select_related("network", "start_node", "end_node")
    site_field = "network__site"
    serializer_class = WaySerializer
    filterset_class = WayFilter
    pagination_class = None


class ZonePermission(RolePermission):
    """Requesting a zone's deletion reopens a road: an operator's job, like activating one."""

    perms_map = {**RolePermission.perms_map, "DELETE": ["mine.activate_policyzone"]}


class PolicyZoneViewSet(
    SiteScopedMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.ReadOnlyModelViewSet,
):
    """Policy zones. Never edited in place: create a new zone (with ``replaces``) instead.
    DELETE requests deletion (Active -> Pending delete)."""

    queryset = PolicyZone.objects.select_related("site")
    serializer_class = PolicyZoneSerializer
    pagination_class = None
    permission_classes = [ZonePermission]

    filterset_class = PolicyZoneFilter

    def perform_create(self, serializer: PolicyZoneSerializer) -> None:
        site = serializer.validated_data.get("site")
        if site is not None and not may_see_site(self.request.user, site.pk):
            raise serializers.ValidationError(
                {"site": [f'Invalid pk "{site.pk}" - object does not exist.']}
            )
        serializer.save()

    def perform_destroy(self, instance: PolicyZone) -> None:
        try:
            services.request_zone_deletion(instance)
        except DjangoValidationError as exc:
            raise _refuse(exc) from None

    @extend_schema(
        responses={202: PolicyZoneSerializer},
        summary="Request a zone's deletion (Active -> Pending delete)",
    )
    def destroy(self, request: Request, *args: object, **kwargs: object) -> Response:
        zone = self.get_object()
        self.perform_destroy(zone)
        zone.refresh_from_db()
        return Response(self.get_serializer(zone).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=PolicyZoneSerializer, summary="Activate a Pending zone")
    @action(detail=True, methods=["post"])
    def activate(self, request: Request, pk: str | None = None) -> Response:
        if not request.user.has_perm("mine.activate_policyzone"):
            raise PermissionDenied("activating a zone needs the operator role")
        zone = self.get_object()
        try:
            zone = services.activate_zone(zone)
        except DjangoValidationError as exc:
            raise _refuse(exc) from None
        return Response(self.get_serializer(zone).data)

    @extend_schema(
        request=ZoneDrawSerializer,
        responses={201: PolicyZoneSerializer},
        summary="Create a zone and activate it at once, with a reason (the control room's map)",
    )
    @action(detail=False, methods=["post"])
    def draw(self, request: Request) -> Response:
        self._require_activate(request, "drawing a zone")
        payload = ZoneDrawSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        if not may_see_site(request.user, data["site"].pk):
            raise serializers.ValidationError(
                {"site": [f'Invalid pk "{data["site"].pk}" - object does not exist.']}
            )
        try:
            zone = services.draw_zone(**data, created_by=request.user)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(_by_field(exc)) from None
        return Response(self.get_serializer(zone).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=ZoneReasonSerializer,
        responses={202: PolicyZoneSerializer},
        summary="Deactivate a zone, with a reason (Active -> Pending delete)",
    )
    @action(detail=True, methods=["post"])
    def deactivate(self, request: Request, pk: str | None = None) -> Response:
        self._require_activate(request, "deactivating a zone")
        payload = ZoneReasonSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        zone = self.get_object()
        try:
            zone = services.request_zone_deletion(zone, reason=payload.validated_data["reason"])
        except DjangoValidationError as exc:
            raise _refuse(exc) from None
        return Response(self.get_serializer(zone).data, status=status.HTTP_202_ACCEPTED)

    @staticmethod
    def _require_activate(request: Request, what: str) -> None:
        if not request.user.has_perm("mine.activate_policyzone"):
            raise PermissionDenied(f"{what} needs the operator role")


def _by_field(exc: DjangoValidationError) -> dict:
    """The model's complaints keyed by the request's field names (``geometry``, ``policies``)."""
    return exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}


class LoadingUnitViewSet(SiteScopedMixin, viewsets.ReadOnlyModelViewSet):
    queryset = LoadingUnit.objects.all()
    serializer_class = LoadingUnitSerializer
    filterset_class = LoadingUnitFilter
    pagination_class = None


class DumpPointViewSet(SiteScopedMixin, viewsets.ReadOnlyModelViewSet):
    queryset = DumpPoint.objects.all()
    serializer_class = DumpPointSerializer
    filterset_class = DumpPointFilter
    pagination_class = None


class AreaViewSet(SiteScopedMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Area.objects.all()
    serializer_class = AreaSerializer
    filterset_class = AreaFilter
    pagination_class = None
