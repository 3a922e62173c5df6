"""Build or refresh the demo mine, Cerro Rojo (fleet/mine/demo.py); safe to run again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from fleet.mine.demo import (
    CENTRE_LAT,
    CENTRE_LON,
    bench_contours,
    create_demo_mine,
    create_large_mine,
    plot_site_map,
)
from fleet.mine.mapfile import MapFileError, export_site_map
from fleet.mine.models import Site


class Command(BaseCommand):
    help = (
        "Build the demo open pit Cerro Rojo through the map importer, with N active haul trucks "
        "(surplus trucks are retired, not deleted). Running it again changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--trucks", type=int, default=100, help="active haul trucks (default 100)"
        )
        parser.add_argument(
            "--large",
            action="store_true",
            help="build the generated large mine Cerro Grande instead (the dispatch benchmark)",
        )
        parser.add_argument("--pits", type=int, default=5, help="--large: pits (default 5)")
        parser.add_argument(
            "--loading-units", type=int, default=50, help="--large: loading units (default 50)"
        )
        parser.add_argument(
            "--plot", type=Path, metavar="PNG", help="also draw the imported map to this PNG"
        )
        parser.add_argument(
            "--credentials",
            type=Path,
            metavar="OUT",
            help="also issue credentials to trucks that have none (provision_equipment "
            "--missing-only); the secrets go to OUT",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["trucks"] < 0:
            raise CommandError("--trucks cannot be negative")
        try:
            if options["large"]:
                summary = create_large_mine(
                    options["trucks"], options["pits"], options["loading_units"]
                )
            else:
                summary = create_demo_mine(options["trucks"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        except MapFileError as exc:
            raise CommandError("demo map refused:\n  " + "\n  ".join(exc.messages)) from None
        self.stdout.write(str(summary))
        if options["credentials"]:
            # Secrets are written once, to a file only the owner can read: that command's job.
            call_command(
                "provision_equipment",
                "--site",
                summary.slug,
                "--missing-only",
                "--out",
                str(options["credentials"]),
                stdout=self.stdout,
            )
        if options["plot"]:
            site = Site.objects.get(slug=summary.slug)
            path = plot_site_map(
                export_site_map(site),
                options["plot"],
                contours=bench_contours(),
                centre=(CENTRE_LON, CENTRE_LAT),
            )
            self.stdout.write(f"map drawn to {path}")
