"""What ingest tells the rest of fleet, without importing it (control listens)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent with ``admitted``, the Admitted messages of a batch, as soon as they are admitted: before
# the batch is stored, outside its transaction, in the ingest process. For the rules that must act
# on a message at once (control's live compliance): storage is for history and must not delay
# them. Receivers must be cheap per message (no query per message); an error is logged, and the
# batch is stored regardless.
messages_arrived = Signal()

# Sent inside the batch's transaction (in a savepoint), with ``admitted``: the Admitted
# messages of the batch. Receivers must be quick; an error rolls back only their own work.
messages_admitted = Signal()

# Sent after a truck's connection state arrived, with ``equipment_id`` and ``state`` (the
# decoded retained message: ConnectionState Online, Offline or ConnectionBroken).
connection_changed = Signal()
