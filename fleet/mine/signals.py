"""What the mine map tells the rest of fleet, without importing it (control listens and tells
the trucks). Both are sent after the change has committed, with ``zone_id``."""

from __future__ import annotations

from django.dispatch import Signal

zone_activated = Signal()
zone_deletion_requested = Signal()  # Active -> Pending Delete: the trucks must drop it
