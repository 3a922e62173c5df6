"""What a mine already has, to judge the domain models against (docs/models.md):

- faults: the truck's own OEM threshold alarms, replayed on the same telemetry with the same
  thresholds and hysteresis as its controller (the simulator's ``physics`` numbers);
- ETA: the per-segment historical mean (time to the next stop by way and destination, from
  the same site's history);
- trajectory: constant velocity along the reported heading;
- payload: the on-board payload meter (strut pressures, calibrated per truck, held while
  moving), as every haul truck reports it. It is the commonly used figure and a strong one; a
  regression on summed strut pressures is weaker (road bounce, loading inside the window) and
  would flatter a network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fleet.learning import features
from fleet.learning.features import HORIZONS_S, TYRES
from fleet.learning.pipeline.datasets import WindowSet
from fleet.learning.pipeline.evaluation import Detection
from fleet.simulator import physics as ph

# (channel, limit, +1 high alarm / -1 low alarm, hysteresis group, the fault it names): the
# controller's own table (engine._diagnose), with its numbers imported, never retyped.
OEM_ALARMS: tuple[tuple[str, float, int, str, str], ...] = (
    ("coolant_temp_c", ph.COOLANT_ALARM_C, 1, "coolant", "overheating"),
    ("brake_temp_front_c", ph.BRAKE_ALARM_C, 1, "brake", "brake_fade"),
    ("brake_temp_rear_c", ph.BRAKE_ALARM_C, 1, "brake", "brake_fade"),
    *((f"tyre_pressure_kpa_{t}", ph.TYRE_LOW_KPA, -1, "tyre", "tyre_leak") for t in TYRES),
)


def latched_alarm(values: np.ndarray, limit: float, sign: int, hysteresis: float) -> np.ndarray:
    """Alarm state per sample along the last axis: raised when the value reaches the limit
    (``sign`` +1: at or above, -1: at or below), cleared only once it is ``hysteresis`` back
    on the good side, held in between; off at the start."""
    v, lim = sign * np.asarray(values, dtype=float), sign * limit
    code = np.where(v >= lim, 1, np.where(v <= lim - hysteresis, -1, 0))
    t = np.arange(code.shape[-1])
    last = np.maximum.accumulate(np.where(code != 0, t, -1), axis=-1)  # last decisive sample
    decided = np.take_along_axis(code, np.maximum(last, 0), axis=-1)
    return (last >= 0) & (decided == 1)


def oem_alarm_states(readings: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per fault kind, whether any of its OEM alarms is active: ``readings`` are channel ->
    [..., T] sensed values at 1 Hz (the controller checks once a second)."""
    out: dict[str, np.ndarray] = {}
    for channel, limit, sign, group, kind in OEM_ALARMS:
        state = latched_alarm(readings[channel], limit, sign, ph.HYSTERESIS[group])
        out[kind] = out[kind] | state if kind in out else state
    return out


def oem_alarms(
    units: Sequence[int], time_s: np.ndarray, readings: Mapping[str, np.ndarray]
) -> list[Detection]:
    """Alarm episodes of the trucks ``units`` (rows of the [K, T] ``readings``): each starts
    where an alarm of its kind is raised and lasts while any is active."""
    time_s = np.asarray(time_s, dtype=float)
    out: list[Detection] = []
    for kind, state in oem_alarm_states(readings).items():
        rising = state & ~np.concatenate([np.zeros_like(state[:, :1]), state[:, :-1]], axis=1)
        for row, col in zip(*np.nonzero(rising), strict=True):
            out.append(Detection(int(units[row]), kind, float(time_s[col])))
    return sorted(out, key=lambda d: (d.start_s, d.unit, d.kind))


def window_set_alarms(ws: WindowSet) -> list[Detection]:
    """The OEM alarms of the trucks in a window set, raised within the span its windows decide
    over (from its first window's end to its last's), so both detectors see the same time."""
    out: list[Detection] = []
    for r, run in enumerate(ws.runs):
        mine = ws.run == r
        for truck in np.unique(ws.truck[mine]).tolist():
            ends = ws.labels["t_end_s"][mine & (ws.truck == truck)]
            readings = {c: run.channel(c)[truck : truck + 1] for c, *_ in OEM_ALARMS}
            unit = r * 10_000 + truck
            out += [
                d
                for d in oem_alarms([unit], run.time_s, readings)
                if ends.min() <= d.start_s <= ends.max()
            ]
    return sorted(out, key=lambda d: (d.start_s, d.unit, d.kind))


# --- ETA: per-segment historical mean ---------------------------------------------------------------


# ``SegmentMeanETA`` lives with the features: its table is also three of the ETA head's
# inputs, live as in training.
SegmentMeanETA = features.SegmentMeanETA


# --- trajectory and payload ------------------------------------------------------------------------


def constant_velocity(
    speed_mps: np.ndarray, horizons_s: Sequence[float] = HORIZONS_S
) -> np.ndarray:
    """[N, H, 2]: straight ahead along the reported heading at the reported speed (the truck
    frame's x axis), no lateral motion."""
    speed = np.asarray(speed_mps, dtype=float)[:, None]
    forward = speed * np.asarray(horizons_s, dtype=float)[None, :]
    return np.stack([forward, np.zeros_like(forward)], axis=-1)


def onboard_payload(meter_t: np.ndarray) -> np.ndarray:
    """The payload meter's reading, as the truck reports it (HaulTruckPayloadV1): the baseline
    a payload network has to match, computed by the truck itself from its struts."""
    return np.asarray(meter_t, dtype=float)
