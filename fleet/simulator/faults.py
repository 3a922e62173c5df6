"""Injected faults and their ground-truth labels.

Faults start as a Poisson process of ``rate_per_hour`` per truck (each of the five kinds equally
likely, at most one of a kind per truck at a time). Their labels live here and only here: the
telemetry carries their effects, never a flag. Models and numbers: docs/simulator.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

KINDS = ("overheating", "tyre_leak", "brake_fade", "stuck_sensor", "gps_dropout")
OVERHEAT_RATE_C_PER_MIN = (0.5, 2.0)
OVERHEAT_MAX_C = 35.0  # the offset stops growing here (the engine derates, the fan is flat out)
LEAK_RATE_KPA_PER_MIN = (1.0, 5.0)  # of cold-equivalent pressure, on one tyre
FADE_SHARE = (0.10, 0.30)  # of the commanded deceleration lost
FADE_HEAT_GAIN = 2.0  # brake temperature rise per kW is (1 + 2 * fade) times normal
STUCK_S = (600.0, 3600.0)  # the sensor recovers after this long
DROPOUT_S = (10.0, 60.0)
# Degradations (overheating, leak, fade) are repaired this long after their OEM alarm first
# shows (the maintenance response), and at the latest this long after onset.
REPAIR_AFTER_ALARM_S = 1800.0
REPAIR_LATEST_S = 4 * 3600.0

UNITS = {
    "overheating": "degC/min",
    "tyre_leak": "kPa/min",
    "brake_fade": "share of deceleration lost",
    "stuck_sensor": "1",
    "gps_dropout": "1",
}


@dataclass
class FaultLabel:
    """One injected fault. Times are seconds since the start of the simulation."""

    truck: int
    equipment_id: str
    kind: str
    channel: str  # the telemetry channel it acts on ("brakes" for fade, "position" for GPS)
    tyre: str | None  # tyre position for a leak (also named in channel)
    onset_s: float
    intensity: float  # see UNITS
    end_s: float | None = None  # None: still active
    repair_at_s: float = float("inf")  # when it will end (not a label field)

    def to_dict(self, start: datetime | None = None) -> dict[str, Any]:
        """The label as written to JSONL; with ``start`` also ISO 8601 onset / end times."""
        row: dict[str, Any] = {
            "equipment_id": self.equipment_id,
            "kind": self.kind,
            "channel": self.channel,
            "tyre": self.tyre,
            "onset_s": round(self.onset_s, 3),
            "end_s": None if self.end_s is None else round(self.end_s, 3),
            "intensity": round(self.intensity, 4),
            "unit": UNITS[self.kind],
        }
        if start is not None:
            row["onset"] = _iso(start, self.onset_s)
            row["end"] = None if self.end_s is None else _iso(start, self.end_s)
        return row


def _iso(start: datetime, seconds: float) -> str:
    return (start + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


class FaultState:
    """Per-truck fault effects as numpy arrays, plus the labels."""

    def __init__(
        self,
        equipment_ids: list[str],
        rate_per_hour: float,
        stuck_channels: tuple[str, ...],
        tyres: tuple[str, ...],
    ) -> None:
        n = len(equipment_ids)
        self.equipment_ids = equipment_ids
        self.rate_per_hour = rate_per_hour
        self.stuck_channels = stuck_channels
        self.tyres = tyres
        self.overheat_rate = np.zeros(n)  # deg C / s
        self.overheat = np.zeros(n)  # deg C above the normal
        self.leak_rate = np.zeros((len(tyres), n))  # kPa / s of cold pressure
        self.fade = np.zeros(n)  # share of deceleration lost
        self.stuck = np.zeros((len(stuck_channels), n), dtype=bool)
        self.stuck_value = np.full((len(stuck_channels), n), np.nan)  # NaN: freeze at next read
        self.any_stuck = False
        self.gps_until = np.full(n, -np.inf)  # s: no position fixes before this time
        self.labels: list[FaultLabel] = []
        self.active: list[FaultLabel] = []

    def onsets(self, t: float, dt: float, rng: np.random.Generator) -> list[FaultLabel]:
        """Draw this tick's new faults (one uniform per truck per tick, so a run with the same
        seed draws the same faults)."""
        if self.rate_per_hour <= 0:
            return []
        hits = np.flatnonzero(
            rng.random(len(self.equipment_ids)) < self.rate_per_hour * dt / 3600.0
        )
        started = []
        for truck in hits.tolist():
            label = self._start(int(truck), t, rng)
            if label is not None:
                started.append(label)
        return started

    def start(
        self, truck: int, kind: str, t: float, rng: np.random.Generator, **choice: Any
    ) -> FaultLabel | None:
        """Start one fault now (tests and scripted scenarios); ``choice`` may fix ``tyre``,
        ``channel`` or ``intensity``."""
        return self._begin(truck, kind, t, rng, choice)

    def _start(self, truck: int, t: float, rng: np.random.Generator) -> FaultLabel | None:
        kind = KINDS[int(rng.integers(len(KINDS)))]
        return self._begin(truck, kind, t, rng, {})

    def _begin(
        self, truck: int, kind: str, t: float, rng: np.random.Generator, choice: dict[str, Any]
    ) -> FaultLabel | None:
        if any(a.truck == truck and a.kind == kind for a in self.active):
            return None  # one fault of a kind per truck at a time
        label = getattr(self, f"_begin_{kind}")(truck, t, rng, choice)
        self.labels.append(label)
        self.active.append(label)
        return label

    def _label(
        self, truck: int, kind: str, channel: str, t: float, intensity: float, **extra: Any
    ) -> FaultLabel:
        return FaultLabel(
            truck,
            self.equipment_ids[truck],
            kind,
            channel,
            extra.get("tyre"),
            t,
            intensity,
            repair_at_s=extra.get("until", t + REPAIR_LATEST_S),
        )

    def _begin_overheating(
        self, truck: int, t: float, rng: np.random.Generator, choice: dict
    ) -> FaultLabel:
        rate = choice.get("intensity") or rng.uniform(*OVERHEAT_RATE_C_PER_MIN)
        self.overheat_rate[truck] = rate / 60.0
        return self._label(truck, "overheating", "coolant_temp_c", t, rate)

    def _begin_tyre_leak(
        self, truck: int, t: float, rng: np.random.Generator, choice: dict
    ) -> FaultLabel:
        tyre = choice.get("tyre") or self.tyres[int(rng.integers(len(self.tyres)))]
        rate = choice.get("intensity") or rng.uniform(*LEAK_RATE_KPA_PER_MIN)
        self.leak_rate[self.tyres.index(tyre), truck] = rate / 60.0
        return self._label(truck, "tyre_leak", f"tyre_pressure_kpa_{tyre}", t, rate, tyre=tyre)

    def _begin_brake_fade(
        self, truck: int, t: float, rng: np.random.Generator, choice: dict
    ) -> FaultLabel:
        share = choice.get("intensity") or rng.uniform(*FADE_SHARE)
        self.fade[truck] = share
        return self._label(truck, "brake_fade", "brakes", t, share)

    def _begin_stuck_sensor(
        self, truck: int, t: float, rng: np.random.Generator, choice: dict
    ) -> FaultLabel:
        free = [c for c, name in enumerate(self.stuck_channels) if not self.stuck[c, truck]]
        name = choice.get("channel") or self.stuck_channels[free[int(rng.integers(len(free)))]]
        index = self.stuck_channels.index(name)
        self.stuck[index, truck] = True
        self.stuck_value[index, truck] = np.nan
        self.any_stuck = True
        until = t + (choice.get("duration") or rng.uniform(*STUCK_S))
        return self._label(truck, "stuck_sensor", name, t, 1.0, until=until)

    def _begin_gps_dropout(
        self, truck: int, t: float, rng: np.random.Generator, choice: dict
    ) -> FaultLabel:
        until = t + (choice.get("duration") or rng.uniform(*DROPOUT_S))
        self.gps_until[truck] = until
        return self._label(truck, "gps_dropout", "position", t, 1.0, until=until)

    def alarmed(self, truck: int, kind: str, t: float, tyre: str | None = None) -> None:
        """An OEM alarm showed for a degradation: schedule its repair."""
        for label in self.active:
            if label.truck == truck and label.kind == kind and (tyre is None or label.tyre == tyre):
                label.repair_at_s = min(label.repair_at_s, t + REPAIR_AFTER_ALARM_S)

    def due(self, t: float) -> list[FaultLabel]:
        """End the faults whose time has come; the caller restores what they changed."""
        ended = [label for label in self.active if label.repair_at_s <= t]
        for label in ended:
            label.end_s = label.repair_at_s
            self.active.remove(label)
            self._clear(label)
        return ended

    def _clear(self, label: FaultLabel) -> None:
        truck = label.truck
        if label.kind == "overheating":
            self.overheat_rate[truck] = self.overheat[truck] = 0.0
        elif label.kind == "tyre_leak":
            self.leak_rate[self.tyres.index(label.tyre), truck] = 0.0
        elif label.kind == "brake_fade":
            self.fade[truck] = 0.0
        elif label.kind == "stuck_sensor":
            self.stuck[self.stuck_channels.index(label.channel), truck] = False
            self.any_stuck = bool(self.stuck.any())
