"""Each truck's recent telemetry, kept where ingest already has it: the live heads' history
without re-reading the database.

Live serving needs, per truck and decision, the last ``HISTORY_S`` seconds (960 s: the fault
head's context reaches back "now", 60 s, at its longest lag, 900 s) of positions and health
readings at 1 Hz. Reading them back from PostgreSQL every round costs a query of 16 minutes
per truck per round; ingest had every one of those messages in hand a moment earlier. So the
ingest process keeps them: a ring of ``CAPACITY_S`` one-second slots per truck (numpy arrays,
one row per truck, grown as trucks appear), fed by every batch ingest admits
(``serving.on_messages_admitted``, inside the batch's transaction).

A slot holds what the history's own reading keeps of that second: the position of the last
message sent in it (by envelope Timestamp, then HeaderId, as ``fleet.telemetry.queries``
orders them), and the health readings applied in the order they were sent (a later message's
reading replaces an earlier one's, a sensor it reports as unavailable keeps the earlier one).
A redelivered or re-read message lands on its own slot again: feeding is idempotent, so the
history and the live stream merge without bookkeeping.

The history is read (``fleet.telemetry.queries.recent_positions`` / ``recent_events``) only to
fill a gap, and only from where the gap starts:

- a truck first seen (a restart): its whole ``HISTORY_S``;
- a jump in a message topic's HeaderId (a message went to another ingest replica of the shared
  subscription, or was lost) or in its Timestamps (more than ``GAP_S``: a reconnect): from
  where the gap starts;
- in a process that no ingest feeds (a benchmark's), a truck whose newest known message is
  more than ``GAP_S`` old when it is decided on: from its newest.

``series`` turns a truck's slots into the ``[len(RAW_CHANNELS), n]`` 1 Hz series the feature
module cuts windows from, holding a missed second as the training runs hold a GPS dropout
(``features.hold_last``), exactly as the series resampled from the stored rows.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from fleet.learning.features import (
    HISTORY_S,
    POSITION_CHANNELS,
    RAW_CHANNELS,
    SENSED_CHANNELS,
    LocalFrame,
    health_readings,
    hold_last,
)

HEALTH = "BasicMachineHealthV2"
# Slots per truck: the heads' longest history and some slack for messages that arrive out of
# order. About 133 bytes a truck-second: 135 MB for 1,000 trucks (rows grow by doubling).
CAPACITY_S = HISTORY_S + 32
# A silence longer than this (s) is a gap to read back (a reconnect); shorter ones are a missed
# fix or two, held as training holds them.
GAP_S = 5
_SENSED = {name: i for i, name in enumerate(SENSED_CHANNELS)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch (floor), as the history's ``floor(epoch * 1000)``."""
    return (moment - _EPOCH) // _MS


@dataclass(frozen=True)
class Seconds:
    """One truck's readings over seconds [start, end], a slot each (NaN where none)."""

    start: int
    end: int
    lonlat: np.ndarray  # [n, 2] float64
    motion: np.ndarray  # [n, 3] float32: heading_deg, speed_kmh, elevation_m
    pos_ok: np.ndarray  # [n] bool: a position in that second
    health: np.ndarray  # [len(SENSED_CHANNELS), n] float32
    health_ok: np.ndarray  # [n] bool: a health message with a reading in that second
    newest_health: int  # the second of the truck's newest health message (-1: none)


