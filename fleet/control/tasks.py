from __future__ import annotations

from celery import shared_task

from fleet.control.services import expire_commands


@shared_task(name="control.expire_commands")
def expire_commands_task() -> int:
    return expire_commands()
