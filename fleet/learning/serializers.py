"""The model registry over REST: versions, the aliases pointing at them, and the audit.

Everywhere, ``version`` is a version's number within its name (as in ``fault-head@3``) and
``*_id`` its primary key, the id the version routes take."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from fleet.learning.models import AliasChange, ModelAlias, ModelVersion

USERNAME = "The user's username; null when not a signed-in user (a script, say)."


@extend_schema_field(OpenApiTypes.STR)
class AliasNameField(serializers.SlugRelatedField):
    """An alias by its name. Typed as a plain string in the schema: the alias enum is already
    named once (by the ``alias`` fields) and would otherwise be named twice."""


class ModelVersionSerializer(serializers.ModelSerializer):
    parent_id = serializers.PrimaryKeyRelatedField(
        source="parent", read_only=True, allow_null=True, help_text="null for a root (no lineage)"
    )
    label = serializers.CharField(source="__str__", read_only=True, help_text='"name@version"')
    registered_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text=USERNAME
    )
    aliases = AliasNameField(
        slug_field="alias",
        many=True,
        read_only=True,
        help_text="The aliases of this name that point at this version now.",
    )

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "version",
            "label",
            "kind",
            "level",
            "parent_id",
            "sha256",
            "config",
            "metrics",
            "data_hash",
            "lineage",
            "created_at",
            "registered_at",
            "registered_by",
            "aliases",
        ]
        read_only_fields = fields


class ModelAliasSerializer(serializers.ModelSerializer):
    version_id = serializers.PrimaryKeyRelatedField(source="version", read_only=True)
    version = serializers.IntegerField(source="version.version", read_only=True)
    label = serializers.CharField(source="version.__str__", read_only=True)
    since = serializers.DateTimeField(source="updated_at", read_only=True)
    by = serializers.SlugRelatedField(
        source="updated_by",
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text=USERNAME,
    )

    class Meta:
        model = ModelAlias
        fields = ["name", "alias", "version_id", "version", "label", "since", "by"]
        read_only_fields = fields


class AliasChangeSerializer(serializers.ModelSerializer):
    from_version_id = serializers.PrimaryKeyRelatedField(
        source="from_version", read_only=True, allow_null=True, help_text="null: a first promotion"
    )
    from_version = serializers.IntegerField(
        source="from_version.version", read_only=True, allow_null=True
    )
    to_version_id = serializers.PrimaryKeyRelatedField(source="to_version", read_only=True)
    to_version = serializers.IntegerField(source="to_version.version", read_only=True)
    by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text=USERNAME
    )

    class Meta:
        model = AliasChange
        fields = [
            "id",
            "at",
            "name",
            "alias",
            "action",
            "from_version_id",
            "from_version",
            "to_version_id",
            "to_version",
            "by",
            "rolled_back",
            "figures",
        ]
        read_only_fields = fields


class AliasRequestSerializer(serializers.Serializer):
    """Which alias to move; always named, since moving the champion changes what is served."""

    alias = serializers.ChoiceField(choices=ModelAlias.Alias.choices)


class PromoteRequestSerializer(AliasRequestSerializer):
    hours = serializers.FloatField(
        required=False,
        min_value=0.01,
        max_value=24,
        help_text="The live figures shown and audited: over the last hours (default: since the "
        "challenger took its alias)",
    )


class PredictionSerializer(serializers.Serializer):
    """One prediction as the live feed's ``prediction`` event sends it
    (``fleet.learning.tasks.live_event``)."""

    equipmentId = serializers.UUIDField()
    model = serializers.CharField(help_text='The head: "fault", "eta", "trajectory", "payload"')
    modelId = serializers.CharField(help_text='The version that answered: "fault@3"')
    windowEnd = serializers.DateTimeField(help_text="Time of the input window's last sample")
    outputs = serializers.DictField(
        help_text="fault: probabilities by class, top_channel, anomaly_score, anomalous; "
        "eta: p10_s, p50_s, p90_s; trajectory: horizons_s, positions [[lon, lat], ...]; "
        "payload: tonnes"
    )
    queueMs = serializers.FloatField(allow_null=True)
    computeMs = serializers.FloatField(allow_null=True)


class VersionFiguresSerializer(serializers.Serializer):
    """One version's live figures (``fleet.learning.shadow``); the head's own figures beside
    these common ones (fault: positive_rate, alarms, alarms_per_truck_hour, labelled_faults,
    precision, recall, f1; eta: mae_s, coverage; payload: mae_t; trajectory: ade_m; the
    challenger: agreement with the champion)."""

    version = serializers.CharField(help_text='"fault@4"')
    version_id = serializers.IntegerField()
    windows = serializers.IntegerField()
    trucks = serializers.IntegerField()
    compute_ms_p50 = serializers.FloatField(required=False, allow_null=True)
    compute_ms_p95 = serializers.FloatField(required=False, allow_null=True)
    queue_ms_p50 = serializers.FloatField(required=False, allow_null=True)
    age_s_p50 = serializers.FloatField(required=False, allow_null=True)
    age_s_p95 = serializers.FloatField(required=False, allow_null=True)
    agreement = serializers.DictField(required=False)


class SideBySideSerializer(serializers.Serializer):
    name = serializers.CharField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    champion = VersionFiguresSerializer(allow_null=True)
    challenger = VersionFiguresSerializer(allow_null=True)


class PromotionSerializer(ModelAliasSerializer):
    """The alias as moved, and the live figures the decision was made on (also audited)."""

    figures = SideBySideSerializer(read_only=True)

    class Meta(ModelAliasSerializer.Meta):
        fields = [*ModelAliasSerializer.Meta.fields, "figures"]
