"""One-minute roll-ups of positions, for tracks over long ranges."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

_ROLL_UP = """
INSERT INTO telemetry_position_minute
    (equipment_id, minute, samples, location, mean_speed_kmh, max_speed_kmh)
SELECT equipment_id, date_trunc('minute', sent_at), count(*),
    (array_agg(location ORDER BY sent_at DESC, sequence DESC, received_at DESC))[1], avg(speed_kmh), max(speed_kmh)
FROM telemetry_position
WHERE sent_at >= %(start)s AND sent_at < %(end)s
GROUP BY 1, 2
ON CONFLICT (equipment_id, minute) DO UPDATE SET
    samples = EXCLUDED.samples, location = EXCLUDED.location,
    mean_speed_kmh = EXCLUDED.mean_speed_kmh, max_speed_kmh = EXCLUDED.max_speed_kmh
"""

# Re-rolled every run, so positions arriving a little late still count in their minute;
# back-filled ranges older than this are rolled up when ingest reports them.
RECENT = timedelta(minutes=15)


def roll_up_positions(start: datetime, end: datetime) -> int:
    """(Re)compute the minutes touching [start, end); returns the minutes written."""
    start = start.replace(second=0, microsecond=0)
    with connection.cursor() as cursor:
        cursor.execute(_ROLL_UP, {"start": start, "end": end})
        return cursor.rowcount


def roll_up_recent(now: datetime | None = None) -> int:
    """The complete minutes of the last quarter hour."""
    end = (now or timezone.now()).replace(second=0, microsecond=0)
    return roll_up_positions(end - RECENT, end)
