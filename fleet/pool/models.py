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
