"""The domain models' inputs: one definition, numpy only, for training and for live serving.

Everything a network's input is made of lives here and nowhere else: the channel schema (which
channels a truck's telemetry gives, in which order, under which ISO 23725 names), the local
frame positions are measured in, how a gap is held, how a window is cut, and the features
beside a window (the fault head's history, the trajectory head's motion, the ETA head's
route and per-segment table). The experiment pipeline (``fleet.learning.pipeline``) calls these
functions on simulated runs, live serving (``fleet.learning.serving``, ``routes``) on stored
telemetry; the simulator (the truck's side) reads the schema from here too.

This module imports neither PyTorch nor Django nor the simulator (import-linter contracts in
pyproject.toml): a process that only builds inputs never loads a network's runtime.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

# --- the channel schema ---------------------------------------------------------------------------

# Production states as reported (ISO 23725 HaulTruckProductionStateV2), as int8 codes.
STATES = (
    "Off",
    "Driving",
    "Spotting",
    "Loading",
    "Hauling",
    "Dumping",
    "Queued",
    "Stopped",
    "Parked",
)
OFF, DRIVING, SPOTTING, LOADING, HAULING, DUMPING, QUEUED, STOPPED, PARKED = range(9)
MOVING_STATES = (DRIVING, SPOTTING, HAULING, QUEUED)  # on the way to a stop
STOP_STATES = (LOADING, DUMPING)  # a stop at a loading unit or a dump

TYRES = ("1.1", "1.2", "2.1", "2.2", "3.1", "3.2")  # axle.position; axle 1 steers
STRUTS = ("FL", "FR", "RL", "RR")
# Channels a sensor can stick on (the order is the row order of the sensed block).
SENSED_CHANNELS = (
    "coolant_temp_c",
    "brake_temp_front_c",
    "brake_temp_rear_c",
    *(f"tyre_pressure_kpa_{t}" for t in TYRES),
    *(f"tyre_temp_c_{t}" for t in TYRES),
    "fuel_pct",
    *(f"strut_pressure_kpa_{s}" for s in STRUTS),
)
STRUT_SENSORS = {
    "FL": "StrutPressureFL",
    "FR": "StrutPressureFR",
    "RL": "StrutPressureRL",
    "RR": "StrutPressureRR",
}
HEALTH_EXTRAS = (  # (channel, SensorId, Unit) in BasicMachineHealthV2.Additional
    ("coolant_temp_c", "EngineCoolantTemp", "°C"),
    ("brake_temp_front_c", "BrakeTempFront", "°C"),
    ("brake_temp_rear_c", "BrakeTempRear", "°C"),
    *((f"strut_pressure_kpa_{s}", sensor, "kPa") for s, sensor in STRUT_SENSORS.items()),
)
# What a run (or live history, resampled) keeps of the telemetry: everything a window or a
# baseline reads. x / y are local metres east / north (``LocalFrame``).
RAW_CHANNELS = (
    "x_m",
    "y_m",
    "heading_deg",
    "speed_kmh",
    "elevation_m",
    *SENSED_CHANNELS,
    "payload_t",
    "way_id",
)
POSITION_CHANNELS = ("x_m", "y_m", "heading_deg", "speed_kmh", "elevation_m")
# What a window holds. The track is in the frame of the window's last fix (x forward along its
# reported heading, y to the left), so a window means the same wherever on the map it was cut.
# The payload meter is left out: the payload head must estimate from the struts, and the meter
# is the baseline it is judged against. Counters (machine hours) and WayId carry no physics.
INPUT_CHANNELS = (
    "track_fwd_m",
    "track_left_m",
    "heading_rel_deg",
    "speed_kmh",
    "elevation_m",
    *SENSED_CHANNELS,
)
# The networks these inputs feed (registry names, in lineage order: L0, L1, the L2 heads).
L0_NAME, L1_NAME = "telemetry-l0", "mining-l1"
HEADS = ("fault", "eta", "trajectory", "payload")
NETWORKS = (L0_NAME, L1_NAME, *HEADS)
FAULT_CLASSES = ("normal", "overheating", "tyre_leak", "brake_fade", "stuck_sensor")
HORIZONS_S = (1, 3, 5)  # trajectory targets, seconds ahead
HZ = 1.0  # the sample rate of every series and window
WINDOW_S = 64  # samples in a window (s at 1 Hz)
STRIDE_S = 30  # s between one truck's training windows, and the live ETA table's samples

# --- frames ----------------------------------------------------------------------------------------

# WGS84 ellipsoid
_A = 6_378_137.0  # m, semi-major axis
_F = 1 / 298.257223563
_E2 = _F * (2 - _F)


class LocalFrame:
    """Longitude / latitude <-> local east / north metres around (lon0, lat0), with the WGS84
    meridional and prime-vertical radii at lat0: over a pit a few km across the plane differs
    from the ellipsoid by well under a metre, and converting back with the same constants is
    exact."""

    def __init__(self, lon0: float, lat0: float) -> None:
        self.lon0, self.lat0 = lon0, lat0
        phi = math.radians(lat0)
        w = 1 - _E2 * math.sin(phi) ** 2
        meridional = _A * (1 - _E2) / w**1.5  # m per radian of latitude
        prime_vertical = _A / math.sqrt(w)  # m per radian of longitude, at the equator of phi
        self.m_per_deg_lat = math.radians(1) * meridional
        self.m_per_deg_lon = math.radians(1) * prime_vertical * math.cos(phi)

    def to_local(self, lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
        x = (np.asarray(lon, dtype=float) - self.lon0) * self.m_per_deg_lon
        y = (np.asarray(lat, dtype=float) - self.lat0) * self.m_per_deg_lat
        return x, y

    def to_lonlat(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        lon = self.lon0 + np.asarray(x, dtype=float) / self.m_per_deg_lon
        lat = self.lat0 + np.asarray(y, dtype=float) / self.m_per_deg_lat
        return lon, lat


# --- readings to a series ----------------------------------------------------------------------------

_EXTRA_SENSORS = {sensor: channel for channel, sensor, _ in HEALTH_EXTRAS}
_TYRES = frozenset(TYRES)


def health_readings(body: Any) -> dict[str, float]:
    """The sensed channels in one BasicMachineHealthV2 body (as stored: its wire form).
    A reading the truck reported as unavailable (null) is left out, so it is held."""
    if isinstance(body, str | bytes):
        body = orjson.loads(body)
    out: dict[str, float] = {}
    if body.get("FuelLevel") is not None:
        out["fuel_pct"] = float(body["FuelLevel"])
    for tyre in body.get("Tire") or ():
        position = tyre.get("TirePosition")
        if position not in _TYRES:
            continue
        if tyre.get("TirePressure") is not None:
            out[f"tyre_pressure_kpa_{position}"] = float(tyre["TirePressure"])
        if tyre.get("TireTemperature") is not None:
            out[f"tyre_temp_c_{position}"] = float(tyre["TireTemperature"])
    for reading in body.get("Additional") or ():
        channel = _EXTRA_SENSORS.get(reading.get("SensorId"))
        if channel is not None and reading.get("Value") is not None:
            out[channel] = float(reading["Value"])
    return out


def hold_last(
    series: np.ndarray, ok: np.ndarray, channels: Sequence[str] = POSITION_CHANNELS
) -> None:
    """In place: where ``ok`` [K, T] is False, ``channels`` of a ``[K, len(RAW_CHANNELS), T]``
    series keep their last reported value, or the first one before any. During a GPS dropout
    the position channels keep the last fix (what the FMS's latest-state store holds); live
    serving holds a missed health reading the same way."""
    rows = [RAW_CHANNELS.index(c) for c in channels]
    t = np.arange(ok.shape[1])
    last = np.maximum.accumulate(np.where(ok, t, -1), axis=1)
    first = np.argmax(ok, axis=1)[:, None]
    src = np.where(last >= 0, last, first)
    k = np.arange(ok.shape[0])[:, None]
    for row in rows:
        series[:, row] = series[:, row][k, src]


# --- the window ----------------------------------------------------------------------------------------


def cut_windows(series: np.ndarray, truck: np.ndarray, end: np.ndarray, length: int) -> np.ndarray:
    """``[n, len(INPUT_CHANNELS), length]`` windows ending at rows ``end`` of ``truck`` in a
    ``[K, len(RAW_CHANNELS), T]`` 1 Hz series: the one definition of a window, for the runs
    and for live telemetry."""
    cols = end[:, None] + np.arange(1 - length, 1)  # [n, L]
    raw = series[truck[:, None], :, cols].transpose(0, 2, 1)  # [n, C_raw, L]
    col = {name: raw[:, RAW_CHANNELS.index(name)] for name in RAW_CHANNELS}
    heading = np.radians(col["heading_deg"][:, -1:])
    dx = col["x_m"] - col["x_m"][:, -1:]
    dy = col["y_m"] - col["y_m"][:, -1:]
    col["track_fwd_m"] = dx * np.sin(heading) + dy * np.cos(heading)
    col["track_left_m"] = -dx * np.cos(heading) + dy * np.sin(heading)
    col["heading_rel_deg"] = (col["heading_deg"] - col["heading_deg"][:, -1:] + 180.0) % 360 - 180
    return np.stack([col[name] for name in INPUT_CHANNELS], axis=1).astype(np.float32)


# --- the fault head's context: a truck's own recent history ---------------------------------------------
#
# A 64 s window cannot show a slow degradation: coolant creeping 0.5 deg C a minute moves 0.5 deg C
# in it, under 0.3 deg C of sensor noise, and a tyre losing 1 kPa a minute moves 1 kPa under 2 kPa
# of noise. What shows it is the truck against its own past: the level now against the level some
# minutes ago. The FMS holds that past (the history store), so these features are what it can
# compute for every decision; the simulator's runs give the same.
#
# For every sensed channel and every lag: mean of the last ``NOW_S`` seconds minus the mean of
# ``NOW_S`` seconds ``lag`` earlier (drift). For tyre pressures also that drift against the median
# drift of the truck's tyres (heat, load and altitude move all tyres together, a leak moves one).
# Beside them, the change of elevation over each lag and the mean speed over the longest (a
# climb heats the engine and the brakes without any fault).

NOW_S = 60  # seconds averaged for "now" and for each past reference
LAGS_S = (300, 900)  # how far back the references are
TYRE_PRESSURES = tuple(c for c in SENSED_CHANNELS if c.startswith("tyre_pressure"))
# How much history a decision needs: "now" at the longest lag.
HISTORY_S = NOW_S + max(LAGS_S)


def context_names(lags_s: tuple[int, ...] = LAGS_S) -> tuple[str, ...]:
    """The fault head's context features, in ``series_context`` order: the history features
    (55 with the default lags: the features-only reference of ``backbone_gain`` is frozen at
    them, so later features are appended after them, never inserted), then brake fade's."""
    names: list[str] = []
    for lag in lags_s:
        names += [f"{c}_drift_{lag}s" for c in SENSED_CHANNELS]
        names += [f"{c}_vs_tyres_{lag}s" for c in TYRE_PRESSURES]
        names.append(f"elevation_m_change_{lag}s")
    names.append(f"speed_kmh_mean_{max(lags_s)}s")
    return (*names, *FADE_FEATURES)


def _means(series: np.ndarray, truck: np.ndarray, end: np.ndarray, span: int) -> np.ndarray:
    """[n, C]: mean of rows (end - span, end] per window, from a cumulative sum (the first
    rows of a run average what exists)."""
    csum = np.concatenate(
        [np.zeros((*series.shape[:2], 1)), np.cumsum(series, axis=2, dtype=np.float64)], axis=2
    )
    hi = end + 1
    lo = np.maximum(hi - span, 0)
    count = np.maximum(hi - lo, 1)[:, None]
    return (csum[truck, :, hi] - csum[truck, :, lo]) / count


def series_context(
    series: np.ndarray,
    truck: np.ndarray,
    end: np.ndarray,
    hz: float = HZ,
    lags_s: tuple[int, ...] = LAGS_S,
) -> np.ndarray:
    """[n, F] context features (``context_names``) of windows ending at rows ``end`` of
    ``truck`` in a ``[K, len(RAW_CHANNELS), T]`` series sampled at ``hz``."""
    now_rows = max(round(NOW_S * hz), 1)
    sensed = [RAW_CHANNELS.index(c) for c in SENSED_CHANNELS]
    tyres = [SENSED_CHANNELS.index(c) for c in TYRE_PRESSURES]
    elevation, speed = RAW_CHANNELS.index("elevation_m"), RAW_CHANNELS.index("speed_kmh")
    speed_series, elevation_series = series[:, speed], series[:, elevation]
    series = series[:, [*sensed, elevation, speed]]
    now = _means(series, truck, end, now_rows)
    columns: list[np.ndarray] = []
    for lag in lags_s:
        past_end = np.maximum(end - round(lag * hz), 0)
        drift = now - _means(series, truck, past_end, now_rows)
        tyre = drift[:, tyres]
        columns += [drift[:, : len(sensed)], tyre - np.median(tyre, axis=1, keepdims=True)]
        columns.append(drift[:, len(sensed) : len(sensed) + 1])
    longest = max(round(max(lags_s) * hz), 1)
    columns.append(_means(series[:, -1:], truck, end, longest))
    columns.append(descent_overspeed(speed_series, elevation_series, truck, end, hz))
    return np.concatenate(columns, axis=1).astype(np.float32)


# --- brake fade: the deceleration achieved against the grade ----------------------------------------
#
# A faded truck loses that share of every braking force (the simulator's fault physics; its
# retarder too). Its controller closes the gap to the target speed each tick, so on a descent
# held at a posted limit the truck settles above the limit by the braking it lacks:
# f x g x |grade + rolling resistance| / (1 - f) per second of control, about +0.3 km/h at
# 13 % fade on an 8.5 % ramp. Brake oil stays far from its alarm (brakes work only on empty
# descents here), so this excess speed is what shows a fade. Measured on the validation site
# D at 1 Hz (docs/models.md, "Validation experiments"): the truck's mean excess over its last
# 15 minutes of steady descents separates fade windows from normal ones with AUC 0.945 (0.91
# of them at a 5 % false-positive rate).
#
# The limit a truck holds is read off its own speed: the posted limits of a map are multiples
# of 5 km/h, on ways in km/h and in policy zones in m/s to 0.1 (30 km/h posts as 8.3 m/s,
# 29.88 km/h); the limit taken is the largest of those at or below the speed. A speed more than
# 1 km/h above it is not holding a limit (accelerating, or another constraint) and is left out.

FADE_SPAN_S = 900  # the history the excess is averaged over
FADE_GRADE = -0.03  # a descent: elevation falling faster than 3 m per 100 m
FADE_GRADE_SPAN_S = 10  # the grade is the elevation change over the distance of the last 10 s
FADE_FEATURES = ("descent_overspeed_kmh_900s", "descent_share_900s")
_LIMITS_KMH = np.arange(15.0, 65.0, 5.0)
POSTED_LIMITS_KMH = np.unique(np.concatenate([_LIMITS_KMH, np.round(_LIMITS_KMH / 3.6, 1) * 3.6]))


def descent_overspeed(
    speed_kmh: np.ndarray, elevation_m: np.ndarray, truck: np.ndarray, end: np.ndarray, hz: float
) -> np.ndarray:
    """[n, 2] (``FADE_FEATURES``) from ``[K, T]`` speed and elevation series: the mean excess
    speed (km/h) over the posted limit held on steady descents in the last ``FADE_SPAN_S``,
    and the share of that span spent so (0 and 0 without any)."""
    excess, holding = _descent_excess(speed_kmh.astype(np.float64), elevation_m, hz)
    span = max(round(FADE_SPAN_S * hz), 1)
    both = np.stack([np.where(holding, excess, 0.0), holding.astype(np.float64)], axis=1)
    means = _means(both, truck, end, span)
    share = means[:, 1]
    overspeed = np.where(share > 0, means[:, 0] / np.maximum(share, 1e-9), 0.0)
    return np.stack([overspeed, share], axis=1)


def _descent_excess(
    speed_kmh: np.ndarray, elevation_m: np.ndarray, hz: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample of ``[K, T]`` series: the speed over the posted limit below it (km/h), and
    whether the truck is holding a limit on a descent then."""
    back = max(round(FADE_GRADE_SPAN_S * hz), 1)
    rise = np.zeros_like(speed_kmh)
    run = np.zeros_like(speed_kmh)
    rise[:, back:] = elevation_m[:, back:] - elevation_m[:, :-back]
    # Summed sample by sample, not as a difference of a cumulative sum: a live series and a
    # run that start at different times then give the same figures bit for bit.
    for k in range(back):
        run[:, back:] += speed_kmh[:, k + 1 : speed_kmh.shape[1] - back + k + 1]
    run /= 3.6 * hz
    # Under 30 m travelled the GPS's vertical noise (~1 m) swamps the grade.
    descending = (run > 30.0) & (rise < FADE_GRADE * np.maximum(run, 1e-9))
    far, near = max(round(4 * hz), 1), max(round(2 * hz), 1)
    steady = np.zeros_like(descending)
    steady[:, far:] = (np.abs(speed_kmh[:, far:] - speed_kmh[:, :-far]) < 0.5) & (
        np.abs(speed_kmh[:, far:] - speed_kmh[:, far - near : -near]) < 0.3
    )
    below = np.searchsorted(POSTED_LIMITS_KMH, speed_kmh + 0.05, side="right") - 1
    limit = POSTED_LIMITS_KMH[np.maximum(below, 0)]
    excess = speed_kmh - limit
    holding = descending & steady & (below >= 0) & (excess < 1.0)
    return excess, holding


# --- the trajectory head's motion features --------------------------------------------------------------

TRAJECTORY_FEATURES = ("speed_mps", "yaw_rate_rps", "accel_mps2", "speed_prev_mps")
YAW_SPAN_S, ACCEL_SPAN_S = 5, 3


def trajectory_features(windows: np.ndarray) -> np.ndarray:
    """[N, 4] from the window itself: speed (m/s) and yaw rate (rad/s, positive turning left,
    as the truck frame's y axis) at its end, acceleration (m/s2) and the speed a second
    earlier. The yaw rate is averaged over ``YAW_SPAN_S``: the reported heading's noise makes
    a one-second difference swing the predicted arc from side to side."""
    speed = windows[:, INPUT_CHANNELS.index("speed_kmh")] / 3.6
    heading = windows[:, INPUT_CHANNELS.index("heading_rel_deg")]  # compass: clockwise
    turn = (heading[:, -1] - heading[:, -1 - YAW_SPAN_S] + 180.0) % 360.0 - 180.0
    yaw_rate = -np.radians(turn) / YAW_SPAN_S
    accel = (speed[:, -1] - speed[:, -1 - ACCEL_SPAN_S]) / ACCEL_SPAN_S
    return np.stack([speed[:, -1], yaw_rate, accel, speed[:, -2]], axis=1).astype(np.float32)


# --- the trajectory head's road ahead -----------------------------------------------------------

# The planned route ahead of the truck, in the distance domain: where the road goes, not how
# fast the truck will be on it. Chosen on site D (docs/models.md, "Validation, 2026-12-07"):
# with it the trajectory head's ADE fell from 0.90 to 0.78 of constant velocity's.
AHEAD_M = (5.0, 10.0, 20.0, 30.0, 45.0, 60.0)  # points along the route, m from the truck
RISE_M = (30.0, 60.0)  # the road's rise over these distances
STOP_CAP_M = 200.0  # the distance to the next stop is only told up to this
AHEAD_FEATURES = (
    *(f"ahead_{int(d)}m_{axis}_m" for d in AHEAD_M for axis in ("fwd", "left")),
    *(f"rise_{int(d)}m_m" for d in RISE_M),
    "stop_in_m",
    "route_known",
)
# Where the route is at the distance the truck's present speed covers by each horizon: the
# constant-velocity guess moved onto the road (a small MLP does not interpolate between the
# route's points well by itself).
ON_ROUTE_FEATURES = tuple(f"on_route_{h}s_{axis}_m" for h in HORIZONS_S for axis in ("fwd", "left"))
TRAJECTORY_INPUTS = (*TRAJECTORY_FEATURES, *AHEAD_FEATURES, *ON_ROUTE_FEATURES)


def route_ahead(path: np.ndarray, heading_deg: float) -> np.ndarray:
    """[len(AHEAD_FEATURES)] float32 from the route ahead of a truck, ``path`` [M, 3] (x east,
    y north, elevation; local metres) from where the truck is to its next stop (or at least
    ``STOP_CAP_M`` of it), in the frame of its reported ``heading_deg`` (compass): each point
    ``AHEAD_M`` along the route as (forward, left) of the first, the rise over ``RISE_M``, the
    distance to the stop (capped), and 1 for a known route. A route shorter than a distance ends
    at the stop: its points stay there. Training passes the truck's true path to its next stop,
    live serving the route the FMS planned (``routes.route_samples``)."""
    path = np.asarray(path, dtype=np.float64)
    if path.ndim != 2 or path.shape[0] == 0 or path.shape[1] != 3:
        return no_route_ahead()
    step = np.hypot(np.diff(path[:, 0]), np.diff(path[:, 1]))
    keep = np.concatenate([[True], step > 1e-6])  # a standing truck repeats its position
    path, along = path[keep], np.concatenate([[0.0], np.cumsum(step[step > 1e-6])])
    at = np.asarray(AHEAD_M)
    dx = np.interp(at, along, path[:, 0]) - path[0, 0]
    dy = np.interp(at, along, path[:, 1]) - path[0, 1]
    h = math.radians(float(heading_deg))
    forward = dx * math.sin(h) + dy * math.cos(h)
    left = -dx * math.cos(h) + dy * math.sin(h)
    rise = np.interp(np.asarray(RISE_M), along, path[:, 2]) - path[0, 2]
    stop = min(float(along[-1]), STOP_CAP_M)
    points = np.stack([forward, left], axis=1).ravel()
    return np.concatenate([points, rise, [stop, 1.0]]).astype(np.float32)


def trajectory_inputs(motion: np.ndarray, ahead: np.ndarray) -> np.ndarray:
    """[N, len(TRAJECTORY_INPUTS)]: the trajectory head's features from its motion features
    ([N, 4], ``trajectory_features``) and the road ahead ([N, 16], ``route_ahead``): both, then
    the route's point (forward, left) at speed x horizon along it, read off the road ahead's
    points (linear between them, held at the last); zeros where no route is known."""
    motion = np.asarray(motion, dtype=np.float32).reshape(-1, len(TRAJECTORY_FEATURES))
    ahead = np.asarray(ahead, dtype=np.float32).reshape(-1, len(AHEAD_FEATURES))
    points = ahead[:, : 2 * len(AHEAD_M)].reshape(-1, len(AHEAD_M), 2)
    along = np.concatenate([[0.0], AHEAD_M])
    reach = np.maximum(motion[:, :1], 0.0) * np.asarray(HORIZONS_S, dtype=np.float32)  # [N, H]
    on_route = np.zeros((len(motion), len(HORIZONS_S), 2), dtype=np.float32)
    for i in np.flatnonzero(ahead[:, -1] > 0.5):
        for axis in (0, 1):
            on_route[i, :, axis] = np.interp(
                reach[i], along, np.concatenate([[0.0], points[i, :, axis]])
            )
    return np.concatenate([motion, ahead, on_route.reshape(len(motion), -1)], axis=1)


def no_route_ahead() -> np.ndarray:
    """The road-ahead features of a truck with no known route (at a stop, parked, no plan)."""
    return np.zeros(len(AHEAD_FEATURES), dtype=np.float32)


# --- the ETA head's route and per-segment table ----------------------------------------------------------

ROUTE_FEATURES = ("distance_left_m", "rise_m", "climb_m", "descent_m", "payload_t", "to_dump")
ETA_FEATURES = (*ROUTE_FEATURES, "segment_p10_s", "segment_mean_s", "segment_p90_s")


def next_stops(state: np.ndarray) -> np.ndarray:
    """[K, T] int32 from a [K, T] array of production states sampled at a fixed rate: each
    sample's next stop (the row where the next Loading or Dumping starts) while the truck is
    on its way there (MOVING_STATES) and not first going to the park; -1 elsewhere. Training
    labels and the live per-segment ETA table both use it."""
    rows = state.shape[1]
    t = np.arange(rows)
    stop = np.isin(state, STOP_STATES)
    arrival = stop & ~np.concatenate([np.zeros_like(stop[:, :1]), stop[:, :-1]], axis=1)
    parking = state == PARKED
    nxt = _next_true(arrival, t)
    park = _next_true(parking, t)
    valid = np.isin(state, MOVING_STATES) & (nxt < rows) & (nxt < park)
    return np.where(valid, nxt, -1).astype(np.int32)


def _next_true(flags: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per row, the first index >= it where ``flags`` is set (len when none)."""
    marked = np.where(flags, t, len(t))
    return np.minimum.accumulate(marked[:, ::-1], axis=1)[:, ::-1]


def nearest_destination(world: Any, xy: np.ndarray, kinds: str = "all") -> np.ndarray:
    """Index (loading units, then dumps: the ``dest`` numbering) of the service node nearest
    each point of ``xy`` [..., 2] on a site's road graph (``World``: its ``loading_units``,
    ``dumps`` and ``node_xyz``); ``kinds`` "loading" or "dump" only considers those."""
    dests = (*world.loading_units, *world.dumps)
    pick = {
        "all": range(len(dests)),
        "loading": range(len(world.loading_units)),
        "dump": range(len(world.loading_units), len(dests)),
    }[kinds]
    points = world.node_xyz[[dests[i].node for i in pick], :2]
    dist = np.linalg.norm(np.asarray(xy)[..., None, :] - points, axis=-1)
    return np.asarray(pick)[np.argmin(dist, axis=-1)]


def segment_keys(site: int, way: np.ndarray, dest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keys of the per-segment ETA table: (segment, stop), unique across sites (WayIds repeat
    between maps); stop -1 where there is no destination."""
    way = np.asarray(way).astype(np.int64)
    dest = np.asarray(dest)
    return site * 1_000_000 + way, np.where(dest >= 0, site * 1_000 + dest, -1)


@dataclass
class SegmentMeanETA:
    """Time to the next stop as the historical mean of the training windows on the same
    segment (way) bound for the same stop (loading unit or dump); a (segment, stop) seen fewer
    than ``min_count`` times falls back to the stop's mean, then to the overall mean. P10 / P90
    are the same group's empirical quantiles (for a coverage reference). Fit and predict with
    the window sets' ``segment`` and ``stop`` labels, which stay apart between sites; the
    history must be the same site's (``pretrain_train`` for A + B, ``adapt_train`` for C,
    ``heldout_history`` for D). The ETA baseline, and three of the ETA head's features."""

    min_count: int = 5
    table: dict[tuple[int, int], tuple[float, float, float]] = field(default_factory=dict)
    by_stop: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    overall: tuple[float, float, float] = (float("nan"),) * 3

    @classmethod
    def fit(
        cls, segment: np.ndarray, stop: np.ndarray, eta_s: np.ndarray, min_count: int = 5
    ) -> SegmentMeanETA:
        ok = np.isfinite(eta_s) & (np.asarray(stop) >= 0)
        seg, stop, eta = np.asarray(segment)[ok], np.asarray(stop)[ok], np.asarray(eta_s)[ok]
        model = cls(min_count, overall=_summary(eta))
        for key in {(int(g), int(p)) for g, p in zip(seg, stop, strict=True)}:
            group = eta[(seg == key[0]) & (stop == key[1])]
            if len(group) >= min_count:
                model.table[key] = _summary(group)
        for p in np.unique(stop).tolist():
            model.by_stop[int(p)] = _summary(eta[stop == p])
        return model

    def predict(self, segment: np.ndarray, stop: np.ndarray) -> np.ndarray:
        """[N, 3]: P10, P50 (the mean), P90 in seconds."""
        rows = [
            self.table.get((int(g), int(p))) or self.by_stop.get(int(p)) or self.overall
            for g, p in zip(np.asarray(segment), np.asarray(stop), strict=True)
        ]
        return np.asarray(rows, dtype=float).reshape(len(rows), 3)


def _summary(eta: np.ndarray) -> tuple[float, float, float]:
    if not len(eta):
        return (float("nan"),) * 3
    p10, p90 = np.percentile(eta, [10, 90])
    return (float(p10), float(eta.mean()), float(p90))


def eta_features(labels: Mapping[str, np.ndarray], history: SegmentMeanETA) -> np.ndarray:
    """[N, 9] (``ETA_FEATURES``): the route features, then the site's own history for the same
    way and stop (the per-segment table's P10, mean, P90). The network corrects what the FMS
    already knows of this road with what the truck is doing now; without the table it would
    have to guess a new site's queues at its shovels from other sites.

    ``labels``: ``{"route": [N, 6] (ROUTE_FEATURES), "segment": [N], "stop": [N]}``, a window
    set's labels in training, the planned route and its keys live."""
    table = history.predict(labels["segment"], labels["stop"])
    route = np.asarray(labels["route"], dtype=np.float64).reshape(len(table), len(ROUTE_FEATURES))
    return np.concatenate([route, table], axis=1).astype(np.float32)


# --- one decision's inputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowInputs:
    """What a window gives the heads: the window ``[n, C, L]``, the fault head's context
    ``[n, F]`` and the trajectory head's motion features ``[n, 4]``."""

    window: np.ndarray
    context: np.ndarray
    trajectory: np.ndarray


def window_inputs(
    series: np.ndarray, truck: np.ndarray, end: np.ndarray, length: int = WINDOW_S
) -> WindowInputs:
    """The window-based inputs of windows ending at rows ``end`` of ``truck`` in a
    ``[K, len(RAW_CHANNELS), T]`` 1 Hz series: one code path for a run's windows and a live
    truck's."""
    window = cut_windows(series, truck, end, length)
    return WindowInputs(
        window=window,
        context=series_context(series, truck, end, HZ),
        trajectory=trajectory_features(window),
    )
