"""The model registry (ORM models; "network" in prose means the PyTorch kind).

A ``ModelVersion`` is one checkpoint written by ``models.checkpoint`` (safetensors weights plus a
manifest), registered once its weights match the manifest's sha256 and published into the
artifact store (``models.artifacts``): ``path`` is its reference there, relative to the root. Versions are
immutable. ``ModelAlias`` points a name's "champion" (what workers serve) or "challenger" (what
is compared against it) at one version; every change of an alias is an ``AliasChange`` row:
who, when, from which version to which. Changes go through ``fleet.learning.services``.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

from fleet.audit import AuditRecord


class ModelVersion(models.Model):
    class Kind(models.TextChoices):
        BACKBONE = "backbone"
        HEAD = "head"

    class Level(models.TextChoices):
        L0 = "L0", "L0 base (pretrained on several sites)"
        L1 = "L1", "L1 industry (adapted to a site)"
        L2 = "L2", "L2 task head"

    name = models.CharField(max_length=100, help_text='e.g. "fault-head", "backbone"')
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    level = models.CharField(max_length=4, choices=Level.choices)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,  # lineage is evidence: a parent outlives its children
        related_name="children",
    )
    path = models.CharField(
        max_length=500,
        help_text="The checkpoint in the artifact store, relative to its root: checkpoints/<sha256>.",
    )
    sha256 = models.CharField(max_length=64, help_text="Of the weights file, as verified.")
    config = models.JSONField()
    metrics = models.JSONField(default=dict, blank=True)
    data_hash = models.CharField(max_length=64, blank=True)
    lineage = models.JSONField(default=list, blank=True, help_text="Ancestor ids, root first.")
    created_at = models.DateTimeField(help_text="When the checkpoint was written (manifest).")
    registered_at = models.DateTimeField(default=timezone.now)
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="learning_version_unique")
        ]
        permissions = [("promote_modelversion", "Can promote and roll back model versions")]

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


class ModelAlias(models.Model):
    class Alias(models.TextChoices):
        CHAMPION = "champion"
        CHALLENGER = "challenger"

    name = models.CharField(max_length=100)
    alias = models.CharField(max_length=16, choices=Alias.choices)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["name", "alias"]
        constraints = [
            models.UniqueConstraint(fields=["name", "alias"], name="learning_alias_unique")
        ]
        verbose_name_plural = "model aliases"

    def __str__(self) -> str:
        return f"{self.name}:{self.alias} -> {self.version.version}"


class AliasChange(AuditRecord):
    """The audit trail of aliases: one row per promotion or roll-back. An audit record; the one
    change it allows is a roll-back marking the promotion it undid (``rolled_back``, once)."""

    audit_time_field = "at"
    audit_one_way_flags = ("rolled_back",)

    class Action(models.TextChoices):
        PROMOTE = "promote"
        ROLL_BACK = "roll_back", "roll back"

    name = models.CharField(max_length=100)
    alias = models.CharField(max_length=16, choices=ModelAlias.Alias.choices)
    action = models.CharField(max_length=16, choices=Action.choices)
    from_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now)
    # A promotion undone by a roll-back; the next roll-back looks past it.
    rolled_back = models.BooleanField(default=False)
    # The live figures of the version promoted and of the one it replaced, side by side, as
    # the person promoting saw them (fleet.learning.shadow.side_by_side): what was decided on.
    figures = models.JSONField(default=dict, blank=True)

    class Meta(AuditRecord.Meta):
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["name", "alias", "-at"], name="learning_change_recent")]

    def __str__(self) -> str:
        source = self.from_version.version if self.from_version else "-"
        return f"{self.name}:{self.alias} {self.action} {source} -> {self.to_version.version}"

    @classmethod
    def archivable(cls, cutoff: datetime) -> models.QuerySet:
        # A promotion still in force is what services.roll_back steps back through: kept.
        return super().archivable(cutoff).exclude(action=cls.Action.PROMOTE, rolled_back=False)


class Prediction(models.Model):
    """What a served network said about one truck's window (``fleet.learning.tasks``).

    Written by the inference callback, read by the control room: one row per head per truck
    every ``INFERENCE_INTERVAL_S``. ``outputs`` holds the head's answer already interpreted
    (fault probabilities by name and the decision rule's verdict, ETA quantiles in seconds,
    trajectory positions, payload tonnes); the timings say where the latency went.
    """

    equipment = models.ForeignKey(
        "vehicles.Equipment", on_delete=models.PROTECT, related_name="predictions"
    )
    model_name = models.CharField(max_length=100, help_text='The head: "fault", "eta", ...')
    model_id = models.CharField(max_length=120, help_text='The version that answered: "fault@3".')
    created_at = models.DateTimeField(default=timezone.now)
    window_end = models.DateTimeField(help_text="Time of the window's last sample.")
    outputs = models.JSONField()
    queue_ms = models.FloatField(null=True, help_text="Waiting in the replica's batcher.")
    compute_ms = models.FloatField(null=True, help_text="The batch's forward pass.")
    batch_rows = models.PositiveIntegerField(null=True)
    replica = models.CharField(max_length=200, blank=True, help_text="The slice worker.")

    class Meta:
        ordering = ["-window_end", "-pk"]
        indexes = [
            # The decision rule reads a truck's last few fault predictions at every callback.
            models.Index(
                fields=["equipment", "model_name", "-window_end"], name="learning_pred_recent"
            ),
            # The retention purge (tasks.purge_predictions) takes the oldest rows by this.
            models.Index(fields=["window_end"], name="learning_pred_window_end"),
            # A version's live figures (fleet.learning.shadow) read its rows of a period.
            models.Index(fields=["model_id", "window_end"], name="learning_pred_version"),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} for {self.equipment_id} at {self.window_end:%H:%M:%S}"


class ShadowPrediction(models.Model):
    """What a challenger said about a live window the champion answered too: stored like a
    ``Prediction`` but in a table of its own, so nothing that acts on predictions (control's
    health rules, dispatch's ETAs, collision risk, the truck's live panel) can ever read one.
    Compared with the champion's row of the same truck, head and window end
    (``fleet.learning.shadow``)."""

    equipment = models.ForeignKey(
        "vehicles.Equipment", on_delete=models.PROTECT, related_name="shadow_predictions"
    )
    model_name = models.CharField(max_length=100)
    model_id = models.CharField(max_length=120, help_text='The challenger: "fault@4".')
    created_at = models.DateTimeField(default=timezone.now)
    window_end = models.DateTimeField()
    outputs = models.JSONField()
    queue_ms = models.FloatField(null=True)
    compute_ms = models.FloatField(null=True)
    batch_rows = models.PositiveIntegerField(null=True)
    replica = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-window_end", "-pk"]
        indexes = [
            models.Index(fields=["model_id", "window_end"], name="learning_shadow_version"),
            models.Index(fields=["window_end"], name="learning_shadow_window_end"),
        ]

    def __str__(self) -> str:
        return f"shadow {self.model_id} for {self.equipment_id} at {self.window_end:%H:%M:%S}"
