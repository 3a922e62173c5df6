"""Daily partitions of the history tables: created ahead, dropped after the retention period."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

PARTITIONED_TABLES = ("telemetry_position", "telemetry_event", "telemetry_position_minute")


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def ensure_partitions(first_day: date, last_day: date) -> int:
    """Create the missing daily partitions from ``first_day`` to ``last_day`` inclusive."""
    created = 0
    existing = set(_partitions())
    with connection.cursor() as cursor:
        day = first_day
        while day <= last_day:
            for table in PARTITIONED_TABLES:
                name = partition_name(table, day)
                if name in existing:
                    continue
                cursor.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} "
                    f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')"
                )
                created += 1
            day += timedelta(days=1)
    return created


def drop_partitions_before(day: date) -> list[str]:
    """Drop every daily partition that ends on or before ``day``; returns their names."""
    dropped = []
    with connection.cursor() as cursor:
        for name, partition_day in _partitions().items():
            if partition_day + timedelta(days=1) <= day:
                cursor.execute(f"DROP TABLE IF EXISTS {name}")
                dropped.append(name)
    return dropped


def _partitions() -> dict[str, date]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT child.relname
            FROM pg_inherits
            JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
            JOIN pg_class child ON child.oid = pg_inherits.inhrelid
            WHERE parent.relname = ANY(%s)
            """,
            [list(PARTITIONED_TABLES)],
        )
        names = [row[0] for row in cursor.fetchall()]
    return {name: datetime.strptime(name[-8:], "%Y%m%d").date() for name in names}  # noqa: DTZ007 - a date


def ensure_history_partitions(now: datetime | None = None) -> int:
    """Partitions for every day a message may be admitted into: the back-fill window behind
    now, and two days ahead (clock skew, and a day of slack for the periodic task)."""
    today = (now or timezone.now()).date()
    backfill_days = -(-settings.INGEST_BACKFILL_S // 86_400)  # ceil
    return ensure_partitions(today - timedelta(days=backfill_days), today + timedelta(days=2))


def drop_expired_partitions(now: datetime | None = None) -> list[str]:
    """Retention: drop the days older than ``INGEST_RETENTION_DAYS``."""
    today = (now or timezone.now()).date()
    return drop_partitions_before(today - timedelta(days=settings.INGEST_RETENTION_DAYS))
