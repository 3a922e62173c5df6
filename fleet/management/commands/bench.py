"""``manage.py bench NAME [options] --json``: one benchmark against the real services; prints
one JSON object as its last line (docs/benchmarks.md records the figures and the commands)."""

from __future__ import annotations

import importlib
import json
import platform
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

# name -> "module" with ``run(options, log) -> dict`` or "module:function" of that signature;
# the options are this command's
BENCHMARKS = {
    "ingest": "fleet.telemetry.bench",
    "models": "fleet.learning.pipeline.bench",
    "batching": "fleet.learning.poolbench:run_batching_bench",
    "pool": "fleet.learning.poolbench:run_pool_bench",
    "allstop": "fleet.control.bench",
    "rule": "fleet.control.compliance_bench",
    "collision": "fleet.control.collision_bench",
    "loop": "fleet.management.commands.bench:run_loop",
    "traffic": "fleet.control.traffic_bench",
    "dispatch": "fleet.simulator.dispatchbench",
    "shift": "fleet.control.shift_bench",
    "dashboard": "fleet.live.dashboard_bench",
    "serving": "fleet.learning.servingbench",
}


class Command(BaseCommand):
    help = "Run one benchmark against the configured services; --json prints the figures."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", choices=sorted(BENCHMARKS))
        parser.add_argument("--json", action="store_true", help="Print one JSON object last.")
        parser.add_argument("--trucks", type=int, default=100)
        parser.add_argument("--seconds", type=float, default=20.0)
        parser.add_argument("--publishers", type=int, default=2, help="Publisher processes.")
        parser.add_argument("--rate", type=float, default=0.0, help="Offered msgs/s (0: flat out).")
        parser.add_argument(
            "--same-timestamp",
            type=int,
            default=1,
            metavar="N",
            help="ingest: N successive positions of a truck share one envelope Timestamp.",
        )
        parser.add_argument(
            "--no-header-id",
            action="store_true",
            help="ingest: positions carry no HeaderId (only their bodies tell them apart).",
        )
        parser.add_argument(
            "--zones",
            type=int,
            default=0,
            help="ingest: active speed-limit zones over the trucks (the live rules' work).",
        )
        parser.add_argument(
            "--no-live-rules",
            action="store_true",
            help="ingest: the replica runs without the live rules (CONTROL_LIVE_RULES=0).",
        )
        parser.add_argument("--seed", type=int, default=0, help="models: the training seed.")
        parser.add_argument(
            "--rounds",
            type=int,
            default=20,
            help="allstop: apply + remove rounds measured; loop: probes per path.",
        )
        parser.add_argument(
            "--no-model", action="store_true", help="loop: the rule path alone (no pool)."
        )
        parser.add_argument("--plots-dir", default=None, help="models: where to draw the plots.")
        parser.add_argument(
            "--test-log",
            default=None,
            help="models: the file whose 'Test-site log' records this read (docs/models.md).",
        )
        parser.add_argument("--head", default=None, help="batching: which head (default fault).")
        parser.add_argument(
            "--concurrency", type=int, default=64, help="batching: requests in flight."
        )
        parser.add_argument("--clients", type=int, default=2, help="batching: client processes.")
        parser.add_argument(
            "--share",
            type=float,
            default=0.5,
            help="batching, loop: the slice's share of the CPU.",
        )
        parser.add_argument(
            "--slices", default=None, help="pool: the node's slice plan (equal CPU slices)."
        )
        parser.add_argument(
            "--pack",
            type=int,
            default=0,
            metavar="N",
            help="batching: also run with packs of N windows per message (send_pack); "
            "pool: send every window in packs of N.",
        )
        parser.add_argument(
            "--burst-rates",
            default=None,
            help="pool: best-effort burst rates stepped up, windows/s (e.g. 200,400,800).",
        )

        parser.add_argument(
            "--large-trucks", type=int, default=1000, help="dispatch: trucks on the large mine."
        )
        parser.add_argument("--seeds", default="1,2,3", help="dispatch: the shifts' seeds.")
        parser.add_argument(
            "--shift-hours", type=float, default=4.0, help="dispatch: simulated hours per shift."
        )

        parser.add_argument(
            "--minutes", type=float, default=12.0, help="shift: the measured window, real time."
        )
        parser.add_argument("--hz", type=float, default=2.0, help="shift: positions per truck/s.")
        parser.add_argument(
            "--exclusion-zones",
            type=int,
            default=4,
            help="shift: exclusion zones activated across roads in use during the window.",
        )
        parser.add_argument(
            "--safety-distance",
            type=float,
            default=50.0,
            help="shift: the separation moving trucks must keep (m).",
        )
        parser.add_argument("--pits", type=int, default=5, help="shift: pits of its mine.")
        parser.add_argument(
            "--replicas",
            type=int,
            default=None,
            help="shift: ingest replicas (one shared group, default 2); ingest: also store with "
            "this many replicas and compare their total with one replica's (default: one only).",
        )
        parser.add_argument(
            "--loading-units", type=int, default=25, help="shift: loading units of its mine."
        )
        parser.add_argument(
            "--in-process",
            action="store_true",
            help="ingest: no broker; the replica's own work per message in this process (CPU "
            "clock), batches of --trucks positions for --seconds (a batch is 0.1 s of trucks).",
        )

        parser.add_argument(
            "--truck-hz", type=float, default=5.0, help="dashboard: positions per truck/s."
        )
        parser.add_argument(
            "--real-rates",
            default="1000,2000,3000",
            help="dashboard: msg/s tried upwards through the broker and ingest until one fails.",
        )

    def handle(self, *args, **options) -> None:
        module_name, _, function = BENCHMARKS[options["name"]].partition(":")
        run = getattr(importlib.import_module(module_name), function or "run")
        try:
            figures = run(options, log=lambda text: self.stderr.write(text))
        except RuntimeError as error:
            raise CommandError(str(error)) from None
        figures = {
            "benchmark": options["name"],
            "machine": f"{platform.node()} ({platform.machine()}, {_cpus()} CPUs)",
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            **figures,
        }
        if options["json"]:
            self.stdout.write(json.dumps(figures, default=str))
        else:
            for key, value in figures.items():
                self.stdout.write(f"{key:>24}: {value}")


def run_loop(options: dict, log) -> dict:
    """``bench loop``: control's loop with the pool side of its model path handed in (control
    never imports what serving imports, so the two meet here)."""
    from fleet.control import loopbench

    if options.get("no_model"):
        return loopbench.run(options, log)
    from fleet.learning import loopbench as pool_side
    from fleet.learning.serving import WINDOW_S

    side = loopbench.ModelSide(
        pool=pool_side.ModelPool,
        history=pool_side.probe_history,
        live=pool_side.probe_messages,
        window_s=WINDOW_S,
    )
    return loopbench.run(options, log, model=side)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
