"""Write the project's Mosquitto configuration and its logins' initial state (var/mosquitto), and
bring a running broker's logins to the credential table's."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from fleet.vehicles.broker import broker_running, write_broker_files
from fleet.vehicles.logins import BrokerAdminError, reconcile_logins


class Command(BaseCommand):
    help = (
        "Generate var/mosquitto/{mosquitto.conf,dynamic-security.json} from the credential table "
        "and reconcile the logins of a running broker."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        paths = write_broker_files()
        wrote = f"wrote {paths.config}, {paths.dynsec.name}"
        if not settings.MQTT_MANAGE_LOGINS:
            self.stdout.write(f"{wrote}; MQTT_MANAGE_LOGINS is off: logins left to the broker")
            return
        external = bool(os.environ.get("MQTT_URL"))  # not the project's own broker
        if not external and not broker_running(paths):
            self.stdout.write(f"{wrote}; broker not running (it loads them when it starts)")
            return
        try:
            report = reconcile_logins()
        except BrokerAdminError as exc:
            self.stderr.write(f"{wrote}; the broker's logins were not reconciled: {exc}")
            return
        self.stdout.write(f"{wrote}; broker reconciled: {report.summary()}")
