"""REST for the truck link: vehicles post messages (the fallback when MQTT is down), operators
read the latest state, tracks, spatial queries and paged history. Thin: the logic is in
services and queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.contrib.gis.gdal import GDALException
from django.contrib.gis.geos import GEOSException, GEOSGeometry
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from fleet.accounts.permissions import RolePermission
from fleet.api import AwareDateTimeField, QueryParameters, TimeRangeParameters, query_parameters
from fleet.api.sites import SiteScopedMixin, scoped, visible_or_404
from fleet.mine.models import Site
from fleet.telemetry import latest, production, queries, replicas
from fleet.telemetry import status as machine_status
from fleet.telemetry.filters import IngestReplicaFilter
from fleet.telemetry.intake import Inbound
from fleet.telemetry.models import NO_SEQUENCE, IngestReplica, Position
from fleet.telemetry.services import EquipmentDirectory, LiveFeed, ingest_batch
from fleet.vehicles.authentication import IsMachine, TruckTokenAuthentication
from fleet.vehicles.filters import TruckFilter
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
    if _has_nul(decoded):
        # Nothing stores a NUL in text (PostgreSQL refuses it), not even a refusal's detail.
        raise ParseError("text in the body may not contain NUL (U+0000) characters")
    return decoded


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


# Any JSON value may stand in the array: each one that is not an envelope is refused on its own,
# with its index and reason, in a 207.
MESSAGES_BODY = {
    "oneOf": [
        {
            "type": "array",
            "items": {},
            "minItems": 1,
            "maxItems": MAX_BATCH,
            "description": "ISO 23725 envelopes",
        },
        {
            "type": "object",
            "description": 'One envelope, or {"messages": [envelopes]}',
        },
    ]
}


class VehicleMessagesView(APIView):
    """POST a batch of ISO 23725 envelopes (the MQTT fallback). Same validation, same store."""

    authentication_classes = [TruckTokenAuthentication]
    permission_classes = [IsMachine]
    parser_classes = [RawJSONParser]

    @extend_schema(
        request={"application/json": MESSAGES_BODY},
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="Every message taken"),
            207: OpenApiResponse(
                OpenApiTypes.OBJECT, description="Some refused, each with its index and reason"
            ),
        },
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

# The most a query parameter may ask of the history in one request (queries.py enforces them
# too, as a last line).
MAX_WINDOW_S = 3600


class AreaField(serializers.CharField):
    """A GeoJSON Polygon or MultiPolygon in WGS84, read into a GEOS geometry."""

    default_error_messages = {
        "invalid": "A GeoJSON Polygon or MultiPolygon in WGS84 (EPSG:4326) is required.",
    }

    def to_internal_value(self, data: Any) -> GEOSGeometry:
        text = super().to_internal_value(data)
        # GeoJSON only: GEOS would also read WKT and hex WKB, which the schema does not offer.
        if not text.lstrip().startswith("{"):
            self.fail("invalid")
        try:
            area = GEOSGeometry(text)
        except (GEOSException, GDALException, ValueError, TypeError):
            self.fail("invalid")
        if area.geom_type not in ("Polygon", "MultiPolygon") or area.srid not in (None, 4326):
            self.fail("invalid")
        if not area.valid:
            raise serializers.ValidationError(f"The polygon is not valid: {area.valid_reason}.")
        area.srid = 4326
        return area


class TrackParameters(TimeRangeParameters):
    simplify = serializers.FloatField(
        min_value=0,
        max_value=500,
        required=False,
        help_text="Tolerance in metres (default: chosen from the range)",
    )

    longest = queries.MAX_TRACK_RANGE


class AreaParameters(QueryParameters):
    area = AreaField(help_text="GeoJSON Polygon or MultiPolygon (WGS84)")
    at = AwareDateTimeField(default=timezone.now, help_text="Default: now")
    window = serializers.IntegerField(
        min_value=1, max_value=MAX_WINDOW_S, default=30, help_text="Oldest position used, in s"
    )


class PageParameters(TimeRangeParameters):
    cursor = serializers.CharField(
        required=False, max_length=200, help_text="Where the previous page ended: from its `next`"
    )
    limit = serializers.IntegerField(min_value=1, max_value=queries.MAX_PAGE, default=1000)


class EventPageParameters(PageParameters):
    message = serializers.CharField(
        required=False, max_length=64, help_text="Only this message, e.g. BasicMachineHealthV2"
    )


def _refused(error: queries.QueryError) -> ValidationError:
    return ValidationError({"detail": [str(error)]})


class _TruckView(APIView):
    """Reading trucks and their history needs the equipment view permission (every role)."""

    permission_classes = [RolePermission]
    queryset = Equipment.objects.none()  # names the model whose permissions apply

    def truck(self, pk: str) -> Equipment:
        return visible_or_404(Equipment.objects.select_related("site"), self.request.user, pk=pk)


class TruckSerializer(EquipmentSerializer):
    latest = serializers.SerializerMethodField(
        help_text="The latest state from the truck link (empty before its first message)"
    )

    class Meta(EquipmentSerializer.Meta):
        fields = [*EquipmentSerializer.Meta.fields, "latest"]

    def get_latest(self, truck: Equipment) -> dict[str, Any]:
        return self.context["latest"].get(str(truck.id), {})


class TruckListView(SiteScopedMixin, generics.ListAPIView):
    """Trucks with their latest state (position, production state, health, link)."""

    queryset = (
        Equipment.objects.filter(kind=Equipment.Kind.HAUL_TRUCK)
        .exclude(status=Equipment.Status.RETIRED)
        .select_related("site")
    )
    serializer_class = TruckSerializer
    filterset_class = TruckFilter
    pagination_class = None

    @extend_schema(
        summary="Trucks with their latest state (position, production state, health, link)"
    )
    def get(self, request: Request) -> Response:
        trucks = list(self.filter_queryset(self.get_queryset()))
        states = latest.read_latest(truck.id for truck in trucks)
        return Response(TruckSerializer(trucks, many=True, context={"latest": states}).data)


class TruckTrackView(_TruckView):
    @extend_schema(
        parameters=[TrackParameters],
        responses=OpenApiTypes.OBJECT,
        summary="A truck's track as a GeoJSON LineString (simplified; roll-ups beyond 6 h)",
    )
    def get(self, request: Request, pk: str) -> Response:
        truck = self.truck(pk)
        params = query_parameters(request, TrackParameters)
        try:
            options = queries.TrackOptions(
                start=params["from"],
                end=params["to"],
                utm_srid=truck.site.utm_srid,
                tolerance_m=params.get("simplify"),
            )
            return Response(queries.track(truck.id, options))
        except queries.QueryError as error:
            raise _refused(error) from None


class TrucksInAreaView(_TruckView):
    @extend_schema(
        parameters=[AreaParameters],
        responses=OpenApiTypes.OBJECT,
        summary="Trucks inside a polygon at a time, as a GeoJSON FeatureCollection",
    )
    def get(self, request: Request) -> Response:
        params = query_parameters(request, AreaParameters)
        try:
            features = queries.trucks_in_area(
                params["area"], params["at"], timedelta(seconds=params["window"])
            )
        except queries.QueryError as error:
            raise _refused(error) from None
        seen = {
            str(pk) for pk in scoped(Equipment.objects, request.user).values_list("pk", flat=True)
        }
        features = [f for f in features if f["properties"]["equipmentId"] in seen]
        return Response({"type": "FeatureCollection", "features": features})


def _sequence(value: int) -> int | None:
    return None if value == NO_SEQUENCE else value


class PositionSerializer(serializers.ModelSerializer):
    lon = serializers.FloatField(source="location.x")
    lat = serializers.FloatField(source="location.y")
    sequence = serializers.SerializerMethodField(help_text="HeaderId; null when none was sent")

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

    def get_sequence(self, position: Position) -> int | None:
        return _sequence(position.sequence)


def _page(request: Request, rows: list[dict], cursor: str | None) -> Response:
    """A page of rows and the URL of the next one (the same query with its cursor)."""
    next_url = None
    if cursor is not None:
        query = request.query_params.copy()
        query["cursor"] = cursor
        next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
    return Response({"results": rows, "next": next_url})


def _refused_cursor(error: queries.QueryError) -> ValidationError:
    return ValidationError({"cursor": [str(error)]})


class TruckPositionsView(_TruckView):
    @extend_schema(
        parameters=[PageParameters], responses=OpenApiTypes.OBJECT, summary="Raw positions, paged"
    )
    def get(self, request: Request, pk: str) -> Response:
        truck = self.truck(pk)
        params = query_parameters(request, PageParameters)
        try:
            page, cursor = queries.positions_page(
                truck.id, params["from"], params["to"], params.get("cursor"), params["limit"]
            )
        except queries.QueryError as error:
            raise _refused_cursor(error) from None
        return _page(request, PositionSerializer(page, many=True).data, cursor)


class TruckEventsView(_TruckView):
    @extend_schema(
        parameters=[EventPageParameters],
        responses=OpenApiTypes.OBJECT,
        summary="Other truck messages (health, payload, production state, ...), paged",
    )
    def get(self, request: Request, pk: str) -> Response:
        truck = self.truck(pk)
        params = query_parameters(request, EventPageParameters)
        try:
            page, cursor = queries.events_page(
                truck.id,
                params["from"],
                params["to"],
                params.get("cursor"),
                params["limit"],
                params.get("message"),
            )
        except queries.QueryError as error:
            raise _refused_cursor(error) from None
        rows = [
            {
                "message": event.message_name,
                "sent_at": event.sent_at,
                "received_at": event.received_at,
                "sequence": _sequence(event.sequence),
                "late": event.late,
                "body": event.body,
            }
            for event in page
        ]
        return _page(request, rows, cursor)


class SeriesParameters(TimeRangeParameters):
    step = serializers.IntegerField(
        min_value=1, max_value=60, default=2, help_text="Seconds per point (default 2)"
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        span = attrs["to"] - attrs["from"]
        if span > queries.MAX_SERIES_RANGE:
            raise serializers.ValidationError({"from": "At most one hour before 'to'."})
        if span / timedelta(seconds=attrs["step"]) > queries.MAX_SERIES_POINTS:
            raise serializers.ValidationError(
                {"step": f"At most {queries.MAX_SERIES_POINTS} points: choose a longer step."}
            )
        return attrs


class SpeedPointSerializer(serializers.Serializer):
    at = serializers.DateTimeField(help_text="Start of the step")
    speedKmh = serializers.FloatField(allow_null=True, help_text="Mean over the step")


class HealthPointSerializer(serializers.Serializer):
    at = serializers.CharField(help_text="The reading's envelope Timestamp (ISO 8601, UTC)")
    coolantC = serializers.FloatField(allow_null=True)
    brakeFrontC = serializers.FloatField(allow_null=True)
    brakeRearC = serializers.FloatField(allow_null=True)
    tyresKpa = serializers.DictField(
        child=serializers.IntegerField(allow_null=True),
        help_text='Pressure by TirePosition ("1.1", "1.2", ...); null: sensor unavailable',
    )


class TruckSeriesSerializer(serializers.Serializer):
    """The same field names as the live feed's ``positions`` and ``health`` events."""

    step = serializers.IntegerField()
    speed = SpeedPointSerializer(many=True)
    health = HealthPointSerializer(many=True, help_text="The newest reading of each step")


