"""``manage.py ingest``: one ingest replica (see fleet/telemetry/ingest.py). Run more for more
throughput; each needs its own stable ``--replica`` name (its persistent MQTT session).
``manage.py ingest --retire NAME``: a replica that is gone for good, drained and forgotten by the
broker (fleet/telemetry/replicas.py)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from prometheus_client import start_http_server

from fleet.preflight import check_database
from fleet.telemetry.ingest import IngestOptions, IngestRunner
from fleet.telemetry.replicas import ReplicaError


class Command(BaseCommand):
    help = "Ingest truck messages from MQTT into the history (one replica)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--replica",
            help="This replica's stable name (its broker session); default: INGEST_REPLICA.",
        )
        parser.add_argument(
            "--retire",
            metavar="NAME",
            help="Retire the stopped replica NAME for good: store what its session holds, then "
            "end the session.",
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
            "--leave-if",
            metavar="FILE",
            help="On SIGTERM, when FILE exists, leave for good: drain this replica's session and "
            "end it (a scale-down; deploy/'s preStop hook writes FILE), instead of stopping with "
            "the session kept for a restart.",
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
        try:
            runner = IngestRunner(
                IngestOptions(
                    replica=options["retire"] or options["replica"] or "",
                    batch_size=options["batch_size"],
                    share_group=options["share_group"],
                    session_expiry_s=options["session_expiry"],
                ),
                retiring=bool(options["retire"]),
            )
        except ReplicaError as error:
            raise CommandError(str(error)) from None
        signal.signal(signal.SIGINT, lambda *_: runner.stop())
        leave_if = options["leave_if"]
        signal.signal(
            signal.SIGTERM,
            lambda *_: runner.leave() if leave_if and Path(leave_if).exists() else runner.stop(),
        )
        if options["metrics_port"]:
            start_http_server(options["metrics_port"], addr="127.0.0.1")
        if runner.retiring:
            self.stdout.write(f"retiring ingest replica {runner.options.replica}: draining")
        else:
            self.stdout.write(
                f"ingest {runner.options.client_id}: batches of {runner.options.batch_size}, "
                f"metrics on :{options['metrics_port'] or 'off'}"
            )
        try:
            runner.run()
        except ReplicaError as error:
            raise CommandError(str(error)) from None
        if runner.retiring and not runner.retired:
            raise CommandError(f"stopped before {runner.options.replica}'s session was drained")
        if runner.retiring:
            drain = runner.drain
            # Left for good (--leave-if): the file has served; a new pod of this name starts afresh.
            if leave_if:
                Path(leave_if).unlink(missing_ok=True)
            self.stdout.write(
                f"retired {runner.options.replica}: its session held {drain.messages} "
                f"message(s), stored; lag p50 {drain.lag_p50_s} s, max {drain.lag_max_s} s; "
                "the broker has forgotten the session"
            )
        else:
            self.stdout.write("ingest stopped; everything received was committed and acknowledged")
