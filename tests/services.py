"""The services the suite runs against, checked once before the first test.

``make test`` starts them (scripts/services.sh); when one is missing anyway, the run stops with
one line naming it rather than hundreds of tracebacks or, worse, tests that quietly skip.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

CHROMIUM = "/usr/bin/chromium"


def _postgres() -> str | None:
    import psycopg

    db = settings.DATABASES["default"]
    where = f"PostgreSQL at {db['HOST']}:{db['PORT']}"
    try:
        psycopg.connect(
            host=db["HOST"],
            port=db["PORT"] or 5432,
            user=db["USER"],
            password=db.get("PASSWORD") or None,
            dbname=db["NAME"],
            connect_timeout=3,
        ).close()
    except psycopg.Error as exc:
        return f"{where} does not answer ({str(exc).strip().splitlines()[0]})"
    return None


def _redis() -> str | None:
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=3).ping()
    except redis.RedisError as exc:
        return f"Redis at {settings.REDIS_URL} does not answer ({exc})"
    return None


def _rabbitmq() -> str | None:
    from kombu import Connection

    url = settings.CELERY_BROKER_URL
    if not url.startswith(("amqp", "pyamqp")):
        return (
            f"RabbitMQ: CELERY_BROKER_URL is {url}, but the inference pool needs an amqp:// broker"
        )
    try:
        with Connection(url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:  # kombu raises the transport's own errors
        return f"RabbitMQ at {Connection(url).as_uri()} does not answer ({exc})"
    return None


def _mosquitto() -> str | None:
    if not shutil.which("mosquitto"):
        return "Mosquitto: the mosquitto binary is not installed (Debian's mosquitto)"
    return None


def _chromium() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Chromium: {CHROMIUM} is not installed (Debian's chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright: the playwright package is not installed in this environment"
    return None


CHECKS: tuple[Callable[[], str | None], ...] = (_postgres, _redis, _rabbitmq, _mosquitto, _chromium)


def missing_service() -> str | None:
    """The first service that is missing, as one line; None when all answer."""
    for check in CHECKS:
        problem = check()
        if problem:
            return problem
    return None
