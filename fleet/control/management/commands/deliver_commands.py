"""``manage.py deliver_commands``: the outbox's delivery process (fleet/control/delivery.py)."""

from __future__ import annotations

import logging
import signal

from django.conf import settings
from django.core.management.base import BaseCommand

from fleet.control.delivery import OutboxDelivery
from fleet.preflight import check_database


class Command(BaseCommand):
    help = "Deliver outbox commands to the trucks over MQTT, retrying until answered or expired."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--client-id", help="Its broker client id; default haulmind-outbox-<host name>."
        )
        parser.add_argument(
            "--sites",
            help="Comma-separated site slugs: deliver only their commands (a process per pit's "
            "broker, MQTT_URL); default DELIVERY_SITES, else every site's.",
        )

    def handle(self, *args, **options) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        check_database()
        sites = options["sites"]
        delivery = OutboxDelivery(
            options["client_id"],
            sites=[s.strip() for s in sites.split(",") if s.strip()]
            if sites
            else settings.DELIVERY_SITES,
        )
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: delivery.stop())
        self.stdout.write(f"outbox delivery {delivery.client_id} running")
        delivery.run()
        self.stdout.write(f"outbox delivery stopped after {delivery.delivered} deliveries")
