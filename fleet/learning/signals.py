"""What the live serving path tells the rest of fleet, without importing it: control listens and
decides (fleet.control.receivers -> fleet.control.health)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent by the inference callback once a prediction is stored, with ``prediction_id``,
# ``equipment_id``, ``head``, ``model_id`` (the version that answered, "fault@3"),
# ``window_start`` and ``window_end`` (the input window, aware UTC) and ``outputs`` (the stored
# JSON). Receivers decide; the callback itself decides nothing.
prediction_recorded = Signal()
