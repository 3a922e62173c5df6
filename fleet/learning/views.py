"""The model registry over REST: read versions, aliases and the audit (the view_* permissions
every control-room role has); promote and roll back (``learning.promote_modelversion``, the
supervisor's). Thin views: the admin and these share ``fleet.learning.services``, one audited
path."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from fleet.accounts.permissions import RolePermission
from fleet.api.sites import visible_or_404
from fleet.learning import services, shadow
from fleet.learning.admin import PROMOTE_PERMISSION
from fleet.learning.filters import AliasChangeFilter, ModelAliasFilter, ModelVersionFilter
from fleet.learning.models import AliasChange, ModelAlias, ModelVersion, Prediction
from fleet.learning.serializers import (
    AliasChangeSerializer,
    AliasRequestSerializer,
    ModelAliasSerializer,
    ModelVersionSerializer,
    PredictionSerializer,
    PromoteRequestSerializer,
    PromotionSerializer,
    SideBySideSerializer,
)
from fleet.learning.tasks import live_event
from fleet.vehicles.models import Equipment


class CanPromote(permissions.BasePermission):
    """Moving an alias changes what the inference workers serve: a permission of its own."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(PROMOTE_PERMISSION))


def _refused(exc: services.RegistryError) -> Response:
    # A conflict with the registry's state (nothing to roll back to) is 409; anything else the
    # request asked for that the registry will not do (weights no longer match) is 400.
    code = (
        status.HTTP_409_CONFLICT
        if isinstance(exc, services.RegistryConflict)
        else status.HTTP_400_BAD_REQUEST
    )
    return Response({"detail": str(exc)}, status=code)


ALIAS_CHANGED = {
    200: ModelAliasSerializer,
    400: OpenApiResponse(description="Refused: e.g. the weights no longer match their sha256"),
    403: OpenApiResponse(description="Lacks learning.promote_modelversion"),
    404: OpenApiResponse(description="No such version or model name"),
    409: OpenApiResponse(description="Nothing to roll back to"),
}


class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    """Registered versions, newest first: ``?name=``, ``?kind=``."""

    queryset = (
        ModelVersion.objects.select_related("registered_by")
        .prefetch_related("aliases")
        .order_by("-registered_at", "-pk")
    )
    serializer_class = ModelVersionSerializer
    filterset_class = ModelVersionFilter
    lookup_value_regex = r"\d+"

    def get_permissions(self) -> list[permissions.BasePermission]:
        if self.action == "promote":
            return [CanPromote()]
        return super().get_permissions()

    @extend_schema(
        request=PromoteRequestSerializer,
        responses={**ALIAS_CHANGED, 200: PromotionSerializer},
        summary="Point an alias of this version's name at it (weights re-verified first); the "
        "answer and the audit carry both versions' live figures as they stood",
    )
    @action(detail=True, methods=["post"])
    def promote(self, request: Request, pk: str | None = None) -> Response:
        """Point ``alias`` of this version's name at this version; the user is audited."""
        version = self.get_object()
        payload = PromoteRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        # The figures in front of the supervisor are the ones audited with the decision.
        since = shadow.since_hours(payload.validated_data.get("hours"))
        figures = shadow.side_by_side(version.name, since=since)
        try:
            row = services.promote(
                version.name,
                version.version,
                payload.validated_data["alias"],
                by=request.user,
                figures=figures,
            )
        except services.RegistryError as exc:
            return _refused(exc)
        return Response({**ModelAliasSerializer(row).data, "figures": figures})


class RollBackView(APIView):
    """Point ``alias`` of ``name`` back at the version it had before its latest promotion still
    in force (again for the one before); the user is audited."""

    permission_classes = [CanPromote]

    @extend_schema(
        request=AliasRequestSerializer,
        responses=ALIAS_CHANGED,
        summary="Point an alias back at the version it had before its latest promotion",
    )
    def post(self, request: Request, name: str) -> Response:
        payload = AliasRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        if not ModelVersion.objects.filter(name=name).exists():
            raise NotFound(f"no model named {name!r} is registered")
        try:
            row = services.roll_back(name, payload.validated_data["alias"], by=request.user)
        except services.RegistryError as exc:
            return _refused(exc)
        return Response(ModelAliasSerializer(row).data)


class ModelAliasListView(generics.ListAPIView):
    """Every alias and the version it points at: ``?name=``."""

    queryset = ModelAlias.objects.select_related("version", "updated_by")
    serializer_class = ModelAliasSerializer
    filterset_class = ModelAliasFilter


class AliasChangeListView(generics.ListAPIView):
    """The audit of aliases, newest first: who moved which, when, from which version to which."""

    queryset = AliasChange.objects.select_related("from_version", "to_version", "by")
    serializer_class = AliasChangeSerializer
    filterset_class = AliasChangeFilter


class TruckPredictionsView(APIView):
    """A truck's newest prediction of each head (fault, eta, trajectory, payload): what the
    machine detail shows at open, before the live feed's next ``prediction`` events. Reading a
    truck needs the equipment view permission (every role) and a site the user may see."""

    permission_classes = [RolePermission]
    queryset = Equipment.objects.none()  # names the model whose permissions apply

    @extend_schema(
        responses=PredictionSerializer(many=True),
        summary="A truck's newest prediction of each head (the live event's shape)",
    )
    def get(self, request: Request, pk: str) -> Response:
        truck = visible_or_404(Equipment.objects, request.user, pk=pk)
        # DISTINCT ON walks the (equipment, model_name, -window_end) index: one row per head.
        newest = (
            Prediction.objects.filter(equipment=truck)
            .order_by("model_name", "-window_end", "-pk")
            .distinct("model_name")
        )
        return Response([live_event(prediction) for prediction in newest])


class ShadowListView(APIView):
    """Every model name with a challenger in shadow: its champion's and challenger's live
    figures side by side (``fleet.learning.shadow``). Viewers and up."""

    permission_classes = [RolePermission]
    queryset = ModelVersion.objects.none()  # names the model whose permissions apply

    @extend_schema(
        responses=SideBySideSerializer(many=True),
        summary="Champions and challengers in shadow, their live figures side by side",
    )
    def get(self, request: Request) -> Response:
        return Response([shadow.side_by_side(name) for name in shadow.shadowed_names()])


class ShadowView(APIView):
    """One model name's champion and challenger, their live figures side by side over the
    period the challenger has run in shadow (``?hours=`` for the last hours instead)."""

    permission_classes = [RolePermission]
    queryset = ModelVersion.objects.none()

    @extend_schema(
        responses=SideBySideSerializer,
        summary="A champion and its challenger in shadow, their live figures side by side",
    )
    def get(self, request: Request, name: str) -> Response:
        if not ModelVersion.objects.filter(name=name).exists():
            raise NotFound(f"no model named {name!r} is registered")
        try:
            since = shadow.since_hours(float(request.query_params.get("hours") or 0))
        except ValueError:
            raise ValidationError({"hours": "a number of hours"}) from None
        return Response(shadow.side_by_side(name, since=since))
