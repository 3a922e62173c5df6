"""Where every process of a deployment finds its message broker and its Redis.

One source for fleet's settings, the slice workers, the nodes, the scheduler and the benches: the
environment (``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND``, ``REDIS_URL``), else the
``var/services.env`` that ``scripts/services.sh`` writes (the RabbitMQ it chose or started), else
the loopback defaults. Two processes of one machine never end up on two brokers because one of
them was started without the environment the other had.
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
    """The environment's value, else the set-up's, else ``default``."""
    return os.environ.get(name) or _services_env(var_dir() / "services.env").get(name) or default


def broker_url() -> str:
    return setting("CELERY_BROKER_URL", DEFAULT_BROKER_URL)


def redis_url() -> str:
    return setting("REDIS_URL", DEFAULT_REDIS_URL)


def result_backend_url() -> str:
    return setting("CELERY_RESULT_BACKEND", redis_url())
