"""Serve the ASGI application (HTTP, websockets, admin, API) with uvicorn."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fleet.preflight import ServiceUnavailable, check_all


class Command(BaseCommand):
    help = "Check the services, then serve fleet.asgi:application with uvicorn."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--workers", type=int, default=1, help="processes (each runs its own event loop)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            check_all()
        except ServiceUnavailable as exc:
            raise CommandError(str(exc)) from None
        import uvicorn

        uvicorn.run(
            "fleet.asgi:application",
            host=options["host"],
            port=options["port"],
            workers=options["workers"],
            lifespan="off",  # Django's ASGI handler does not implement lifespan events
            proxy_headers=True,
            log_level="info",
        )
