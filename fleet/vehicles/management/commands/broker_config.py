"""Write the project's Mosquitto configuration, password file and ACL (var/mosquitto)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from fleet.vehicles.broker import reload_broker, write_broker_files


class Command(BaseCommand):
    help = "Generate var/mosquitto/{mosquitto.conf,passwd,acl} from the credential table and reload a running broker."

    def handle(self, *args: Any, **options: Any) -> None:
        paths = write_broker_files()
        reloaded = reload_broker(paths)
        state = "reloaded the running broker" if reloaded else "broker not running"
        self.stdout.write(
            f"wrote {paths.config}, {paths.passwords.name}, {paths.acl.name}; {state}"
        )
