"""Start-up checks: every service a process needs answers, or one line says which does not."""

from __future__ import annotations

from django.conf import settings
from django.db import OperationalError, connection

from fleet.conf import redact_url


class ServiceUnavailable(Exception):
    """A configured service does not answer; the message names its variable."""


def check_database() -> None:
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT postgis_lib_version()")
    except OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceUnavailable(
            f"DATABASE_URL={redact_url(settings.DATABASE_URL)} does not answer as PostGIS: {reason}"
        ) from None
    except Exception as exc:
        raise ServiceUnavailable(
            f"DATABASE_URL={redact_url(settings.DATABASE_URL)} is not a usable PostGIS database: "
            f"{str(exc).strip().splitlines()[0]}"
        ) from None


def check_redis() -> None:
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        raise ServiceUnavailable(
            f"REDIS_URL={redact_url(settings.REDIS_URL)} does not answer: {exc}"
        ) from None


def check_all() -> None:
    check_database()
    check_redis()
