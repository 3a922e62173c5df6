"""The web tier's probes: ``/healthz`` (the process answers) and ``/readyz`` (it can serve: the
database and Redis answer).

Answered by a middleware placed first, before host validation, the TLS redirect and sessions: an
orchestrator's probe comes to the pod's own address over plain HTTP, a host ``ALLOWED_HOSTS``
rightly refuses and a scheme production redirects, and must still get its answer. Both carry
nothing but the checks' names and one line each, and neither touches a session.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from fleet.preflight import ServiceUnavailable, check_database, check_redis

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"

CHECKS: dict[str, Callable[[], None]] = {"database": check_database, "redis": check_redis}


def readiness() -> dict[str, str]:
    """Each dependency's state: ``ok``, or the line saying why it does not answer."""
    states = {}
    for name, check in CHECKS.items():
        try:
            check()
            states[name] = "ok"
        except ServiceUnavailable as exc:
            states[name] = str(exc)
            if name == "database":
                # A broken connection must not be the one the next request inherits.
                connection.close()
    return states


class HealthMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info.rstrip("/")
        if path == LIVENESS_PATH:
            return JsonResponse({"status": "ok"})
        if path == READINESS_PATH:
            checks = readiness()
            ready = all(state == "ok" for state in checks.values())
            return JsonResponse(
                {"status": "ok" if ready else "unavailable", "checks": checks},
                status=200 if ready else 503,
            )
        return self.get_response(request)
