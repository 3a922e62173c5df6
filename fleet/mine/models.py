"""The mine map: sites, road-network revisions and their ways, policy zones, destinations.

Geometry is stored in WGS84 (SRID 4326), as on the wire. Lengths, areas and grades are computed
in the site's own projected metric CRS (its UTM zone, ``Site.utm_srid``), never in degrees.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib.gis.db import models
from django.contrib.gis.geos import GEOSGeometry
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db.models import Q

from fleet.audit import AuditRecord


def validate_utm_srid(value: int) -> None:
    # EPSG 326xx are WGS84 / UTM north zones, 327xx south zones (1..60).
    if not (32601 <= value <= 32660 or 32701 <= value <= 32760):
        raise ValidationError(f"{value} is not a WGS84 UTM zone (EPSG 32601-32660 or 32701-32760)")


class Site(models.Model):
    """One mine. Everything on the map belongs to exactly one site. A site with history (its
    machines, its zones) is deactivated, never deleted."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(
        max_length=40, unique=True, help_text="Used in MQTT topics: iso23725/v1/{slug}/..."
    )
    utm_srid = models.PositiveIntegerField(
        "UTM zone (EPSG)",
        validators=[validate_utm_srid],
        help_text="The site's projected metric CRS, e.g. 32719 for UTM zone 19 south.",
    )
    boundary = models.PolygonField(srid=4326, help_text="The lease boundary (WGS84).")
    default_speed_kmh = models.FloatField(
        "mapped operating speed (km/h)",
        default=40.0,
        validators=[MinValueValidator(1), MaxValueValidator(120)],
        help_text="Operating speed of a way that sets none; speedLimit percent policies refer to it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    active = models.BooleanField(
        default=True,
        editable=False,
        help_text="A closed site is deactivated (the admin's Deactivate action), not deleted.",
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="sites",
        help_text=(
            "Who sees this site and acts on it, in the API, the dashboard and its live feed, "
            "within their role. Superusers see every site."
        ),
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def to_metric(self, geometry: GEOSGeometry) -> GEOSGeometry:
        """The geometry in the site's UTM zone (metres)."""
        if geometry.srid is None:
            geometry = GEOSGeometry(geometry.wkt, srid=4326)
        return geometry.transform(self.utm_srid, clone=True)

    @property
    def active_network(self) -> RoadNetwork | None:
        return self.road_networks.filter(status=RoadNetwork.Status.ACTIVE).first()


class RoadNetwork(models.Model):
    """One revision of a site's haul roads. Pit roads change every shift; a WayId is stable
    within a revision, and recorded history names the revision it was recorded under."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="road_networks")
    revision = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["site", "-revision"]
        constraints = [
            models.UniqueConstraint(fields=["site", "revision"], name="unique_revision_per_site"),
            models.UniqueConstraint(
                fields=["site"],
                condition=Q(status="active"),
                name="one_active_network_per_site",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.site} roads r{self.revision} ({self.get_status_display()})"


class RoadNode(models.Model):
    """A junction or end of ways; the vertices of the routing graph."""

    network = models.ForeignKey(RoadNetwork, on_delete=models.CASCADE, related_name="nodes")
    node_id = models.PositiveIntegerField()
    location = models.PointField(srid=4326)
    elevation_m = models.FloatField()

    class Meta:
        ordering = ["network", "node_id"]
        constraints = [
            models.UniqueConstraint(fields=["network", "node_id"], name="unique_node_per_network")
        ]

    def __str__(self) -> str:
        return f"node {self.node_id} (r{self.network.revision})"


class Way(models.Model):
    """A haul-road segment between two nodes, named by its integer ISO 23725 WayId."""

    network = models.ForeignKey(RoadNetwork, on_delete=models.CASCADE, related_name="ways")
    way_id = models.PositiveIntegerField("WayId")
    name = models.CharField(max_length=120, blank=True)
    geometry = models.LineStringField(srid=4326)
    elevations_m = ArrayField(
        models.FloatField(), help_text="Elevation (m) of each vertex of the geometry, in order."
    )
    start_node = models.ForeignKey(RoadNode, on_delete=models.PROTECT, related_name="ways_out")
    end_node = models.ForeignKey(RoadNode, on_delete=models.PROTECT, related_name="ways_in")
    operating_speed_kmh = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(120)],
        help_text="Mapped operating speed; empty means the site default.",
    )
    one_lane = models.BooleanField(
        default=False, help_text="Trucks cannot pass each other; entry is by traffic permission."
    )
    length_m = models.FloatField(editable=False, default=0.0)
    grade_pct = models.FloatField(
        editable=False, default=0.0, help_text="Net grade start to end, % (positive = uphill)."
    )
    max_grade_pct = models.FloatField(
        editable=False, default=0.0, help_text="Steepest vertex-to-vertex grade, % (absolute)."
    )

    class Meta:
        ordering = ["network", "way_id"]
        constraints = [
            models.UniqueConstraint(fields=["network", "way_id"], name="unique_wayid_per_network")
        ]

    def __str__(self) -> str:
        return f"way {self.way_id} {self.name}".strip()

    def clean(self) -> None:
        if self.geometry is None or self.elevations_m is None:
            return
        if len(self.elevations_m) != len(self.geometry.coords):
            raise ValidationError(
                {
                    "elevations_m": f"{len(self.elevations_m)} elevations for "
                    f"{len(self.geometry.coords)} vertices; give one per vertex"
                }
            )

    def save(self, *args, **kwargs) -> None:
        from fleet.mine.geometry import way_profile

        self.length_m, self.grade_pct, self.max_grade_pct = way_profile(
            self.network.site, self.geometry, self.elevations_m
        )
        super().save(*args, **kwargs)

    @property
    def speed_kmh(self) -> float:
        return self.operating_speed_kmh or self.network.site.default_speed_kmh


class PolicyZone(models.Model):
    """An ISO 23725 policy zone. Never edited in place: a change is a new zone that replaces
    the old one, which goes Pending Delete and then Deleted."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACTIVE = "active", "Active"
        PENDING_DELETE = "pending_delete", "Pending delete"
        DELETED = "deleted", "Deleted"

    id = models.UUIDField("ZoneId", primary_key=True, default=uuid.uuid4, editable=False)
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="zones")
    name = models.CharField(max_length=120)
    geometry = models.PolygonField(srid=4326)
    policies = models.JSONField(
        help_text='ISO 23725 policies, e.g. {"speedLimit": {"type": "absolute", "value": 8.3}}'
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    replaces = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaced_by"
    )
    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    delete_requested_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(
        max_length=300,
        blank=True,
        help_text="Why it was activated, as the operator who drew it said (sent with it).",
    )
    delete_reason = models.CharField(
        max_length=300,
        blank=True,
        help_text="Why its deletion was requested, as the operator said (sent with it).",
    )
    unanswered = models.JSONField(
        default=list,
        blank=True,
        help_text="Machines that had not confirmed dropping the zone when its deletion deadline "
        "passed (they are re-synchronised when they next report or connect).",
    )
    area_m2 = models.FloatField(editable=False, default=0.0)

    class Meta:
        ordering = ["site", "name"]
        indexes = [models.Index(fields=["site", "status"])]
        permissions = [("activate_policyzone", "Can activate and deactivate policy zones")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_status_display()})"

    def clean(self) -> None:
        from fleet.mine.geometry import zone_geometry_errors
        from fleet.mine.policies import validate_policies

        errors: dict[str, list[str]] = {}
        if self.geometry is not None:
            problems = zone_geometry_errors(self.geometry, self.site if self.site_id else None)
            if problems:
                errors["geometry"] = problems
        try:
            self.policies = validate_policies(self.policies)
        except ValidationError as exc:
            errors["policies"] = exc.messages
        if errors:
            raise ValidationError(errors)

    def save(self, *args, **kwargs) -> None:
        self.area_m2 = self.site.to_metric(self.geometry).area
        super().save(*args, **kwargs)

    def to_feature(self) -> dict:
        """The zone in the ISO 23725 GeoJSON Feature form, as sent to trucks."""
        return {
            "type": "Feature",
            "id": str(self.id),
            "geometry": {"type": "Polygon", "coordinates": self.geometry.coords},
            "properties": {"name": self.name, "policies": self.policies},
        }


