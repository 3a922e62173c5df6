"""REST for the outbox: a truck fetches and acknowledges its commands (the MQTT fallback);
operators list commands with their audit trail and stop or resume a truck. Thin views."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from fleet.accounts.permissions import RolePermission
from fleet.api import QueryParameters, query_parameters
from fleet.api.sites import SiteScopedMixin, visible_or_404
from fleet.control import allstop, services
from fleet.control.filters import CommandFilter, TruckStateFilter
from fleet.control.models import AllStop, Command, TruckState
from fleet.mine.models import Site
from fleet.vehicles.authentication import IsMachine, TruckTokenAuthentication
from fleet.vehicles.models import Equipment

MAX_FETCH = 100


class CommandEventSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    status = serializers.CharField()
    detail = serializers.CharField()
    actor = serializers.CharField()


class CommandSerializer(serializers.ModelSerializer):
    events = CommandEventSerializer(many=True, read_only=True)
    issued_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Command
        fields = [
            "serial",
            "command_id",
            "equipment",
            "message_name",
            "body",
            "status",
            "reason",
            "issued_by",
            "issued_at",
            "expires_at",
            "sent_at",
            "attempts",
            "answered_at",
            "answer",
            "events",
        ]


class VehicleCommandsParameters(QueryParameters):
    after = serializers.IntegerField(
        min_value=0, default=0, help_text="Cursor: the last serial seen (the answer's `cursor`)"
    )


class VehicleCommandSerializer(serializers.Serializer):
    serial = serializers.IntegerField()
    commandId = serializers.UUIDField()  # the envelope's own spelling
    message = serializers.CharField()
    envelope = serializers.JSONField(help_text="The ISO 23725 envelope, as sent over MQTT")


class VehicleCommandsSerializer(serializers.Serializer):
    commands = VehicleCommandSerializer(many=True)
    cursor = serializers.IntegerField(help_text="Pass as `after` to fetch what came since")


class VehicleCommandsView(APIView):
    """A truck's open commands after a cursor, each as the envelope it would get over MQTT."""

    authentication_classes = [TruckTokenAuthentication]
    permission_classes = [IsMachine]

    @extend_schema(
        parameters=[VehicleCommandsParameters],
        responses=VehicleCommandsSerializer,
        summary="Fetch my commands (the MQTT fallback)",
    )
    def get(self, request: Request) -> Response:
        after = query_parameters(request, VehicleCommandsParameters)["after"]
        commands = services.fetch_for_truck(request.auth, after=after, limit=MAX_FETCH)
        return Response(
            {
                "commands": [
                    {
                        "serial": command.serial,
                        "commandId": str(command.command_id),
                        "message": command.message_name,
                        "envelope": services.envelope_json(command),
                    }
                    for command in commands
                ],
                "cursor": commands[-1].serial if commands else after,
            }
        )


class AcknowledgementSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["Accepted", "Rejected", "Completed"])
    reason = serializers.CharField(required=False, allow_blank=True, max_length=300)


class VehicleCommandAckView(APIView):
    authentication_classes = [TruckTokenAuthentication]
    permission_classes = [IsMachine]

    @extend_schema(
        request=AcknowledgementSerializer,
        responses=CommandSerializer,
        summary="Acknowledge a command",
    )
    def post(self, request: Request, command_id: str) -> Response:
        answer = AcknowledgementSerializer(data=request.data)
        answer.is_valid(raise_exception=True)
        command = get_object_or_404(Command, command_id=command_id, equipment=request.auth)
        services.record_answer(
            request.auth.id,
            command_id=command.command_id,
            accepted=answer.validated_data["status"] != "Rejected",
            reason=answer.validated_data.get("reason"),
            actor="rest",
        )
        command.refresh_from_db()
        return Response(CommandSerializer(command).data)


class CommandListParameters(QueryParameters):
    limit = serializers.IntegerField(
        min_value=1, max_value=500, default=100, help_text="How many, newest first"
    )


class CommandListView(SiteScopedMixin, generics.ListAPIView):
    site_field = "equipment__site"
    queryset = Command.objects.prefetch_related("events").select_related("issued_by")
    serializer_class = CommandSerializer
    filterset_class = CommandFilter
    pagination_class = None

    @extend_schema(
        parameters=[CommandListParameters], summary="Recent commands with their audit trail"
    )
    def get(self, request: Request) -> Response:
        limit = query_parameters(request, CommandListParameters)["limit"]
        commands = self.filter_queryset(self.get_queryset()).order_by("-serial")[:limit]
        return Response(CommandSerializer(commands, many=True).data)


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300)


