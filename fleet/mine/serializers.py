"""REST shapes of the mine map. Geometry is GeoJSON in WGS84."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings
from rest_framework_gis.fields import GeometryField
from rest_framework_gis.serializers import GeoFeatureModelSerializer

from fleet.mine import services
from fleet.mine.models import Area, DumpPoint, LoadingUnit, PolicyZone, RoadNetwork, Site, Way


class SiteSerializer(GeoFeatureModelSerializer):
    class Meta:
        model = Site
        geo_field = "boundary"
        fields = ["id", "name", "slug", "utm_srid", "default_speed_kmh", "created_at"]


class RoadNetworkSerializer(serializers.ModelSerializer):
    way_count = serializers.IntegerField(source="ways.count", read_only=True)

    class Meta:
        model = RoadNetwork
        fields = [
            "id",
            "site",
            "revision",
            "status",
            "note",
            "created_at",
            "activated_at",
            "way_count",
        ]


class WaySerializer(GeoFeatureModelSerializer):
    start_node = serializers.IntegerField(source="start_node.node_id")
    end_node = serializers.IntegerField(source="end_node.node_id")
    revision = serializers.IntegerField(source="network.revision")

    class Meta:
        model = Way
        geo_field = "geometry"
        id_field = "way_id"
        fields = [
            "way_id",
            "name",
            "revision",
            "start_node",
            "end_node",
            "elevations_m",
            "operating_speed_kmh",
            "one_lane",
            "length_m",
            "grade_pct",
            "max_grade_pct",
        ]


class PolicyZoneSerializer(GeoFeatureModelSerializer):
    """Read: the zone with its lifecycle. Create: name, geometry, policies (validated);
    ``replaces`` names the zone this one supersedes."""

    class Meta:
        model = PolicyZone
        geo_field = "geometry"
        fields = [
            "id",
            "site",
            "name",
            "policies",
            "status",
            "replaces",
            "area_m2",
            "reason",
            "delete_reason",
            "created_at",
            "activated_at",
            "delete_requested_at",
            "deleted_at",
        ]
        read_only_fields = [
            "status",
            "reason",
            "delete_reason",
            "area_m2",
            "created_at",
            "activated_at",
            "delete_requested_at",
            "deleted_at",
        ]

    def to_internal_value(self, data: Any) -> Any:
        # rest_framework_gis reads the body as a Feature without checking it is one: anything
        # but an object (or an object whose properties are not one) would be a TypeError.
        if not isinstance(data, Mapping):
            raise serializers.ValidationError(
                {api_settings.NON_FIELD_ERRORS_KEY: ["Expected a GeoJSON Feature (a JSON object)."]}
            )
        if "properties" in data and not isinstance(data["properties"], Mapping):
            raise serializers.ValidationError({"properties": "Expected a JSON object."})
        return super().to_internal_value(data)

    def create(self, validated_data: dict[str, Any]) -> PolicyZone:
        request = self.context.get("request")
        try:
            return services.create_zone(
                site=validated_data["site"],
                name=validated_data["name"],
                geometry=validated_data["geometry"],
                policies=validated_data["policies"],
                replaces=validated_data.get("replaces"),
                created_by=request.user if request else None,
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(
                exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
            ) from None


class ZoneReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300, help_text="Kept on the zone, sent with it")


@extend_schema_field(
    {
        "type": "object",
        "description": "GeoJSON Polygon, WGS84 longitude/latitude",
        "properties": {
            "type": {"type": "string", "enum": ["Polygon"]},
            "coordinates": {
                "type": "array",
                "items": {
                    "type": "array",
                    "items": {"type": "array", "items": {"type": "number"}, "minItems": 2},
                },
            },
        },
        "required": ["type", "coordinates"],
    }
)
class PolygonField(GeometryField):
    """A GeoJSON polygon in a plain serializer (the schema generator resolves geometry only on
    GeoFeatureModelSerializer)."""


class ZoneDrawSerializer(ZoneReasonSerializer):
    """A zone drawn on the control room's map: its polygon in WGS84 (GeoJSON), a name, its
    policies (ISO 23725, validated by the model) and why it is put in force."""

    site = serializers.PrimaryKeyRelatedField(queryset=Site.objects.all())
    name = serializers.CharField(max_length=120)
    geometry = PolygonField(help_text="GeoJSON Polygon, WGS84 longitude/latitude")
    policies = serializers.JSONField()


class LoadingUnitSerializer(GeoFeatureModelSerializer):
    class Meta:
        model = LoadingUnit
        geo_field = "location"
        fields = [
            "id",
            "site",
            "name",
            "equipment",
            "elevation_m",
            "loading_rate_tph",
            "material",
            "active",
        ]


class DumpPointSerializer(GeoFeatureModelSerializer):
    class Meta:
        model = DumpPoint
        geo_field = "location"
        fields = ["id", "site", "name", "kind", "elevation_m", "capacity_tph", "active"]


class AreaSerializer(GeoFeatureModelSerializer):
    class Meta:
        model = Area
        geo_field = "geometry"
        fields = ["id", "site", "name", "kind"]
