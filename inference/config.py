"""Where every process of a deployment finds its message broker and its Redis.

One source for fleet's settings, the slice workers, the nodes, the scheduler and the benches: the
environment (``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND``, ``REDIS_URL``), else the
``var/services.env`` that ``scripts/services.sh`` writes (the RabbitMQ it chose or started), else
the loopback defaults. Two processes of one machine never end up on two brokers because one of
them was started without the environment the other had.

Any variable can be given as ``NAME_FILE`` instead, a path to a file holding the value: the way
Kubernetes and Docker mount secrets (a broker or Redis URL carries a password). ``read_env`` is the
one reader of that convention; fleet's settings (``fleet.conf``) read through it too.
"""

from __future__ import annotations

import os
import shlex
from functools import cache
from pathlib import Path

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def var_dir() -> Path:
    return Path(
        os.environ.get("HAULMIND_VAR_DIR") or Path(__file__).resolve().parent.parent / "var"
    )


class ConfigError(ValueError):
    """A variable's ``_FILE`` names a file that cannot be read (the message says which)."""


def read_env(name: str) -> str | None:
    """``NAME`` from the environment, else the contents of the file ``NAME_FILE`` names (one
    trailing newline or surrounding whitespace dropped: ``echo secret > file`` must work), else
    None. An empty ``NAME`` is a value (it wins over ``NAME_FILE``)."""
    value = os.environ.get(name)
    if value is not None:
        return value
    path = os.environ.get(f"{name}_FILE")
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"{name}_FILE={path!r} cannot be read ({exc.strerror}); expected a readable file "
            f"holding {name}"
        ) from exc


@cache
def _services_env(path: Path) -> dict[str, str]:
    """``export NAME=value`` lines of the set-up's file (absent before the first set-up)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    values = {}
    for line in lines:
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            words = words[1:]
        if len(words) == 1 and "=" in words[0]:
            name, value = words[0].split("=", 1)
            values[name] = value
    return values


def setting(name: str, default: str) -> str:
    """The environment's value (or its ``_FILE``'s), else the set-up's, else ``default``."""
    return read_env(name) or _services_env(var_dir() / "services.env").get(name) or default


def broker_url() -> str:
    return setting("CELERY_BROKER_URL", DEFAULT_BROKER_URL)


def redis_url() -> str:
    return setting("REDIS_URL", DEFAULT_REDIS_URL)


def result_backend_url() -> str:
    return setting("CELERY_RESULT_BACKEND", redis_url())


def broker_heartbeat_s() -> float:
    """AMQP heartbeat of the pool's Celery connections (``CELERY_BROKER_HEARTBEAT_S``, 10 s):
    RabbitMQ closes a connection that misses two, requeueing its unacknowledged requests."""
    value = setting("CELERY_BROKER_HEARTBEAT_S", "10")
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(
            f"CELERY_BROKER_HEARTBEAT_S={value!r} is not a number of seconds"
        ) from None
    if seconds <= 0:
        raise ValueError(f"CELERY_BROKER_HEARTBEAT_S={value!r}: expected more than 0")
    return seconds


def artifact_root() -> str:
    """Where registered checkpoints are stored by sha256 (``models.artifacts``): a directory on
    a volume every host mounts, or ``s3://bucket/prefix``. ``HAULMIND_ARTIFACT_ROOT``, else
    ``var/artifacts``."""
    return setting("HAULMIND_ARTIFACT_ROOT", str(var_dir() / "artifacts"))


def artifact_endpoint() -> str | None:
    """The endpoint of an S3-compatible store other than AWS (``HAULMIND_ARTIFACT_ENDPOINT_URL``,
    e.g. MinIO's ``http://minio:9000``); None for AWS itself or a directory root."""
    return setting("HAULMIND_ARTIFACT_ENDPOINT_URL", "") or None


def artifact_cache() -> str:
    """This host's copy of the artifacts it loads, fetched by hash and verified
    (``HAULMIND_ARTIFACT_CACHE``, else ``var/artifact-cache``): local disk, one per host."""
    return setting("HAULMIND_ARTIFACT_CACHE", str(var_dir() / "artifact-cache"))
