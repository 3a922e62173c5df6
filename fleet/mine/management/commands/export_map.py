"""Export a site's map as one GeoJSON FeatureCollection (docs/map-format.md)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fleet.mine.mapfile import export_site_map
from fleet.mine.models import RoadNetwork, Site


class Command(BaseCommand):
    help = "Print a site's map file to stdout."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("site", help="the site's slug")
        parser.add_argument("--revision", type=int, help="road-network revision (default: active)")

    def handle(self, *args: Any, **options: Any) -> None:
        site = Site.objects.filter(slug=options["site"]).first()
        if site is None:
            raise CommandError(f"no site with slug {options['site']!r}")
        network = None
        if options["revision"] is not None:
            network = RoadNetwork.objects.filter(site=site, revision=options["revision"]).first()
            if network is None:
                raise CommandError(f"site {site.slug} has no road revision {options['revision']}")
        self.stdout.write(json.dumps(export_site_map(site, network), indent=1))