def series(seconds: Seconds) -> tuple[np.ndarray | None, tuple[float, float, float]]:
    """``[len(RAW_CHANNELS), n]`` float32 at 1 Hz over ``seconds``: a missing second held from
    the one before (or the first after, before any), exactly as the training runs hold a GPS
    dropout. x / y are local metres east / north around the last fix (the simulator's frame;
    a window only uses displacements from its last fix). Payload and WayId are no input of any
    head and stay NaN. None if a channel never reported; with the last fix (lon, lat,
    heading)."""
    n = seconds.end - seconds.start + 1
    out = np.full((1, len(RAW_CHANNELS), n), np.nan, dtype=np.float32)
    cols = np.flatnonzero(seconds.pos_ok)
    lonlat = seconds.lonlat[cols]
    motion = seconds.motion[cols]
    lon, lat, heading = float(lonlat[-1, 0]), float(lonlat[-1, 1]), float(motion[-1, 0])
    x, y = LocalFrame(lon, lat).to_local(lonlat[:, 0], lonlat[:, 1])
    for name, values in zip(
        POSITION_CHANNELS, (x, y, motion[:, 0], motion[:, 1], motion[:, 2]), strict=True
    ):
        out[0, RAW_CHANNELS.index(name), cols] = values
    out[0, [RAW_CHANNELS.index(c) for c in SENSED_CHANNELS]] = seconds.health
    hold_last(out, seconds.pos_ok[None])
    hold_last(out, seconds.health_ok[None], SENSED_CHANNELS)
    used = [RAW_CHANNELS.index(c) for c in (*POSITION_CHANNELS, *SENSED_CHANNELS)]
    if not np.isfinite(out[0, used]).all():
        return None, (lon, lat, heading)
    return out[0], (lon, lat, heading)


