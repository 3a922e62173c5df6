"""The partitioned history tables. Daily partitions are created ahead of time by
fleet.telemetry.partitions (at ingest start and by a periodic task), and dropped after the
retention period."""

from django.db import migrations

CREATE = """
CREATE TABLE telemetry_position (
    equipment_id uuid NOT NULL,
    sent_at timestamptz NOT NULL,
    measured_at timestamptz,
    received_at timestamptz NOT NULL,
    location geometry(Point, 4326) NOT NULL,
    elevation_m real NOT NULL,
    heading_deg smallint NOT NULL,
    speed_kmh real NOT NULL,
    horizontal_accuracy_m real,
    road_revision integer,
    sequence bigint,
    late boolean NOT NULL DEFAULT false,
    PRIMARY KEY (equipment_id, sent_at)
) PARTITION BY RANGE (sent_at);
CREATE INDEX telemetry_position_sent_brin ON telemetry_position USING brin (sent_at);

CREATE TABLE telemetry_event (
    equipment_id uuid NOT NULL,
    message_name varchar(64) NOT NULL,
    sent_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    body jsonb NOT NULL,
    sequence bigint NOT NULL DEFAULT -1,
    late boolean NOT NULL DEFAULT false,
    PRIMARY KEY (equipment_id, message_name, sent_at, sequence)
) PARTITION BY RANGE (sent_at);

CREATE TABLE telemetry_position_minute (
    equipment_id uuid NOT NULL,
    minute timestamptz NOT NULL,
    samples integer NOT NULL,
    location geometry(Point, 4326) NOT NULL,
    mean_speed_kmh real NOT NULL,
    max_speed_kmh real NOT NULL,
    PRIMARY KEY (equipment_id, minute)
) PARTITION BY RANGE (minute);
"""

DROP = """
DROP TABLE IF EXISTS telemetry_position_minute;
DROP TABLE IF EXISTS telemetry_event;
DROP TABLE IF EXISTS telemetry_position;
"""


class Migration(migrations.Migration):
    dependencies = [("telemetry", "0001_initial")]

    operations = [migrations.RunSQL(CREATE, DROP)]
