"""``manage.py import_fault_labels PATH [--site SLUG]``: the simulator's fault-label log as the
workshop's records (marked as imported from the simulator)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fleet.mine.models import Site
from fleet.vehicles.services import import_fault_labels


class Command(BaseCommand):
    help = (
        "Import the simulator's ground-truth fault labels (JSONL written by simulate --labels) "
        "as workshop records of source 'simulator': the demo mine's stand-in for a workshop, "
        "the fault labels train_models --site learns from. Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--site", metavar="SLUG", help="only this site's machines")

    def handle(self, *args, **options) -> None:
        path: Path = options["path"]
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        site_id = None
        if options["site"]:
            site = Site.objects.filter(slug=options["site"]).first()
            if site is None:
                raise CommandError(f"no site {options['site']!r}")
            site_id = site.pk
        with path.open() as lines:
            done = import_fault_labels(lines, site_id=site_id)
        self.stdout.write(
            f"workshop records from {path}: {done.created} new, {done.updated} updated, "
            f"{done.skipped} skipped (unknown machine or no time)"
        )
