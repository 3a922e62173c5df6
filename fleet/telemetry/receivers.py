"""Telemetry listens to the equipment register: a machine sent to the workshop, or back in
service, is a change in its status history (``fleet.telemetry.status``)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from fleet.telemetry import status
from fleet.vehicles.models import Equipment


@receiver(pre_save, sender=Equipment, dispatch_uid="telemetry-register-before")
def remember_register_status(sender: Any, instance: Equipment, raw: bool, **kwargs: Any) -> None:
    if raw or instance._state.adding:
        return
    instance._register_status_before = (  # type: ignore[attr-defined]
        Equipment.objects.filter(pk=instance.pk).values_list("status", flat=True).first()
    )


@receiver(post_save, sender=Equipment, dispatch_uid="telemetry-register-after")
def record_register_change(sender: Any, instance: Equipment, raw: bool, **kwargs: Any) -> None:
    before = getattr(instance, "_register_status_before", None)
    if raw or before is None:
        return
    was, now = (
        before == Equipment.Status.MAINTENANCE,
        instance.status == Equipment.Status.MAINTENANCE,
    )
    if was != now:  # written with the register's change, in its transaction
        status.record_register(instance.pk, now)