class TruckSeriesView(_TruckView):
    @extend_schema(
        parameters=[SeriesParameters],
        responses=TruckSeriesSerializer,
        summary="A truck's recent speed and health readings (coolant, brakes, tyres) per step",
    )
    def get(self, request: Request, pk: str) -> Response:
        """At most an hour, at most 3600 steps: the machine detail's charts before the live
        feed (events ``positions`` and ``health``) takes over."""
        truck = self.truck(pk)
        params = query_parameters(request, SeriesParameters)
        step = params["step"]
        span = queries.SeriesRange(params["from"], params["to"], timedelta(seconds=step))
        try:
            series = queries.truck_series(truck.id, span)
        except queries.QueryError as error:
            raise _refused(error) from None
        return Response(TruckSeriesSerializer({"step": step, **series}).data)


class IngestReplicaSerializer(serializers.ModelSerializer):
    state = serializers.SerializerMethodField(help_text="live, silent or retired")
    seconds_since_seen = serializers.SerializerMethodField()

    class Meta:
        model = IngestReplica
        fields = [
            "name",
            "client_id",
            "state",
            "host",
            "started_at",
            "last_seen_at",
            "seconds_since_seen",
            "stored",
            "retired_at",
            "drained",
            "drain_lag_p50_s",
            "drain_lag_max_s",
        ]

    def get_state(self, replica: IngestReplica) -> str:
        return replicas.state(replica)

    def get_seconds_since_seen(self, replica: IngestReplica) -> float:
        return round((timezone.now() - replica.last_seen_at).total_seconds(), 1)


