"""The pool of known ingest replicas: who they are, when each was last active, which are silent,
and the record of one retired.

A replica's name is stable and configured (``--replica`` or ``INGEST_REPLICA``; in Kubernetes a
StatefulSet ordinal), never a host name by default: the name is the broker session that keeps
receiving the replica's share of the trucks' messages while it is away. A name that never comes
back must be retired (``manage.py ingest --retire NAME``), or that share waits at the broker until
the session expires and is then lost.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median

from django.conf import settings
from django.db import DatabaseError
from django.db.models import F, QuerySet
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from fleet.telemetry.models import IngestReplica

log = logging.getLogger(__name__)

CLIENT_ID_PREFIX = "haulmind-ingest-"
BEAT_S = 5.0  # a running replica's heartbeat


class ReplicaError(Exception):
    """A replica cannot start or be retired as asked (the message says why)."""


def client_id_for(name: str) -> str:
    """The broker session of the replica ``name``."""
    return f"{CLIENT_ID_PREFIX}{name}"[:64]


def replica_name(explicit: str | None) -> str:
    """The configured name: ``--replica``, else ``INGEST_REPLICA``; no default from the host."""
    name = (explicit or settings.INGEST_REPLICA or "").strip()
    if not name:
        raise ReplicaError(
            "ingest needs a stable replica name: --replica NAME or INGEST_REPLICA (in Kubernetes "
            "a StatefulSet pod name); a host name would leave an orphaned broker session behind "
            "whenever the host is renamed"
        )
    if len(client_id_for(name)) > 64 or any(c in name for c in "/+#$ "):
        raise ReplicaError(
            f"replica name {name!r}: at most 48 characters, none of / + # $ or space"
        )
    return name


def _alive_since() -> datetime:
    return timezone.now() - timedelta(seconds=3 * BEAT_S)


def _silent_since() -> datetime:
    return timezone.now() - timedelta(seconds=settings.INGEST_REPLICA_SILENT_S)


def announce(name: str, client_id: str) -> IngestReplica:
    """A replica starts: known from now on (a retired one is known again).

    Two processes of one name would take the one broker session from each other, so a name
    whose other process is still beating is refused. A replica restarted after a crash finds
    its own last beat still fresh: on the same host the old pid is checked; elsewhere (a pod
    rescheduled on another node) it waits up to three beats for the old one to fall silent."""
    me = here()
    deadline = time.monotonic() + 3 * BEAT_S + 1
    while True:
        other = _other_running(name, me)
        if other is None:
            break
        if time.monotonic() > deadline:
            raise ReplicaError(
                f"replica {name} is running on {other.host} (pid {other.pid}, last seen "
                f"{(timezone.now() - other.last_seen_at).total_seconds():.0f} s ago); "
                "give this one another name"
            )
        log.info("replica %s last beat on %s (pid %s): waiting for it", name, other.host, other.pid)
        time.sleep(min(1.0, BEAT_S))
    now = timezone.now()
    replica, _ = IngestReplica.objects.update_or_create(
        name=name,
        defaults={
            "client_id": client_id,
            "host": me[0],
            "pid": me[1],
            "started_at": now,
            "last_seen_at": now,
            "retired_at": None,
            "silent_alerted_at": None,
        },
    )
    return replica


def _other_running(name: str, here: tuple[str, int]) -> IngestReplica | None:
    """Another process of this name that may still run: not retired, beating lately, and not a
    dead pid of this host."""
    replica = IngestReplica.objects.filter(name=name).first()
    if replica is None or replica.retired_at is not None or (replica.host, replica.pid) == here:
        return None
    if replica.last_seen_at <= _alive_since():
        return None
    if replica.host == here[0] and replica.pid and not _pid_alive(replica.pid):
        return None  # this host's crashed predecessor
    return replica


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def here() -> tuple[str, int]:
    """This process's (host, pid): who a replica's record says is running it."""
    return socket.gethostname(), os.getpid()


def beat(name: str, stored: int, *, owner: tuple[str, int] | None = None) -> bool:
    """A running replica is alive and stored ``stored`` more rows. With ``owner`` (the beating
    process's host and pid) the beat counts only while the record is still that process's:
    False means another process took the name over (a survivor adopted it while this one was
    cut off), and this one must stop rather than fight over the broker session."""
    replica = IngestReplica.objects.filter(name=name)
    if owner is not None:
        replica = replica.filter(host=owner[0], pid=owner[1], retired_at__isnull=True)
    updated = replica.update(
        last_seen_at=timezone.now(), stored=F("stored") + stored, silent_alerted_at=None
    )
    return updated > 0


def _dead_since() -> datetime:
    return timezone.now() - timedelta(seconds=settings.INGEST_REPLICA_ADOPT_S)


def adoptable(exclude: str) -> list[str]:
    """Known replicas other than ``exclude`` whose heartbeat expired INGEST_REPLICA_ADOPT_S ago
    (off when 0): a survivor takes each one's session over and drains it (``claim``)."""
    if not settings.INGEST_REPLICA_ADOPT_S:
        return []
    return list(
        known()
        .filter(last_seen_at__lte=_dead_since())
        .exclude(name=exclude)
        .values_list("name", flat=True)
    )


def claim(name: str, owner: tuple[str, int]) -> bool:
    """Take the dead replica ``name`` over for draining, atomically: one survivor wins. The
    record then beats as ``owner``'s (the drain renews it), so no other survivor adopts it too
    and the cut-off original, should it come back, sees its name taken and stops."""
    updated = (
        known()
        .filter(name=name, last_seen_at__lte=_dead_since())
        .update(last_seen_at=timezone.now(), host=owner[0], pid=owner[1])
    )
    return updated == 1


def check_retirable(name: str) -> IngestReplica:
    """The replica to retire: known, not retired, not running."""
    replica = IngestReplica.objects.filter(name=name).first()
    if replica is None:
        known = ", ".join(IngestReplica.objects.values_list("name", flat=True)) or "none"
        raise ReplicaError(f"no ingest replica is named {name!r} (known: {known})")
    if replica.retired_at is not None:
        raise ReplicaError(f"replica {name} was retired at {replica.retired_at:%Y-%m-%d %H:%M}")
    if replica.last_seen_at > _alive_since():
        raise ReplicaError(
            f"replica {name} is running ({replica.host}, pid {replica.pid}); stop it first: "
            "retiring takes over its broker session"
        )
    return replica


@dataclass(frozen=True)
class Drain:
    """What retiring a replica found in its session."""

    messages: int  # messages the session held (stored, or recognised as already stored)
    lags_s: list[float]  # from each drained message's Timestamp to its commit

    @property
    def lag_p50_s(self) -> float | None:
        return round(median(self.lags_s), 3) if self.lags_s else None

    @property
    def lag_max_s(self) -> float | None:
        return round(max(self.lags_s), 3) if self.lags_s else None


def record_retired(name: str, drain: Drain) -> None:
    IngestReplica.objects.filter(name=name).update(
        retired_at=timezone.now(),
        drained=drain.messages,
        drain_lag_p50_s=drain.lag_p50_s,
        drain_lag_max_s=drain.lag_max_s,
    )


def forget(name: str) -> None:
    """Drop a throwaway replica (a benchmark's, with a short session expiry) from the pool."""
    IngestReplica.objects.filter(name=name).delete()


def known() -> QuerySet[IngestReplica]:
    return IngestReplica.objects.filter(retired_at__isnull=True)


STATES = [("live", "Live"), ("silent", "Silent"), ("retired", "Retired")]


def in_state(queryset: QuerySet[IngestReplica], wanted: str) -> QuerySet[IngestReplica]:
    """The replicas of ``queryset`` that are live, silent or retired (see ``state``)."""
    if wanted == "retired":
        return queryset.filter(retired_at__isnull=False)
    running = queryset.filter(retired_at__isnull=True)
    if wanted == "silent":
        return running.filter(last_seen_at__lte=_silent_since())
    return running.filter(last_seen_at__gt=_silent_since())


def state(replica: IngestReplica) -> str:
    if replica.retired_at is not None:
        return "retired"
    return "silent" if replica.last_seen_at <= _silent_since() else "live"


def report_silent() -> list[str]:
    """Log an error, once per silence, for each known replica silent past the threshold: its
    session is collecting messages nobody stores. The names newly reported."""
    silent = list(known().filter(last_seen_at__lte=_silent_since(), silent_alerted_at__isnull=True))
    for replica in silent:
        log.error(
            "ingest replica %s has been silent since %s: the broker queues its share of the "
            "trucks' messages; restart it, or retire it with `manage.py ingest --retire %s`",
            replica.name,
            replica.last_seen_at.isoformat(timespec="seconds"),
            replica.name,
        )
    IngestReplica.objects.filter(pk__in=[r.pk for r in silent]).update(
        silent_alerted_at=timezone.now()
    )
    return [r.name for r in silent]


class ReplicaCollector(Collector):
    """``haulmind_ingest_replica_*``, read from the database at scrape time (the web process's
    /metrics), so an alerting rule sees a replica that has stopped beating."""

    def describe(self) -> list:
        return []  # never touch the database when registering

    def collect(self):  # type: ignore[no-untyped-def]
        age = GaugeMetricFamily(
            "haulmind_ingest_replica_seconds_since_seen",
            "Seconds since a known ingest replica's last heartbeat.",
            labels=["replica"],
        )
        silent = GaugeMetricFamily(
            "haulmind_ingest_replicas_silent",
            "Known ingest replicas silent past INGEST_REPLICA_SILENT_S.",
        )
        now = timezone.now()
        try:
            replicas = list(known())
        except DatabaseError:  # a scrape never fails: the other families still answer
            log.warning("ingest replicas not read for /metrics: database unavailable")
            return
        for replica in replicas:
            age.add_metric([replica.name], (now - replica.last_seen_at).total_seconds())
        silent.add_metric([], sum(state(r) == "silent" for r in replicas))
        yield age
        yield silent


_installed = False


def install_collector() -> None:
    global _installed
    if not _installed:
        REGISTRY.register(ReplicaCollector())
        _installed = True
