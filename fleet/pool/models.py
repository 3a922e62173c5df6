"""The pool's nodes live in Redis, not here. The database keeps the audit of drains, and a proxy
that gives the admin its "Nodes" page and the drain permission a home."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from fleet.audit import AuditRecord

DRAIN_PERMISSION = "pool.drain_node"


class DrainChange(AuditRecord):
    """One drain or undrain of a node: who, when, why. Written with the change in Redis. An
    audit record."""

    audit_time_field = "at"

    node = models.CharField(max_length=200)
    draining = models.BooleanField(help_text="True: drained; False: put back in service")
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    by_name = models.CharField(max_length=150, help_text="The username at the time")
    reason = models.CharField(max_length=500, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta(AuditRecord.Meta):
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["node", "-at"], name="pool_drain_node_recent")]

    def __str__(self) -> str:
        verb = "drained" if self.draining else "undrained"
        return f"{self.node} {verb} by {self.by_name}"


class Node(DrainChange):
    """The admin's handle on the live pool (its changelist is the pool page) and the owner of
    the drain permission. It has no rows of its own: nodes are the heartbeats in Redis."""

    class Meta:
        proxy = True
        verbose_name = "node"
        verbose_name_plural = "nodes"
        permissions = [("drain_node", "Can drain and undrain inference nodes")]


class UtilisationSample(models.Model):
    """One slice's (and, where it serves one, one replica's) figures at one sampling minute:
    the pool's utilisation over time (``fleet.pool.services.sample_utilisation``), kept for
    ``POOL_SAMPLE_RETENTION_DAYS``. Measurements, not an audit: old rows are deleted."""

    at = models.DateTimeField(db_index=True)
    node = models.CharField(max_length=200)
    slice_name = models.CharField(max_length=64)
    device = models.CharField(max_length=32, blank=True)
    busy = models.FloatField(null=True, help_text="The slice's busy fraction as it reported it.")
    deployment = models.CharField(max_length=120, blank=True, help_text="Empty: no replica.")
    model_id = models.CharField(max_length=120, blank=True)
    served_per_s = models.FloatField(null=True)
    mean_batch_rows = models.FloatField(null=True)
    latency_p50_ms = models.FloatField(null=True)
    latency_p99_ms = models.FloatField(null=True)
    queue_requests = models.IntegerField(null=True)

    class Meta:
        ordering = ["at", "node", "slice_name", "deployment"]
        indexes = [models.Index(fields=["deployment", "at"], name="pool_sample_deployment_at")]

    def __str__(self) -> str:
        return f"{self.node}/{self.slice_name} {self.deployment or '-'} at {self.at:%H:%M}"