class IngestReplicaListView(generics.ListAPIView):
    """The known ingest replicas and the age of each one's last heartbeat. A silent one's broker
    session is collecting messages nobody stores: restart it, or retire it for good with
    ``manage.py ingest --retire NAME``. ``?state=live|silent|retired``."""

    queryset = IngestReplica.objects.all()
    serializer_class = IngestReplicaSerializer
    filterset_class = IngestReplicaFilter


LOOPBACK = {"127.0.0.1", "::1"}


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics of this web process (the REST fallback's counters), for a scraper on
    the same host or a staff user; ingest replicas serve their own on INGEST_METRICS_PORT."""
    if request.META.get("REMOTE_ADDR") not in LOOPBACK and not request.user.is_staff:
        return HttpResponse("metrics are served to loopback and staff only\n", status=403)
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)


class AvailabilityParameters(TimeRangeParameters):
    longest = timedelta(days=31)
    # A series of at most this many points: a month in hours, a shift in minutes.
    most_buckets = 1000
    bucket = serializers.IntegerField(
        min_value=60,
        max_value=86_400,
        required=False,
        help_text="Seconds per point of the fleet's series (none: no series)",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        bucket = attrs.get("bucket")
        if bucket and (attrs["to"] - attrs["from"]).total_seconds() / bucket > self.most_buckets:
            raise serializers.ValidationError(
                {"bucket": f"At most {self.most_buckets} buckets in the range: make it longer."}
            )
        return attrs


class SiteAvailabilityView(_TruckView):
    @extend_schema(
        parameters=[AvailabilityParameters],
        responses=OpenApiTypes.OBJECT,
        summary="Fleet and per-machine availability and utilisation over a time range",
    )
    def get(self, request: Request, site_id: str) -> Response:
        """Seconds operating, on standby, offline and down (in maintenance) per haul truck of
        the site, from its status history (docs/operations.md, "Status history"); with
        ``bucket``, the fleet's availability and utilisation in a series over the range."""
        site = visible_or_404(Site.objects, request.user, "", pk=site_id)
        params = query_parameters(request, AvailabilityParameters)
        trucks = list(
            Equipment.objects.filter(site=site, kind=Equipment.Kind.HAUL_TRUCK)
            .exclude(status=Equipment.Status.RETIRED)
            .order_by("name")
        )
        uses = machine_status.time_use([t.pk for t in trucks], params["from"], params["to"])
        fleet = machine_status.TimeUse()
        for use in uses.values():
            fleet.add(use)
        body = {
            "from": params["from"],
            "to": params["to"],
            "fleet": fleet.as_dict(),
            "machines": [
                {"equipment": str(t.pk), "name": t.name, **uses[t.pk].as_dict()} for t in trucks
            ],
        }
        if params.get("bucket"):
            body["series"] = machine_status.fleet_series(
                [t.pk for t in trucks],
                params["from"],
                params["to"],
                timedelta(seconds=params["bucket"]),
            )
        return Response(body)


class ProductionParameters(TimeRangeParameters):
    longest = timedelta(days=31)
    bucket = serializers.IntegerField(
        min_value=60, max_value=86_400, default=3600, help_text="Seconds per point of the series"
    )


class SiteProductionView(_TruckView):
    @extend_schema(
        parameters=[ProductionParameters],
        responses=OpenApiTypes.OBJECT,
        summary="Tonnes per hour, cycle-time breakdown and each loading unit's share and queue",
    )
    def get(self, request: Request, site_id: str) -> Response:
        """From the site's haul cycles that ended in the range (fleet/telemetry/production.py)."""
        site = visible_or_404(Site.objects, request.user, "", pk=site_id)
        params = query_parameters(request, ProductionParameters)
        return Response(
            production.production(
                site.pk, params["from"], params["to"], timedelta(seconds=params["bucket"])
            )
        )