class ZoneResponse(AuditRecord):
    """A truck's answer to a zone activation or deactivation request (apart from the zone's
    own lifecycle: a zone can be Active while one truck has rejected it). An audit record."""

    audit_time_field = "responded_at"

    class Request(models.TextChoices):
        ACTIVATE = "activate", "Activate"
        DEACTIVATE = "deactivate", "Deactivate"

    zone = models.ForeignKey(PolicyZone, on_delete=models.PROTECT, related_name="responses")
    equipment = models.ForeignKey(
        "vehicles.Equipment", on_delete=models.PROTECT, related_name="zone_responses"
    )
    request = models.CharField(max_length=10, choices=Request.choices)
    accepted = models.BooleanField()
    reason = models.CharField(max_length=200, blank=True)
    responded_at = models.DateTimeField()

    class Meta(AuditRecord.Meta):
        ordering = ["-responded_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["zone", "equipment", "request"], name="one_response_per_request"
            )
        ]

    def __str__(self) -> str:
        verdict = "accepted" if self.accepted else "rejected"
        return f"{self.equipment} {verdict} {self.request} of {self.zone.name}"

    @classmethod
    def archivable(cls, cutoff: Any) -> models.QuerySet:
        # A zone being deleted waits for its trucks' answers (fleet.control.zones.complete_zone_deletions).
        return super().archivable(cutoff).exclude(zone__status=PolicyZone.Status.PENDING_DELETE)