class TruckCommandView(APIView):
    """Operators (the add_command permission) stop and resume trucks, always with a reason.
    One view, two routes: ``action`` names the service (``stop_truck`` or ``resume_truck``)."""

    permission_classes = [RolePermission]
    queryset = Command.objects.none()
    action = "stop"
    SERVICES = {"stop": services.stop_truck, "resume": services.resume_truck}

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "pk",
                OpenApiTypes.UUID,
                OpenApiParameter.PATH,
                description="The truck's EquipmentId",
            )
        ],
        request=ReasonSerializer,
        responses={
            201: CommandSerializer,
            409: OpenApiResponse(description="Nothing to do (the truck is stopped, or not)"),
        },
    )
    def post(self, request: Request, truck_id: str) -> Response:
        payload = ReasonSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        equipment = visible_or_404(Equipment.objects, request.user, pk=truck_id, autonomous=True)
        command = self.SERVICES[self.action](
            equipment, reason=payload.validated_data["reason"], actor=request.user
        )
        if command is None:
            return Response(
                {"detail": f"nothing to {self.action}"}, status=status.HTTP_409_CONFLICT
            )
        return Response(CommandSerializer(command).data, status=status.HTTP_201_CREATED)


# --- all-stop ---------------------------------------------------------------------------------


class AllStopSerializer(serializers.Serializer):
    mode = serializers.CharField()
    stop_id = serializers.UUIDField()
    reason = serializers.CharField()
    actor = serializers.CharField()
    machines = serializers.IntegerField()
    at = serializers.DateTimeField()


class AllStopStatusSerializer(serializers.Serializer):
    in_force = serializers.BooleanField()
    last = AllStopSerializer(allow_null=True, help_text="The latest action, Apply or Remove")
    acknowledged = serializers.ListField(child=serializers.CharField())
    waiting = serializers.ListField(child=serializers.CharField())
    failed = serializers.ListField(
        child=serializers.CharField(), help_text="Rejected or expired: look at these machines"
    )


def _all_stop_answer(site: Site, code: int = status.HTTP_200_OK) -> Response:
    state = allstop.all_stop_status(site)
    body = {
        "in_force": state.event is not None and state.event.mode == AllStop.Mode.APPLY,
        "last": AllStopSerializer(state.event).data if state.event else None,
        "acknowledged": state.acknowledged,
        "waiting": state.waiting,
        "failed": state.failed,
    }
    return Response(body, status=code)


class HasPermission(permissions.BasePermission):
    """The view's ``required`` permission for its POST; viewing needs view_allstop."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        needed = (
            "control.view_allstop" if request.method in permissions.SAFE_METHODS else view.required
        )
        return user.has_perm(needed)


SITE_PARAMETER = OpenApiParameter(
    "site_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The site's id"
)


class SiteAllStopView(APIView):
    """A site's all-stop: its state with each machine's acknowledgement (viewers), Apply
    (operators: the emergency-stop rule)."""

    permission_classes = [HasPermission]
    required = "control.apply_allstop"

    @extend_schema(
        parameters=[SITE_PARAMETER],
        responses=AllStopStatusSerializer,
        summary="The all-stop in force and each machine's acknowledgement",
    )
    def get(self, request: Request, site_id: str) -> Response:
        return _all_stop_answer(visible_or_404(Site.objects, request.user, "", pk=site_id))

    @extend_schema(
        parameters=[SITE_PARAMETER],
        request=ReasonSerializer,
        responses={201: AllStopStatusSerializer, 200: AllStopStatusSerializer},
        summary="Apply an all-stop to every machine of the site",
    )
    def post(self, request: Request, site_id: str) -> Response:
        payload = ReasonSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        site = visible_or_404(Site.objects, request.user, "", pk=site_id)
        already = allstop.in_force(site) is not None
        allstop.apply_all_stop(site, reason=payload.validated_data["reason"], actor=request.user)
        return _all_stop_answer(site, status.HTTP_200_OK if already else status.HTTP_201_CREATED)


class SiteAllStopRemoveView(APIView):
    """Lift the site's all-stop (supervisors only)."""

    permission_classes = [HasPermission]
    required = "control.remove_allstop"

    @extend_schema(
        parameters=[SITE_PARAMETER],
        request=ReasonSerializer,
        responses={
            200: AllStopStatusSerializer,
            409: OpenApiResponse(description="No all-stop is in force"),
        },
        summary="Remove the site's all-stop",
    )
    def post(self, request: Request, site_id: str) -> Response:
        payload = ReasonSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        site = visible_or_404(Site.objects, request.user, "", pk=site_id)
        try:
            allstop.remove_all_stop(
                site, reason=payload.validated_data["reason"], actor=request.user
            )
        except ValidationError as error:
            return Response({"detail": error.messages[0]}, status=status.HTTP_409_CONFLICT)
        return _all_stop_answer(site)


# --- machine states -----------------------------------------------------------------------------


class TruckStateSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="equipment.name")

    class Meta:
        model = TruckState
        fields = [
            "equipment",
            "name",
            "connection",
            "stop_id",
            "all_stop_id",
            "reported_all_stop",
            "reported_zone_ids",
            "reported_at",
            "resynced_at",
            "safe_stopped_at",
        ]


class TruckStateListView(SiteScopedMixin, generics.ListAPIView):
    """Each machine's desired and reported control state: which are stopped by a stop, the
    all-stop, or their own safe state (``safe_stopped_at``: the FMS heartbeat was lost)."""

    queryset = TruckState.objects.select_related("equipment").order_by("equipment__name")
    site_field = "equipment__site"
    serializer_class = TruckStateSerializer
    filterset_class = TruckStateFilter