class RecentTelemetry:
    """The rings of every truck this process has seen (see the module docstring). Thread-safe:
    ingest's writer feeds it while the dispatcher reads it."""

    def __init__(self, capacity_s: int = CAPACITY_S, rows: int = 64) -> None:
        if capacity_s < HISTORY_S:
            raise ValueError(f"a ring must hold the heads' history ({HISTORY_S} s)")
        self.capacity = capacity_s
        self._lock = threading.Lock()
        self._row: dict[uuid.UUID, int] = {}
        # truck -> the first second to read back (a gap seen while feeding)
        self._fill_from: dict[uuid.UUID, int] = {}
        # (truck, message name) -> (the newest HeaderId, its second): a jump is a gap
        self._header: dict[tuple[uuid.UUID, str], tuple[int, int]] = {}
        self._allocate(rows)

    # --- storage -------------------------------------------------------------------------------

    def _allocate(self, rows: int) -> None:
        s = self.capacity
        fresh = {
            "lonlat": np.full((rows, s, 2), np.nan),
            "motion": np.full((rows, s, 3), np.nan, dtype=np.float32),
            # A slot belongs to second ms // 1000 of its message; -1: empty.
            "pos_ms": np.full((rows, s), -1, dtype=np.int64),
            "pos_seq": np.full((rows, s), -1, dtype=np.int64),
            "health": np.full((rows, len(SENSED_CHANNELS), s), np.nan, dtype=np.float32),
            "health_ms": np.full((rows, s), -1, dtype=np.int64),
            "health_seq": np.full((rows, s), -1, dtype=np.int64),
            "health_ok": np.zeros((rows, s), dtype=bool),
            "newest_pos": np.full(rows, -1, dtype=np.int64),  # ms
            "newest_health": np.full(rows, -1, dtype=np.int64),  # ms
            # ms up to which the truck's history is known here (fed, or read back)
            "covered": np.full(rows, -1, dtype=np.int64),
            # when ingest last fed the truck here (time.monotonic(); -inf: never)
            "fed_at": np.full(rows, -np.inf),
        }
        old = len(self._row)
        for name, array in fresh.items():
            if old:
                array[:old] = getattr(self, name)[:old]
            setattr(self, name, array)

    def _row_of(self, truck: uuid.UUID) -> int:
        row = self._row.get(truck)
        if row is None:
            row = len(self._row)
            if row == len(self.covered):
                self._allocate(2 * row)
            self._row[truck] = row
        return row

    def __len__(self) -> int:
        return len(self._row)

    def clear(self) -> None:
        with self._lock:
            self._row.clear()
            self._fill_from.clear()
            self._header.clear()
            self._allocate(64)

    # --- feeding -------------------------------------------------------------------------------

    def record(self, admitted: Iterable[Any]) -> None:
        """Feed a batch of ``fleet.telemetry.intake.Admitted`` messages (late ones too: the
        history has them)."""
        fed_at = time.monotonic()
        with self._lock:
            for item in admitted:
                envelope = item.envelope
                truck = envelope.equipment_id
                new = truck not in self._row
                row = self._row_of(truck)
                ms = epoch_ms(envelope.timestamp)
                seq = -1 if envelope.sequence is None else envelope.sequence
                if new:  # first seen (a restart): its whole history is to be read
                    self._mark(truck, 0)
                self._note_gap(truck, row, envelope.name, envelope.sequence, ms)
                position = envelope.position
                if position is not None:
                    self._put_position(
                        row,
                        ms,
                        seq,
                        position.longitude,
                        position.latitude,
                        (position.heading, position.speed, position.elevation),
                    )
                health = envelope.bodies.get(HEALTH)
                if health is not None:
                    self._put_health(row, ms, seq, health_readings(health.to_wire()))
                if ms > self.covered[row]:
                    self.covered[row] = ms
                self.fed_at[row] = fed_at

    def _note_gap(
        self, truck: uuid.UUID, row: int, name: str, sequence: int | None, ms: int
    ) -> None:
        second = ms // 1000
        known = int(self.covered[row])
        if known >= 0 and second - known // 1000 > GAP_S:
            self._mark(truck, known // 1000)
        if sequence is None:
            return
        last = self._header.get((truck, name))
        if last is not None and sequence > last[0] + 1:
            self._mark(truck, last[1])
        # Also when it went back: the truck's counter restarts with its session.
        self._header[(truck, name)] = (sequence, second)

    def _mark(self, truck: uuid.UUID, second: int) -> None:
        self._fill_from[truck] = min(self._fill_from.get(truck, second), second)

    def _put_position(
        self,
        row: int,
        ms: int,
        seq: int,
        lon: float,
        lat: float,
        motion: tuple[float, float, float],
    ) -> None:
        slot = (ms // 1000) % self.capacity
        held = int(self.pos_ms[row, slot])
        if held >= 0 and (
            held // 1000 > ms // 1000
            or (held // 1000 == ms // 1000 and (held, int(self.pos_seq[row, slot])) > (ms, seq))
        ):
            return  # a newer second's slot, or a later message of the same second
        self.pos_ms[row, slot] = ms
        self.pos_seq[row, slot] = seq
        self.lonlat[row, slot] = (lon, lat)
        self.motion[row, slot] = motion
        if ms > self.newest_pos[row]:
            self.newest_pos[row] = ms

    def _put_health(self, row: int, ms: int, seq: int, readings: Mapping[str, float]) -> None:
        slot = (ms // 1000) % self.capacity
        if ms > self.newest_health[row]:
            self.newest_health[row] = ms
        held = int(self.health_ms[row, slot])
        if held >= 0 and held // 1000 > ms // 1000:
            return
        values = self.health[row, :, slot]
        if held < 0 or held // 1000 < ms // 1000:  # the second's first message
            values[:] = np.nan
            later = False
        else:
            later = (held, int(self.health_seq[row, slot])) > (ms, seq)
        for name, value in readings.items():
            # An earlier message of the second only fills what the later ones left out.
            if not later or math.isnan(values[_SENSED[name]]):
                values[_SENSED[name]] = value
        if not later:
            self.health_ms[row, slot] = ms
            self.health_seq[row, slot] = seq
            self.health_ok[row, slot] = bool(readings)

    # --- filling gaps from the history -----------------------------------------------------------

    def gaps(self, trucks: Iterable[uuid.UUID], now: datetime, since_s: float) -> dict:
        """The trucks whose ring lacks part of the last ``since_s`` seconds before ``now``:
        truck -> when to read the history from. Taken: a gap is reported once."""
        earliest = now - timedelta(seconds=since_s)
        now_ms = epoch_ms(now)
        out: dict[uuid.UUID, datetime] = {}
        with self._lock:
            for truck in trucks:
                row = self._row.get(truck)
                start: int | None
                if row is None:
                    out[truck] = earliest
                    continue
                start = self._fill_from.pop(truck, None)
                covered = int(self.covered[row])
                if covered < 0:
                    out[truck] = earliest
                    continue
                # A truck ingest feeds here has its gaps found as its messages arrive (a jump in
                # HeaderId or Timestamp). Only one never fed here (a process no ingest feeds) is
                # read back for being old: where ingest feeds it, its newest may be seconds old
                # and still all there is (ingest or the previous round running behind).
                fed = self.fed_at[row] > -np.inf
                if not fed and now_ms - covered > GAP_S * 1000:
                    start = covered // 1000 if start is None else min(start, covered // 1000)
                if start is not None:
                    # From the start of the gap's second: slots are whole seconds.
                    out[truck] = max(earliest, datetime.fromtimestamp(start, UTC))
        return out

    def merge(
        self,
        positions: Iterable[tuple],
        health: Iterable[tuple],
        *,
        covered: Mapping[uuid.UUID, datetime] | None = None,
    ) -> None:
        """Feed rows read from the history (``queries.recent_positions`` and
        ``recent_events(..., HEALTH)``); ``covered``: truck -> the moment up to which the
        history was read (everything before it is now known here)."""
        positions = list(positions)
        with self._lock:
            if positions:
                self._merge_positions(positions)
            for truck, ms, seq, body in health:
                self._put_health(self._row_of(truck), int(ms), int(seq), health_readings(body))
            for truck, until in (covered or {}).items():
                row = self._row_of(truck)
                self.covered[row] = max(int(self.covered[row]), epoch_ms(until))

    def _merge_positions(self, positions: list[tuple]) -> None:
        """``_put_position`` for many rows at once: a restart reads back about a million of
        them for 1,000 trucks. The history gives one row per truck and second, and a read
        spans less than a ring, so no two rows share a slot."""
        trucks, _, lon, lat, heading, speed, elevation, ms, seq = zip(*positions, strict=True)
        rows = np.fromiter((self._row_of(t) for t in trucks), dtype=np.int64, count=len(trucks))
        ms_ = np.asarray(ms, dtype=np.int64)
        seq_ = np.asarray(seq, dtype=np.int64)
        second = ms_ // 1000
        slot = second % self.capacity
        held = self.pos_ms[rows, slot]
        held_seq = self.pos_seq[rows, slot]
        same = held // 1000 == second
        take = (held < 0) | (held // 1000 < second)
        take |= same & ((held < ms_) | ((held == ms_) & (held_seq <= seq_)))
        rows, slot = rows[take], slot[take]
        self.pos_ms[rows, slot] = ms_[take]
        self.pos_seq[rows, slot] = seq_[take]
        self.lonlat[rows, slot] = np.column_stack([lon, lat]).astype(np.float64)[take]
        self.motion[rows, slot] = np.column_stack([heading, speed, elevation]).astype(np.float64)[
            take
        ]
        np.maximum.at(self.newest_pos, rows, ms_[take])

    # --- reading ---------------------------------------------------------------------------------

    def seconds(self, truck: uuid.UUID, since: datetime, history_s: int = HISTORY_S) -> Any:
        """The truck's slots from its first position at or after ``since`` (at most
        ``history_s`` seconds) to its newest position, as ``Seconds``; None without a
        position since then."""
        since_ms = epoch_ms(since)
        with self._lock:
            row = self._row.get(truck)
            if row is None or self.newest_pos[row] < since_ms:
                return None
            end = int(self.newest_pos[row]) // 1000
            secs = np.arange(end - history_s + 1, end + 1)
            slots = secs % self.capacity
            pos_ms = self.pos_ms[row, slots]
            pos_ok = (pos_ms // 1000 == secs) & (pos_ms >= since_ms)
            first = int(np.argmax(pos_ok))
            slots, secs, pos_ok = slots[first:], secs[first:], pos_ok[first:]
            health_ms = self.health_ms[row, slots]
            health_in = (health_ms // 1000 == secs) & (health_ms >= since_ms)
            health = np.where(health_in, self.health[row][:, slots], np.float32(np.nan))
            newest_health = int(self.newest_health[row])
            return Seconds(
                start=int(secs[0]),
                end=end,
                lonlat=self.lonlat[row, slots],
                motion=self.motion[row, slots],
                pos_ok=pos_ok,
                health=health,
                health_ok=health_in & self.health_ok[row, slots],
                newest_health=newest_health // 1000 if newest_health >= since_ms else -1,
            )


# The process's rings (an ingest replica's: fed by its writer, read by its dispatcher).
RECENT = RecentTelemetry()
