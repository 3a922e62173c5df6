"""``GET /api/v1/sites/{id}/replay/``: a stretch of a site's history to play back on the
dashboard: the trucks' positions (as recorded, or from the minute roll-ups for long ranges), their
statuses (fleet.telemetry.status's history: the production states they reported, their link and
the register), and the alerts and commands of that time, each at the moment it happened. The
player fetches a long range in consecutive chunks; each chunk is bounded so one answer stays
small."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from fleet.accounts.permissions import RolePermission
from fleet.api import TimeRangeParameters, query_parameters
from fleet.api.sites import visible_or_404
from fleet.control.models import AlertEvent, CommandEvent
from fleet.mine.models import Site
from fleet.telemetry import queries
from fleet.telemetry import status as machine_status
from fleet.vehicles.models import Equipment

# Longest chunk per resolution: 100 trucks at 10 Hz is 120,000 rows in 2 minutes.
CHUNK = {queries.RECORDED: timedelta(minutes=2), queries.MINUTE: timedelta(hours=6)}


class ReplayParameters(TimeRangeParameters):
    resolution = serializers.ChoiceField(
        choices=[queries.RECORDED, queries.MINUTE],
        default=queries.RECORDED,
        help_text="recorded: every stored position (chunks of at most 2 min; ranges up to an "
        "hour); minute: the per-minute roll-ups (chunks of at most 6 h)",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        longest = CHUNK[attrs["resolution"]]
        if attrs["to"] - attrs["from"] > longest:
            raise serializers.ValidationError(
                {"to": f"A {attrs['resolution']} chunk spans at most {longest}."}
            )
        return attrs


class SiteReplayView(APIView):
    permission_classes = [RolePermission]
    queryset = Equipment.objects.none()  # reading needs the equipment view permission

    @extend_schema(
        parameters=[ReplayParameters],
        responses=OpenApiTypes.OBJECT,
        summary="A chunk of the site's history to play back: positions, states, alerts, commands",
    )
    def get(self, request: Request, site_id: str) -> Response:
        site = visible_or_404(Site.objects, request.user, "", pk=site_id)
        params = query_parameters(request, ReplayParameters)
        start, end = params["from"], params["to"]
        trucks = list(Equipment.objects.filter(site=site).order_by("name").values("id", "name"))
        index = {row["id"]: i for i, row in enumerate(trucks)}
        rows = queries.replay_positions(list(index), start, end, params["resolution"])
        return Response(
            {
                "from": start,
                "to": end,
                "resolution": params["resolution"],
                "trucks": [{"id": str(row["id"]), "name": row["name"]} for row in trucks],
                # [epoch ms, index into trucks, longitude, latitude, heading, speed km/h]
                "positions": [
                    [at, index[truck], round(lon, 7), round(lat, 7), heading, round(speed, 1)]
                    for at, truck, lon, lat, heading, speed in rows
                ],
                # [epoch ms, index into trucks, status]: each truck's status at the chunk's
                # start, then its changes (the ProductionState it reported, Offline, ...)
                "states": [
                    [int(at.timestamp() * 1000), index[truck], status]
                    for at, truck, status in machine_status.changes(list(index), start, end)
                ],
                "alerts": _alert_events(site, start, end),
                "commands": _command_events(site, start, end),
            }
        )


def _alert_events(site: Site, start: Any, end: Any) -> list[dict[str, Any]]:
    events = (
        AlertEvent.objects.filter(alert__site=site, at__gte=start, at__lt=end)
        .select_related("alert", "alert__equipment")
        .order_by("at", "id")
    )
    return [
        {
            "at": event.at,
            "alert": event.alert_id,
            "action": event.action,
            "equipment": event.alert.equipment.name,
            "kind": event.alert.kind,
            "severity": event.alert.severity,
            "reason": event.alert.reason,
            "actor": event.actor,
        }
        for event in events
    ]


def _command_events(site: Site, start: Any, end: Any) -> list[dict[str, Any]]:
    events = (
        CommandEvent.objects.filter(command__equipment__site=site, at__gte=start, at__lt=end)
        .select_related("command", "command__equipment")
        .order_by("at", "id")
    )
    return [
        {
            "at": event.at,
            "command": str(event.command.command_id),
            "message": event.command.message_name,
            "equipment": event.command.equipment.name,
            "status": event.status,
            "reason": event.command.reason,
            "actor": event.actor,
        }
        for event in events
    ]
