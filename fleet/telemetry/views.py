"""REST for the truck link: vehicles post messages (the fallback when MQTT is down), operators
read the latest state, tracks, spatial queries and paged history. Thin: the logic is in
services and queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.contrib.gis.geos import GEOSException, GEOSGeometry
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from fleet.accounts.permissions import RolePermission
from fleet.telemetry import latest, queries
from fleet.telemetry.intake import Inbound
from fleet.telemetry.models import Position
from fleet.telemetry.services import EquipmentDirectory, LiveFeed, ingest_batch
from fleet.vehicles.authentication import IsMachine, TruckTokenAuthentication
from fleet.vehicles.models import Equipment
from fleet.vehicles.serializers import EquipmentSerializer

MAX_BATCH = 1000
_directory = EquipmentDirectory(refresh_s=10.0, miss_s=1.0)


class RawJSONParser(BaseParser):
    """Keeps the body as bytes: each message is validated by the wire parser, not by DRF."""

    media_type = "application/json"

    def parse(
        self, stream: Any, media_type: str | None = None, parser_context: Any = None
    ) -> bytes:
        return stream.read() if stream is not None else b""


def _messages(body: bytes) -> list[Any]:
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ParseError(f"the body is not JSON: {error}") from None
    if isinstance(decoded, dict):  # {"messages": [...]} or one bare envelope
        decoded = decoded.get("messages", [decoded])
    if not isinstance(decoded, list) or not decoded:
        raise ParseError("expected a non-empty JSON array of ISO 23725 envelopes")
    if len(decoded) > MAX_BATCH:
        raise ParseError(f"at most {MAX_BATCH} messages per request")
    return decoded


class VehicleMessagesView(APIView):
    """POST a batch of ISO 23725 envelopes (the MQTT fallback). Same validation, same store."""

    authentication_classes = [TruckTokenAuthentication]
    permission_classes = [IsMachine]
    parser_classes = [RawJSONParser]

    @extend_schema(
        request={"application/json": OpenApiTypes.OBJECT},
        responses=OpenApiTypes.OBJECT,
        summary="Post truck messages over HTTP (a JSON array of envelopes, at most 1000)",
    )
    def post(self, request: Request) -> Response:
        received_at = datetime.now(UTC)
        inbound = [
            Inbound(
                channel="rest",
                payload=orjson.dumps(item),
                received_at=received_at,
                sender=request.auth.id,
                decoded=item,
            )
            for item in _messages(request.data)
        ]
        result = ingest_batch(inbound, _directory)
        feed = LiveFeed()
        feed.add(result)
        feed.flush(force=True)
        refused = {id(item.inbound): item for item in result.refused}
        return Response(
            {
                "received": len(inbound),
                "stored": result.stored,
                "duplicates": result.counts.duplicates,
                "rejected": [
                    {
                        "index": index,
                        "reason": refused[id(item)].reason,
                        "detail": refused[id(item)].detail,
                    }
                    for index, item in enumerate(inbound)
                    if id(item) in refused
                ],
            },
            status=status.HTTP_200_OK if not result.refused else status.HTTP_207_MULTI_STATUS,
        )


# --- operators ------------------------------------------------------------------------------


def _time(request: Request, name: str, default: datetime | None = None) -> datetime:
    raw = request.query_params.get(name)
    if raw is None:
        if default is None:
            raise ValidationError({name: "required (ISO 8601 with a time zone)"})
        return default
    value = parse_datetime(raw.replace(" ", "+"))
    if value is None or value.tzinfo is None:
        raise ValidationError(
            {name: "an ISO 8601 time with a time zone, e.g. 2026-11-22T10:00:00Z"}
        )
    return value


def _int(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        raise ValidationError({name: "an integer"}) from None


class _TruckView(APIView):
    """Reading trucks and their history needs the equipment view permission (every role)."""

    permission_classes = [RolePermission]
    queryset = Equipment.objects.none()  # names the model whose permissions apply

    def truck(self, pk: str) -> Equipment:
        return get_object_or_404(Equipment.objects.select_related("site"), pk=pk)


class TruckListView(_TruckView):
    @extend_schema(
        parameters=[OpenApiParameter("site", str, description="Site id")],
        responses=OpenApiTypes.OBJECT,
        summary="Trucks with their latest state (position, production state, health, link)",
    )
    def get(self, request: Request) -> Response:
        trucks = Equipment.objects.filter(kind=Equipment.Kind.HAUL_TRUCK).exclude(
            status=Equipment.Status.RETIRED
        )
        if request.query_params.get("site"):
            trucks = trucks.filter(site_id=request.query_params["site"])
        trucks = list(trucks.select_related("site"))
        states = latest.read_latest(truck.id for truck in trucks)
        return Response(
            [
                {**EquipmentSerializer(truck).data, "latest": states.get(str(truck.id), {})}
                for truck in trucks
            ]
        )


class TruckTrackView(_TruckView):
    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATETIME, required=True),
            OpenApiParameter("to", OpenApiTypes.DATETIME),
            OpenApiParameter(
                "simplify", float, description="Tolerance in metres (default: by range)"
            ),
        ],
        responses=OpenApiTypes.OBJECT,
        summary="A truck's track as a GeoJSON LineString (simplified; roll-ups beyond 6 h)",
    )
    def get(self, request: Request, pk: str) -> Response:
        truck = self.truck(pk)
        simplify = request.query_params.get("simplify")
        try:
            options = queries.TrackOptions(
                start=_time(request, "from"),
                end=_time(request, "to", timezone.now()),
                utm_srid=truck.site.utm_srid,
                tolerance_m=float(simplify) if simplify is not None else None,
            )
            return Response(queries.track(truck.id, options))
        except (queries.QueryError, ValueError) as error:
            raise ValidationError({"detail": str(error)}) from None


class TrucksInAreaView(_TruckView):
    @extend_schema(
        parameters=[
            OpenApiParameter("area", str, required=True, description="GeoJSON Polygon (WGS84)"),
            OpenApiParameter("at", OpenApiTypes.DATETIME, description="Default: now"),
            OpenApiParameter("window", int, description="Oldest position used, in s (default 30)"),
        ],
        responses=OpenApiTypes.OBJECT,
        summary="Trucks inside a polygon at a time, as a GeoJSON FeatureCollection",
    )
    def get(self, request: Request) -> Response:
        try:
            area = GEOSGeometry(request.query_params.get("area", ""), srid=4326)
            features = queries.trucks_in_area(
                area,
                _time(request, "at", timezone.now()),
                timedelta(seconds=max(1, min(_int(request, "window", 30), 3600))),
            )
        except (GEOSException, ValueError, queries.QueryError) as error:
            raise ValidationError({"area": str(error) or "not a GeoJSON polygon"}) from None
        return Response({"type": "FeatureCollection", "features": features})


class PositionSerializer(serializers.ModelSerializer):
    lon = serializers.FloatField(source="location.x")
    lat = serializers.FloatField(source="location.y")

    class Meta:
        model = Position
        fields = [
            "sent_at",
            "measured_at",
            "received_at",
            "lon",
            "lat",
            "elevation_m",
            "heading_deg",
            "speed_kmh",
            "horizontal_accuracy_m",
            "road_revision",
            "sequence",
            "late",
        ]


def _page(request: Request, rows: list[dict], cursor: dict[str, str] | None) -> Response:
    """A page of rows and the URL of the next one (the same query with the cursor set)."""
    next_url = None
    if cursor is not None:
        query = request.query_params.copy()
        query.update(cursor)
        next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
    return Response({"results": rows, "next": next_url})


_PAGE_PARAMETERS = [
    OpenApiParameter("from", OpenApiTypes.DATETIME, required=True),
    OpenApiParameter("to", OpenApiTypes.DATETIME),
    OpenApiParameter("after", OpenApiTypes.DATETIME, description="Cursor from 'next'"),
    OpenApiParameter("limit", int, description="At most 5000 (default 1000)"),
]


class TruckPositionsView(_TruckView):
    @extend_schema(
        parameters=_PAGE_PARAMETERS, responses=OpenApiTypes.OBJECT, summary="Raw positions, paged"
    )
    def get(self, request: Request, pk: str) -> Response:
        truck = self.truck(pk)
        start = _time(request, "from")
        after = _time(request, "after", start) if "after" in request.query_params else None
        page, cursor = queries.positions_page(
            truck.id,
            start,
            _time(request, "to", timezone.now()),
            after,
            _int(request, "limit", 1000),
        )
        next_cursor = {"after": cursor.isoformat()} if cursor else None
        return _page(request, PositionSerializer(page, many=True).data, next_cursor)


def _event_cursor(request: Request, start: datetime) -> queries.EventCursor | None:
    if "after" not in request.query_params:
        return None
    return (
        _time(request, "after", start),
        request.query_params.get("after_message", ""),
        _int(request, "after_sequence", -2),  # below any stored sequence (-1 = none sent)
    )


class TruckEventsView(_TruckView):
    @extend_schema(
        parameters=[
            *_PAGE_PARAMETERS,
            OpenApiParameter("message", str, description="e.g. BasicMachineHealthV2"),
        ],
        responses=OpenApiTypes.OBJECT,
        summary="Other truck messages (health, payload, production state, ...), paged",
    )
    def get(self, request: Request, pk: str) -> Response:
        truck = self.truck(pk)
        start = _time(request, "from")
        page, cursor = queries.events_page(
            truck.id,
            start,
            _time(request, "to", timezone.now()),
            _event_cursor(request, start),
            _int(request, "limit", 1000),
            request.query_params.get("message"),
        )
        rows = [
            {
                "message": event.message_name,
                "sent_at": event.sent_at,
                "received_at": event.received_at,
                "sequence": None if event.sequence < 0 else event.sequence,
                "late": event.late,
                "body": event.body,
            }
            for event in page
        ]
        next_cursor = None
        if cursor is not None:
            at, name, sequence = cursor
            next_cursor = {
                "after": at.isoformat(),
                "after_message": name,
                "after_sequence": str(sequence),
            }
        return _page(request, rows, next_cursor)


LOOPBACK = {"127.0.0.1", "::1"}


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics of this web process (the REST fallback's counters), for a scraper on
    the same host or a staff user; ingest replicas serve their own on INGEST_METRICS_PORT."""
    if request.META.get("REMOTE_ADDR") not in LOOPBACK and not request.user.is_staff:
        return HttpResponse("metrics are served to loopback and staff only\n", status=403)
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
