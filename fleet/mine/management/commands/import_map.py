"""Import a mine map file (docs/map-format.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fleet.mine.mapfile import MapFileError, import_site_map


class Command(BaseCommand):
    help = "Create or update a site from a GeoJSON map file; all or nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--pending",
            action="store_true",
            help="leave new zones Pending instead of activating them",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            collection = json.loads(options["file"].read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"{options['file']}: {exc}") from None
        try:
            report = import_site_map(collection, activate=not options["pending"])
        except MapFileError as exc:
            raise CommandError("map refused:\n  " + "\n  ".join(exc.messages)) from None
        network = report.network
        self.stdout.write(
            f"{'created' if report.created_site else 'updated'} site {report.site.slug}; roads "
            + (
                f"r{network.revision} ({'new' if report.created_network else 'unchanged'})"
                if network
                else "none"
            )
            + f"; zones {report.zones_created} new, {report.zones_unchanged} unchanged; "
            f"{report.destinations} destinations, {report.areas} areas"
        )
