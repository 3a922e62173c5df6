"""``manage.py deploy_models``: serve the registry's champion heads from the inference pool."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from redis import RedisError

from fleet.learning.deployments import deploy_champions
from fleet.learning.services import RegistryError


class Command(BaseCommand):
    help = (
        "Put one pool deployment per champion head (fault, eta, trajectory, payload) into the "
        "inference pool's store; unchanged ones are left as they are. Run after train_models."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the deployments as JSON.")

    def handle(self, *args, **options) -> None:
        try:
            deployed = deploy_champions()
        except (RegistryError, OSError, RedisError) as exc:  # unreadable checkpoint, Redis down
            raise CommandError(f"could not deploy the champions: {exc}") from exc
        if not deployed:
            self.stderr.write("no champion head registered: run train_models first")
        if options["json"]:
            self.stdout.write(json.dumps([d.to_dict() for d in deployed]))
            return
        for d in deployed:
            self.stdout.write(
                f"{d.name}: {d.model_id}, {d.priority}, SLO {d.slo_ms:g} ms, "
                f"{d.memory_bytes / (1 << 20):.0f} MiB"
            )
