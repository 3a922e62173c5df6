"""``manage.py train_models``: train, evaluate, save and register every domain network."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from fleet.learning.features import HEADS
from fleet.learning.pipeline.training import TrainConfig, head_config, train_models
from fleet.learning.runs import champions_exist, next_version, register_run, stale_champions


class Command(BaseCommand):
    help = (
        "Train the telemetry backbone (L0), the mining model (L1) and the fault, ETA, trajectory "
        "and payload heads on simulated data; evaluate them against the baselines on the "
        "held-out site; save checkpoints, ONNX graphs and plots; register the versions."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--root", type=Path, default=None, help="Checkpoint directory.")
        parser.add_argument(
            "--if-missing",
            action="store_true",
            help="Do nothing when every network already has a champion (make demo).",
        )
        alias = parser.add_mutually_exclusive_group()
        alias.add_argument(
            "--promote", action="store_true", help="Make the new versions champions."
        )
        alias.add_argument(
            "--challenger",
            action="store_true",
            help="Register as challengers (default: champion only where none exists).",
        )
        parser.add_argument("--device", default="cpu", help='"cpu", "cuda:0", "npu:0"...')
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--pretrain-epochs",
            type=int,
            default=TrainConfig.pretrain_epochs,
            help="L0's budget in epochs (budgets are epochs: the figures do not depend on load).",
        )
        parser.add_argument(
            "--pretrain-seconds",
            type=float,
            default=None,
            help="An optional wall-clock cap on L0's pretraining on top of its epochs.",
        )
        parser.add_argument("--json", action="store_true", help="Print the figures as JSON last.")
        parser.add_argument(
            "--site",
            metavar="SLUG",
            help="Train the heads on this site's own stored history instead (windows and labels "
            "from the history tables) and register them as challengers (fleet.learning.onsite).",
        )
        parser.add_argument(
            "--since",
            metavar="ISO-DATETIME",
            help="With --site: the history from this moment on (e.g. 2026-12-06T08:00Z).",
        )
        parser.add_argument(
            "--head-seconds", type=float, default=None, help="With --site: budget per head."
        )

    def handle(self, *args, **options) -> None:
        if options["site"]:
            self._on_site(options)
            return
        if options["if_missing"] and champions_exist():
            stale = stale_champions({head: head_config(head).feature_names for head in HEADS})
            if not stale:
                self.stdout.write("every network has a champion: nothing to train")
                return
            self.stdout.write(
                f"the champion of {', '.join(stale)} reads other features than today's: training"
            )
        root = options["root"] or settings.MODELS_DIR
        version = next_version(root)
        config = TrainConfig(
            device=options["device"],
            seed=options["seed"],
            pretrain_epochs=options["pretrain_epochs"],
            pretrain_seconds=options["pretrain_seconds"],
        )
        self.stderr.write(f"training version {version} into {root}")
        try:
            run = train_models(
                config,
                root=root,
                version=version,
                plots_dir=Path(root) / "plots" / version,
                say=self.stderr.write,
            )
        except ValueError as error:  # a bad device name, an export that fails its parity
            raise CommandError(str(error)) from None
        promote = True if options["promote"] else False if options["challenger"] else None
        for line in register_run(run, promote=promote):
            self.stderr.write(line)
        for path in run.plots:
            self.stderr.write(f"plot: {path}")
        if options["json"]:
            self.stdout.write(json.dumps({**run.figures, "version": version}))
        else:
            for key, value in run.figures.items():
                self.stdout.write(f"{key:>20}: {value}")

    def _on_site(self, options: dict) -> None:
        from fleet.learning.onsite import train_challengers
        from fleet.mine.models import Site

        site = Site.objects.filter(slug=options["site"]).first()
        if site is None:
            raise CommandError(f"no site {options['site']!r}")
        if not options["since"]:
            raise CommandError("--site needs --since ISO-DATETIME")
        try:
            since = datetime.fromisoformat(options["since"].replace("Z", "+00:00"))
        except ValueError:
            raise CommandError(f"--since {options['since']!r} is not an ISO date-time") from None
        if since.tzinfo is None:
            raise CommandError("--since needs a time zone (e.g. 2026-12-06T08:00Z)")
        try:
            run = train_challengers(
                site,
                since,
                head_seconds=options["head_seconds"],
                device=options["device"],
                seed=options["seed"],
                root=options["root"],
                say=self.stderr.write,
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        for line in run.lines:
            self.stderr.write(line)
        summary = {
            "site": run.site,
            "since": run.since.isoformat(),
            "until": run.until.isoformat(),
            "windows": run.windows,
            "labels": run.labels,
            "challengers": [str(v) for v in run.registered],
        }
        self.stdout.write(json.dumps(summary) if options["json"] else str(summary))
