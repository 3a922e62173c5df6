"""Typed readers for settings that come from the environment.

Every reader raises ``ImproperlyConfigured`` naming the variable and what it expects, so a bad
deployment stops at start-up with one clear line instead of a traceback minutes later.
A secret can also be given as ``NAME_FILE`` (a path), the way container orchestrators mount them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from inference.config import ConfigError, read_env

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str | None:
    """The variable's value, else the contents of the file named by ``NAME_FILE``, else default
    (``inference.config.read_env``: the one reader of that convention, shared with the pool's
    processes that run without Django)."""
    try:
        value = read_env(name)
    except ConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from None
    return default if value is None else value


def env_required(name: str, what: str) -> str:
    value = env_str(name)
    if not value:
        raise ImproperlyConfigured(f"{name} is not set; expected {what} (or {name}_FILE)")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = env_str(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; expected one of 1/0, true/false")


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = env_str(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ImproperlyConfigured(
            f"{name}={value} is out of range; expected {minimum if minimum is not None else '-inf'}"
            f"..{maximum if maximum is not None else 'inf'}"
        )
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = env_str(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_url(name: str, default: str, *, schemes: tuple[str, ...], what: str) -> str:
    """A URL whose scheme is one of ``schemes`` and which names a host."""
    raw = env_str(name) or default
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - parsing the port validates it
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not a valid URL ({exc}); expected {what}") from None
    if parts.scheme not in schemes or not parts.hostname:
        shown = redact_url(raw)
        raise ImproperlyConfigured(
            f"{name}={shown!r} is not usable; expected {what} (scheme {' or '.join(schemes)})"
        )
    return raw


def redact_url(url: str) -> str:
    """The URL with its password masked, for error messages and logs."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
