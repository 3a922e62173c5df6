"""``manage.py ingest``: one ingest replica (see fleet/telemetry/ingest.py). Run more for more
throughput; each needs its own ``--replica`` name (its persistent MQTT session)."""

from __future__ import annotations

import logging
import signal

from django.conf import settings
from django.core.management.base import BaseCommand
from prometheus_client import start_http_server

from fleet.preflight import check_database
from fleet.telemetry.ingest import IngestOptions, IngestRunner, default_client_id


class Command(BaseCommand):
    help = "Ingest truck messages from MQTT into the history (one replica)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--replica", help="Replica name (stable across restarts); default: host name."
        )
        parser.add_argument("--batch-size", type=int, default=settings.INGEST_BATCH_SIZE)
        parser.add_argument(
            "--share-group",
            default="ingest",
            help="Shared-subscription group; replicas of one deployment use the same one.",
        )
        parser.add_argument(
            "--session-expiry",
            type=int,
            default=24 * 3600,
            help="Seconds the broker keeps this replica's session (and its backlog) offline.",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=settings.INGEST_METRICS_PORT,
            help="Serve Prometheus metrics on this port (0: off).",
        )

    def handle(self, *args, **options) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        check_database()
        runner = IngestRunner(
            IngestOptions(
                client_id=default_client_id(options["replica"]),
                batch_size=options["batch_size"],
                share_group=options["share_group"],
                session_expiry_s=options["session_expiry"],
            )
        )
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: runner.stop())
        if options["metrics_port"]:
            start_http_server(options["metrics_port"], addr="127.0.0.1")
        self.stdout.write(
            f"ingest {runner.options.client_id}: batches of {runner.options.batch_size}, "
            f"metrics on :{options['metrics_port'] or 'off'}"
        )
        runner.run()
        self.stdout.write("ingest stopped; everything received was committed and acknowledged")
