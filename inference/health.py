"""Liveness of the processes that serve no HTTP: a file each one touches while its loop makes
progress, and the check an orchestrator's exec probe runs against it.

    HAULMIND_HEALTH_FILE=/run/haulmind/healthy python manage.py ingest --replica ingest-0
    python -m inference.health /run/haulmind/healthy --max-age 30     # exit 0, or 1 and why

A process touches the file only where a round of its real work has just succeeded (an ingest
replica's heartbeat written, a scheduler tick, a node's beat, a Celery consumer's timer firing
on a live broker connection), so a wedged loop, a dead thread or a lost database leaves the file
to age and the probe fails. Without ``HAULMIND_HEALTH_FILE`` nothing is written (one host, no
orchestrator). A clean stop removes the file: a process shutting down is not ready.

This module imports nothing beyond the standard library: the probe starts a fresh interpreter
every few seconds in every pod.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ENV = "HAULMIND_HEALTH_FILE"
# A touch is a metadata write; at most one a second, however fast the loop turns.
MIN_INTERVAL_S = 1.0


class HealthFile:
    """The file one process touches. ``path`` None: ``$HAULMIND_HEALTH_FILE``, or off."""

    def __init__(self, path: str | Path | None = None, *, min_interval_s: float = MIN_INTERVAL_S):
        chosen = path if path is not None else os.environ.get(ENV)
        self.path = Path(chosen) if chosen else None
        self.min_interval_s = min_interval_s
        self._touched_at = float("-inf")

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def touch(self) -> None:
        """Now alive; cheap enough to call on every round of a loop."""
        if self.path is None:
            return
        now = time.monotonic()
        if now - self._touched_at < self.min_interval_s:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        os.utime(self.path)  # touch() leaves an existing file's time alone on some platforms
        self._touched_at = now

    def clear(self) -> None:
        """A clean stop: the probe fails from now on."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self._touched_at = float("-inf")


def problem(path: str | Path, max_age_s: float, *, now: float | None = None) -> str | None:
    """Why the process behind ``path`` is not healthy, or None when it touched it lately."""
    try:
        modified = Path(path).stat().st_mtime
    except FileNotFoundError:
        return f"{path} does not exist: the process has not started its work, or has stopped"
    age = (time.time() if now is None else now) - modified
    if age > max_age_s:
        return (
            f"{path} last touched {age:.0f} s ago (more than {max_age_s:g} s): the process is stuck"
        )
    return None


def install_celery_health(app: Any, *, interval_s: float = 5.0) -> None:
    """Add a consumer step to ``app``'s workers that touches the health file every
    ``interval_s`` while the worker's connection to the broker is up.

    The timer runs on the consumer's own event loop, the one that takes tasks off the broker:
    when that loop is blocked or its connection is lost, the file ages. Nothing is added
    without ``HAULMIND_HEALTH_FILE``."""
    if not HealthFile().enabled:
        return
    from celery import bootsteps

    class HealthFileStep(bootsteps.StartStopStep):
        requires = {"celery.worker.consumer.tasks:Tasks"}  # started once tasks are consumed

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.health = HealthFile()
            self.timer_entry: Any = None

        def start(self, consumer: Any) -> None:
            self._touch(consumer)
            self.timer_entry = consumer.timer.call_repeatedly(
                interval_s, self._touch, (consumer,), priority=10
            )

        def _touch(self, consumer: Any) -> None:
            connection = consumer.connection
            if connection is not None and connection.connected:
                self.health.touch()

        def stop(self, consumer: Any) -> None:
            if self.timer_entry is not None:
                self.timer_entry.cancel()
                self.timer_entry = None

        def shutdown(self, consumer: Any) -> None:
            self.stop(consumer)
            self.health.clear()

    app.steps["consumer"].add(HealthFileStep)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Exit 0 when a health file is fresh, else 1.")
    parser.add_argument("path", nargs="?", default=os.environ.get(ENV), help=f"default ${ENV}")
    parser.add_argument(
        "--max-age", type=float, default=30.0, help="seconds since the last touch (default 30)"
    )
    args = parser.parse_args(argv)
    if not args.path:
        parser.error(f"no health file: give its path or set {ENV}")
    reason = problem(args.path, args.max_age)
    if reason is not None:
        print(f"unhealthy: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
