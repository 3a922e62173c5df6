"""REST for the outbox: a truck fetches and acknowledges its commands (the MQTT fallback);
operators list commands with their audit trail and stop or resume a truck. Thin views."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from fleet.accounts.permissions import RolePermission
from fleet.control import services
from fleet.control.models import Command
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


class VehicleCommandsView(APIView):
    """A truck's open commands after a cursor, each as the envelope it would get over MQTT."""

    authentication_classes = [TruckTokenAuthentication]
    permission_classes = [IsMachine]

    @extend_schema(
        parameters=[OpenApiParameter("after", int, description="Cursor: the last serial seen")],
        responses=OpenApiTypes.OBJECT,
        summary="Fetch my commands (the MQTT fallback)",
    )
    def get(self, request: Request) -> Response:
        try:
            after = int(request.query_params.get("after", 0))
        except ValueError:
            raise ValidationError({"after": "an integer cursor"}) from None
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


class CommandListView(APIView):
    permission_classes = [RolePermission]
    queryset = Command.objects.none()

    @extend_schema(
        parameters=[
            OpenApiParameter("equipment", str),
            OpenApiParameter("status", str),
            OpenApiParameter("limit", int, description="At most 500 (default 100)"),
        ],
        responses=CommandSerializer(many=True),
        summary="Recent commands with their audit trail",
    )
    def get(self, request: Request) -> Response:
        commands = Command.objects.prefetch_related("events").select_related("issued_by")
        for field in ("equipment", "status"):
            if request.query_params.get(field):
                commands = commands.filter(**{field: request.query_params[field]})
        limit = max(1, min(int(request.query_params.get("limit", 100) or 100), 500))
        return Response(CommandSerializer(commands[:limit], many=True).data)


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300)


class TruckCommandView(APIView):
    """Operators (the add_command permission) stop and resume trucks, always with a reason.
    One view, two routes: ``action`` names the service (``stop_truck`` or ``resume_truck``)."""

    permission_classes = [RolePermission]
    queryset = Command.objects.none()
    action = "stop"
    SERVICES = {"stop": services.stop_truck, "resume": services.resume_truck}

    @extend_schema(request=ReasonSerializer, responses=CommandSerializer)
    def post(self, request: Request, pk: str) -> Response:
        payload = ReasonSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        equipment = get_object_or_404(Equipment, pk=pk, autonomous=True)
        command = self.SERVICES[self.action](
            equipment, reason=payload.validated_data["reason"], actor=request.user
        )
        if command is None:
            return Response(
                {"detail": f"nothing to {self.action}"}, status=status.HTTP_409_CONFLICT
            )
        return Response(CommandSerializer(command).data, status=status.HTTP_201_CREATED)