class LoadingUnit(models.Model):
    """Where trucks are loaded: a shovel or excavator and its loading point in the pit."""

    class Material(models.TextChoices):
        ORE = "ore", "Ore"
        WASTE = "waste", "Waste"

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="loading_units")
    equipment = models.OneToOneField(
        "vehicles.Equipment",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="loading_point",
        limit_choices_to={"kind": "loading_unit"},
    )
    name = models.CharField(max_length=80)
    location = models.PointField(srid=4326)
    elevation_m = models.FloatField()
    loading_rate_tph = models.FloatField(
        "loading rate (t/h)", validators=[MinValueValidator(1), MaxValueValidator(20_000)]
    )
    material = models.CharField(max_length=10, choices=Material.choices)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["site", "name"]
        constraints = [
            models.UniqueConstraint(fields=["site", "name"], name="unique_loading_unit_name")
        ]

    def __str__(self) -> str:
        return self.name


class DumpPoint(models.Model):
    """Where trucks tip: a crusher, a waste dump or a stockpile."""

    class Kind(models.TextChoices):
        CRUSHER = "crusher", "Crusher"
        WASTE_DUMP = "waste_dump", "Waste dump"
        STOCKPILE = "stockpile", "Stockpile"

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="dump_points")
    name = models.CharField(max_length=80)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    location = models.PointField(srid=4326)
    elevation_m = models.FloatField()
    capacity_tph = models.FloatField(
        "capacity (t/h)", validators=[MinValueValidator(1), MaxValueValidator(50_000)]
    )
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["site", "name"]
        constraints = [models.UniqueConstraint(fields=["site", "name"], name="unique_dump_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def accepts(self) -> str:
        return (
            LoadingUnit.Material.WASTE
            if self.kind == self.Kind.WASTE_DUMP
            else LoadingUnit.Material.ORE
        )


class Area(models.Model):
    """A named area at the rim or in the pit: park-up, workshop, fuel bay."""

    class Kind(models.TextChoices):
        PARK = "park", "Park"
        WORKSHOP = "workshop", "Workshop"
        FUEL = "fuel", "Fuel bay"

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="areas")
    name = models.CharField(max_length=80)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    geometry = models.PolygonField(srid=4326)

    class Meta:
        ordering = ["site", "name"]
        constraints = [models.UniqueConstraint(fields=["site", "name"], name="unique_area_name")]

    def __str__(self) -> str:
        return self.name
