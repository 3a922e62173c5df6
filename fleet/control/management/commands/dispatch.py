"""``manage.py dispatch SITE on|off|status``: the site's dispatcher, from the command line (the
same switch as ``POST /api/v1/sites/{id}/dispatch/``, for scripts such as the demo)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from fleet.control import dispatching
from fleet.control.models import DispatchPlan
from fleet.mine.models import Site


class Command(BaseCommand):
    help = "Switch a site's dispatcher on or off (on plans at once), or show its state."

    def add_arguments(self, parser) -> None:
        parser.add_argument("site", help="The site's slug.")
        parser.add_argument("state", choices=("on", "off", "status"))

    def handle(self, *args, **options) -> None:
        site = Site.objects.filter(slug=options["site"]).first()
        if site is None:
            raise CommandError(f"no site {options['site']!r}")
        if options["state"] != "status":
            dispatching.set_enabled(site, options["state"] == "on")
        on = dispatching.enabled(site)
        plan = DispatchPlan.objects.filter(site=site).first()  # the newest
        latest = f"; latest {plan}" if plan else ""
        self.stdout.write(f"dispatch at {site.slug}: {'on' if on else 'off'}{latest}")
