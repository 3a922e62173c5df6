"""Run simulated autonomous haul trucks against the broker until stopped (docs/simulator.md)."""

from __future__ import annotations

import json
import resource
import signal
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fleet.mine.models import Site
from fleet.simulator.engine import Engine
from fleet.simulator.link import SimulatedFleet
from fleet.simulator.runner import SimulatorSetupError, build_fleet

SELF_GRANT_AFTER_S = 2.0  # with --self-grant: how long a truck waits for the FMS's answer


class Command(BaseCommand):
    help = (
        "Simulate the site's autonomous haul trucks on MQTT (ISO 23725): haul cycles, telemetry, "
        "injected faults. Ctrl-C stops cleanly (each truck reports Offline)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--trucks", type=int, default=10, help="how many trucks (first N by name)"
        )
        parser.add_argument("--hz", type=float, default=10.0, help="position rate per truck")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--site", default="cerro-rojo", help="site slug")
        parser.add_argument(
            "--duration", type=float, help="simulated seconds to run (default: until stopped)"
        )
        parser.add_argument("--fault-rate", type=float, default=0.1, help="faults per truck-hour")
        parser.add_argument(
            "--labels", type=Path, help="write ground-truth fault labels here (JSONL)"
        )
        parser.add_argument(
            "--speedup", type=float, default=1.0, help="simulated seconds per wall second"
        )
        parser.add_argument("--position-qos", type=int, choices=(0, 1), default=0)
        parser.add_argument(
            "--offset",
            type=int,
            default=0,
            help="skip this many trucks (split a fleet over processes)",
        )
        parser.add_argument(
            "--no-validate",
            action="store_true",
            help="do not parse each message back before sending (load generation: ~25 %% faster)",
        )
        parser.add_argument(
            "--heartbeat-timeout",
            type=float,
            default=5.0,
            help="seconds without an FMS heartbeat after which the trucks stop themselves "
            "(ISO 17757 safe state; armed once a first heartbeat is heard); 0 disables",
        )
        parser.add_argument(
            "--spread",
            action="store_true",
            help="start mid-shift: the trucks spread round their haul cycles, not at the park",
        )
        parser.add_argument(
            "--self-grant",
            action="store_true",
            help=f"enter traffic-permission zones after {SELF_GRANT_AFTER_S:g} s without an FMS answer",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        site = Site.objects.filter(slug=options["site"]).first()
        if site is None:
            raise CommandError(
                f"no site {options['site']!r}; run `python manage.py create_demo_mine`"
            )
        _raise_file_limit(options["trucks"])
        try:
            fleet = build_fleet(
                site,
                options["trucks"],
                hz=options["hz"],
                seed=options["seed"],
                fault_rate=options["fault_rate"],
                permission_timeout_s=SELF_GRANT_AFTER_S if options["self_grant"] else None,
                offset=options["offset"],
                position_qos=options["position_qos"],
                speedup=options["speedup"],
                validate=not options["no_validate"],
                heartbeat_timeout_s=options["heartbeat_timeout"] or None,
                spread=options["spread"],
            )
            fleet.connect()
        except (SimulatorSetupError, ConnectionError, ValueError) as error:
            raise CommandError(str(error)) from error
        self._run(fleet, options)

    def _run(self, fleet: SimulatedFleet, options: dict[str, Any]) -> None:
        stop = {"now": False}

        def request_stop(signum: int, frame: Any) -> None:
            stop["now"] = True

        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        status = _Status(self.stdout.write, options["labels"])
        self.stdout.write(
            f"simulating {fleet.engine.n} trucks at {options['hz']:g} Hz on {options['site']}; Ctrl-C stops"
        )
        try:
            fleet.run(options["duration"], should_stop=lambda: stop["now"], status=status)
        finally:
            fleet.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            status(fleet)
            self.stdout.write(f"stopped: {fleet.total_sent():,} messages sent ({dict(fleet.sent)})")


class _Status:
    """The one-line status every 10 s, and the label file kept current with it."""

    def __init__(self, write: Any, labels: Path | None) -> None:
        self.write, self.labels = write, labels
        self.last_time, self.last_sent = time.monotonic(), 0

    def __call__(self, fleet: SimulatedFleet) -> None:
        now, sent = time.monotonic(), fleet.total_sent()
        rate = (sent - self.last_sent) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_sent = now, sent
        engine = fleet.engine
        states = ", ".join(f"{name} {count}" for name, count in engine.histogram().items())
        self.write(
            f"t={engine.t:7.0f}s trucks {fleet.connected_trucks()}/{engine.n} "
            f"{rate:8,.0f} msg/s | {states} | faults active {len(engine.faults.active)}"
        )
        if self.labels is not None:
            _write_labels(self.labels, engine)


def _write_labels(path: Path, engine: Engine) -> None:
    """Every label so far, one JSON object a line (rewritten whole: a few hundred a day)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    rows = (json.dumps(label.to_dict(engine.start_time)) for label in engine.faults.labels)
    tmp.write_text("".join(row + "\n" for row in rows))
    tmp.replace(path)


def _raise_file_limit(trucks: int) -> None:
    """One socket per truck: lift the soft open-file limit towards the hard one if needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = trucks + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
