"""Issue MQTT and REST credentials to autonomous machines; secrets are printed once."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from fleet.vehicles.credentials import issue_credentials
from fleet.vehicles.logins import confirm_logins
from fleet.vehicles.models import Credential, Equipment


class Command(BaseCommand):
    help = (
        "Issue (or rotate) per-machine credentials: an MQTT password tied by the broker ACL to the "
        "machine's own topics, and a REST token. Only hashes are stored; the secrets go to --out."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument(
            "--equipment", nargs="+", metavar="ID_OR_NAME", help="EquipmentIds or fleet numbers"
        )
        who.add_argument("--site", metavar="SLUG", help="every autonomous machine of this site")
        parser.add_argument(
            "--missing-only",
            action="store_true",
            help="skip machines that already have live credentials",
        )
        parser.add_argument(
            "--out", type=Path, required=True, help="JSON file for the secrets (mode 600)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        machines = self._machines(options)
        if options["missing_only"]:
            provisioned = Credential.objects.filter(revoked_at__isnull=True).values("equipment_id")
            machines = machines.exclude(id__in=provisioned)
        with transaction.atomic():
            issued = [issue_credentials(machine) for machine in machines]
        out: Path = options["out"]
        existing = json.loads(out.read_text()) if out.exists() and options["missing_only"] else {}
        existing.update({c.equipment_id: c.__dict__ for c in issued})
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(existing, handle, indent=1)
        self.stdout.write(
            f"issued credentials to {len(issued)} machine(s); secrets in {out}; "
            f"broker: {confirm_logins()}"
        )

    def _machines(self, options: dict[str, Any]):
        queryset = Equipment.objects.filter(autonomous=True).exclude(
            status=Equipment.Status.RETIRED
        )
        if options["site"]:
            return queryset.filter(site__slug=options["site"])
        wanted = options["equipment"]
        ids = [w for w in wanted if _is_uuid(w)]
        found = queryset.filter(id__in=ids) | queryset.filter(name__in=wanted)
        missing = set(wanted) - {str(e.id) for e in found} - {e.name for e in found}
        if missing:
            raise CommandError(f"no autonomous, non-retired machine: {', '.join(sorted(missing))}")
        return found


def _is_uuid(value: str) -> bool:

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
