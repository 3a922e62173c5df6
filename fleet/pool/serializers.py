"""The pool's documents as the API gives them (read-only; the shapes drf-spectacular publishes).
Built from ``fleet.pool.services``' dictionaries; times are ISO 8601 in UTC, durations in ms."""

from __future__ import annotations

from rest_framework import serializers

from fleet.pool.models import DrainChange


class PercentilesSerializer(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)
    mean = serializers.FloatField(allow_null=True)


class ReplicaSerializer(serializers.Serializer):
    """One model replica on a slice and its batcher's figures (counts since the worker
    started; percentiles over its last 10,000 requests)."""

    deployment = serializers.CharField()
    model_id = serializers.CharField()
    engine = serializers.CharField()
    consuming = serializers.BooleanField(help_text="Taking requests from its queue")
    served_per_s = serializers.FloatField(allow_null=True)
    submitted = serializers.IntegerField(allow_null=True)
    completed = serializers.IntegerField(allow_null=True)
    failed = serializers.IntegerField(allow_null=True)
    rejected = serializers.DictField(
        child=serializers.IntegerField(), allow_null=True, help_text="Refusals by reason"
    )
    rejected_total = serializers.IntegerField()
    timed_out = serializers.IntegerField(allow_null=True)
    cancelled = serializers.IntegerField(allow_null=True)
    batches = serializers.IntegerField(allow_null=True)
    rows = serializers.IntegerField(allow_null=True)
    mean_batch_rows = serializers.FloatField(allow_null=True)
    batch_rows = serializers.DictField(
        child=serializers.IntegerField(), allow_null=True, help_text="Batches by rows"
    )
    queue_requests = serializers.IntegerField(allow_null=True)
    queue_rows = serializers.IntegerField(allow_null=True)
    queue_ms = PercentilesSerializer(allow_null=True)
    compute_ms = PercentilesSerializer(allow_null=True)
    latency_ms = PercentilesSerializer(allow_null=True)
    busy_s = serializers.FloatField(allow_null=True)
    utilisation = serializers.FloatField(allow_null=True)
    uptime_s = serializers.FloatField(allow_null=True)


class DeploymentReplicaSerializer(ReplicaSerializer):
    slice = serializers.CharField(help_text="node/slice")


class ShareSerializer(serializers.Serializer):
    configured_share = serializers.FloatField(allow_null=True)
    delivered_share = serializers.FloatField(
        allow_null=True, help_text="Fraction of the whole device used over the last interval"
    )
    of_allocation = serializers.FloatField(
        allow_null=True, help_text="Delivered over configured (above 1: the limit did not hold)"
    )
    busy_s = serializers.FloatField(allow_null=True)
    memory_bytes = serializers.IntegerField(allow_null=True)
    source = serializers.CharField(allow_null=True)


class EnforcementStepSerializer(serializers.Serializer):
    mechanism = serializers.CharField()
    applied = serializers.BooleanField()
    detail = serializers.CharField(allow_blank=True)


class SliceSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="node/slice, as in the plan")
    name = serializers.CharField()
    device = serializers.CharField()
    kind = serializers.CharField()
    live = serializers.BooleanField(help_text="Its worker beats (false: starting or down)")
    pid = serializers.IntegerField(allow_null=True)
    restarts = serializers.IntegerField(allow_null=True)
    compute_share = serializers.FloatField(allow_null=True)
    memory_bytes = serializers.IntegerField(allow_null=True)
    busy = serializers.FloatField(allow_null=True)
    serving = serializers.ListField(child=serializers.CharField())
    assigned = serializers.ListField(
        child=serializers.CharField(), help_text="What the current plan gives it"
    )
    plan_version = serializers.IntegerField(allow_null=True)
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    share = ShareSerializer(allow_null=True)
    enforcement = EnforcementStepSerializer(many=True)
    replicas = ReplicaSerializer(many=True)


class NodeSerializer(serializers.Serializer):
    name = serializers.CharField()
    up = serializers.BooleanField(help_text="The node's agent beats")
    host = serializers.CharField(allow_blank=True)
    pid = serializers.IntegerField(allow_null=True)
    started = serializers.DateTimeField(allow_null=True)
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    draining = serializers.BooleanField()
    drained_by = serializers.CharField(allow_null=True)
    drained_at = serializers.DateTimeField(allow_null=True)
    devices = serializers.ListField(child=serializers.DictField())
    slices = SliceSerializer(many=True)


class RouteSerializer(serializers.Serializer):
    queue = serializers.CharField()
    model = serializers.CharField(allow_blank=True)
    model_id = serializers.CharField(allow_blank=True)
    replicas = serializers.ListField(child=serializers.CharField())


class DeploymentSerializer(serializers.Serializer):
    name = serializers.CharField()
    checkpoint = serializers.CharField()
    model = serializers.CharField(allow_blank=True)
    model_id = serializers.CharField(allow_blank=True)
    memory_bytes = serializers.IntegerField()
    compute_share = serializers.FloatField()
    slo_ms = serializers.FloatField()
    priority = serializers.CharField()
    strategy = serializers.CharField()
    min_replicas = serializers.IntegerField()
    max_replicas = serializers.IntegerField()
    device_kinds = serializers.ListField(child=serializers.CharField())
    batching = serializers.DictField()
    replicas = serializers.ListField(
        child=serializers.CharField(), help_text="Slices the plan gives it (node/slice)"
    )
    serving = serializers.ListField(
        child=serializers.CharField(), help_text="Slices where a replica consumes its queue now"
    )
    route = RouteSerializer(allow_null=True)
    unplaced = serializers.CharField(
        allow_null=True, help_text="Why the plan could not place all its replicas"
    )
    queue_requests = serializers.IntegerField(help_text="Waiting in its replicas' batchers")
    served_per_s = serializers.FloatField()


class PlanSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    at = serializers.DateTimeField()
    decisions = serializers.ListField(child=serializers.CharField(), help_text="Most recent last")
    unplaced = serializers.DictField(child=serializers.CharField())
    assignment = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class PoolSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    plan = PlanSerializer(allow_null=True)
    nodes = NodeSerializer(many=True)
    deployments = DeploymentSerializer(many=True)


class DrainRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class DrainChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = DrainChange
        fields = ["node", "draining", "by_name", "reason", "at"]
