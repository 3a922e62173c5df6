"""``manage.py train_models``: train, evaluate, save and register every domain network."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from fleet.learning.pipeline.training import TrainConfig, train_models
from fleet.learning.runs import champions_exist, next_version, register_run


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
        parser.add_argument("--pretrain-seconds", type=float, default=TrainConfig.pretrain_seconds)
        parser.add_argument("--json", action="store_true", help="Print the figures as JSON last.")

    def handle(self, *args, **options) -> None:
        if options["if_missing"] and champions_exist():
            self.stdout.write("every network has a champion: nothing to train")
            return
        root = options["root"] or settings.MODELS_DIR
        version = next_version(root)
        config = TrainConfig(
            device=options["device"],
            seed=options["seed"],
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
