"""History rows keyed by their message's declared identity plus a digest of the body.

Before, a position's key was (EquipmentId, Timestamp): two different positions a truck sent in
the same millisecond were taken for a redelivery and one was lost. Now every history row's key is
(EquipmentId, [message name,] envelope Timestamp, HeaderId or -1, body digest): a redelivered
copy has the same key and is stored once; two different messages never share one. Rows stored
before this migration get digest 0 (they were unique on the old, narrower key already).
"""

from django.db import migrations

FORWARD = """
ALTER TABLE telemetry_position ADD COLUMN body_digest bigint NOT NULL DEFAULT 0;
UPDATE telemetry_position SET sequence = -1 WHERE sequence IS NULL;
ALTER TABLE telemetry_position ALTER COLUMN sequence SET DEFAULT -1;
ALTER TABLE telemetry_position ALTER COLUMN sequence SET NOT NULL;
ALTER TABLE telemetry_position DROP CONSTRAINT telemetry_position_pkey;
ALTER TABLE telemetry_position ADD PRIMARY KEY (equipment_id, sent_at, sequence, body_digest);
ALTER TABLE telemetry_position ALTER COLUMN body_digest DROP DEFAULT;

ALTER TABLE telemetry_event ADD COLUMN body_digest bigint NOT NULL DEFAULT 0;
ALTER TABLE telemetry_event DROP CONSTRAINT telemetry_event_pkey;
ALTER TABLE telemetry_event
    ADD PRIMARY KEY (equipment_id, message_name, sent_at, sequence, body_digest);
ALTER TABLE telemetry_event ALTER COLUMN body_digest DROP DEFAULT;
"""

BACKWARD = """
ALTER TABLE telemetry_event DROP CONSTRAINT telemetry_event_pkey;
DELETE FROM telemetry_event a USING telemetry_event b
    WHERE a.equipment_id = b.equipment_id AND a.message_name = b.message_name
    AND a.sent_at = b.sent_at AND a.sequence = b.sequence AND a.body_digest > b.body_digest;
ALTER TABLE telemetry_event DROP COLUMN body_digest;
ALTER TABLE telemetry_event ADD PRIMARY KEY (equipment_id, message_name, sent_at, sequence);

ALTER TABLE telemetry_position DROP CONSTRAINT telemetry_position_pkey;
DELETE FROM telemetry_position a USING telemetry_position b
    WHERE a.equipment_id = b.equipment_id AND a.sent_at = b.sent_at
    AND (a.sequence, a.body_digest) > (b.sequence, b.body_digest);
ALTER TABLE telemetry_position DROP COLUMN body_digest;
ALTER TABLE telemetry_position ALTER COLUMN sequence DROP NOT NULL;
ALTER TABLE telemetry_position ALTER COLUMN sequence DROP DEFAULT;
UPDATE telemetry_position SET sequence = NULL WHERE sequence = -1;
ALTER TABLE telemetry_position ADD PRIMARY KEY (equipment_id, sent_at);
"""


class Migration(migrations.Migration):
    dependencies = [("telemetry", "0002_partitioned_history")]

    operations = [
        migrations.RunSQL(FORWARD, BACKWARD),
        migrations.AlterModelOptions(
            name="event",
            options={
                "managed": False,
                "ordering": [
                    "equipment_id",
                    "sent_at",
                    "sequence",
                    "received_at",
                    "message_name",
                    "body_digest",
                ],
            },
        ),
        migrations.AlterModelOptions(
            name="position",
            options={
                "managed": False,
                "ordering": ["equipment_id", "sent_at", "sequence", "received_at", "body_digest"],
            },
        ),
    ]
