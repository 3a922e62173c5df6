"""What ingest tells the rest of fleet, without importing it (control listens)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent inside the batch's transaction (in a savepoint), with ``admitted``: the Admitted
# messages of the batch. Receivers must be quick; an error rolls back only their own work.
messages_admitted = Signal()

# Sent after a truck's connection state arrived, with ``equipment_id`` and ``state`` (the
# decoded retained message: ConnectionState Online, Offline or ConnectionBroken).
connection_changed = Signal()
