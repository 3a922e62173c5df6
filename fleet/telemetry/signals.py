"""What ingest tells the rest of fleet, without importing it (control listens)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent with ``admitted``, Admitted messages, as soon as they are admitted: before they are stored,
# outside any transaction. For the rules that must act on a message at once (control's live
# compliance): storage is for history and must not delay them. With ``live=True`` they are the
# messages that arrived together (one read of the socket, at most a few dozen, in order), sent
# from the ingest replica's MQTT thread the moment they are read: a receiver must not
# block there (no query per message; a cache refreshed every few seconds at most) and may return
# a list of callables, the database work of what it decided, which the replica's writer runs
# (each in its own transaction, retried through a database outage) before it stores the next
# batch. Otherwise it is a batch about to be stored (the REST fallback, or messages the MQTT
# thread could not admit). Receivers must be cheap per message; an error is logged, and the
# messages are stored regardless.
messages_arrived = Signal()

# Sent inside the batch's transaction (in a savepoint), with ``admitted``: the Admitted
# messages of the batch. Receivers must be quick; an error rolls back only their own work.
messages_admitted = Signal()

# Sent after a truck's connection state arrived, with ``equipment_id`` and ``state`` (the
# decoded retained message: ConnectionState Online, Offline or ConnectionBroken).
connection_changed = Signal()

# Sent when an ingest replica starts, before it receives: the live rules make ready what they
# need (their connections, their caches), so the first decision does not wait for them.
ingest_starting = Signal()
