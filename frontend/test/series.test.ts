import { describe, expect, it } from "vitest";

import { MachineSeries, SeriesBuffer, speedSample, temperatureSample, tyreSample } from "../src/series";
import type { HealthReading } from "../src/types";

const ID = "6f1c0000-0000-4000-8000-000000000001";
const T0 = Date.parse("2026-01-01T10:00:00Z") / 1000;

function iso(offsetS: number): string {
  return new Date((T0 + offsetS) * 1000).toISOString();
}

function reading(offsetS: number, coolant: number | null, tyre11: number | null = 700): HealthReading {
  return { at: iso(offsetS), coolantC: coolant, brakeFrontC: 150, brakeRearC: 140, tyresKpa: { "1.1": tyre11, "1.2": 705 } };
}

describe("a series buffer", () => {
  it("keeps samples in time order whatever order they come in", () => {
    const buffer = new SeriesBuffer(600, 0, ["v"]);
    for (const t of [5, 1, 3]) buffer.add({ t: T0 + t, values: { v: t } });
    expect(buffer.data()).toEqual([[T0 + 1, T0 + 3, T0 + 5], [1, 3, 5]]);
  });

  it("merges a sample at a time it already holds (history and live overlap)", () => {
    const buffer = new SeriesBuffer(600, 0, ["a", "b"]);
    buffer.add({ t: T0, values: { a: 1 } });
    buffer.add({ t: T0, values: { b: 2 } });
    expect(buffer.data()).toEqual([[T0], [1], [2]]);
  });

  it("keeps its points the spacing apart, the newest following the live feed", () => {
    const buffer = new SeriesBuffer(600, 0.5, ["v"]);
    for (let i = 0; i <= 12; i += 1) buffer.add({ t: T0 + i / 10, values: { v: i } });
    // 0, then 0.1 .. 0.5 replacing each other, then 0.6 .. 1.0, then 1.1 .. 1.2.
    expect(buffer.data()).toEqual([[T0, T0 + 0.5, T0 + 1.0, T0 + 1.2], [0, 5, 10, 12]]);
  });

  it("keeps only the window behind the newest sample", () => {
    const buffer = new SeriesBuffer(600, 0, ["v"]);
    for (let t = 0; t <= 1000; t += 100) buffer.add({ t: T0 + t, values: { v: t } });
    expect(buffer.data()[0]).toEqual([400, 500, 600, 700, 800, 900, 1000].map((t) => T0 + t));
  });

  it("adds a channel first seen later, empty before it", () => {
    const buffer = new SeriesBuffer(600, 0);
    buffer.add({ t: T0, values: { a: 1 } });
    buffer.add({ t: T0 + 1, values: { a: 2, b: 5 } });
    expect(buffer.channels).toEqual(["a", "b"]);
    expect(buffer.data()).toEqual([[T0, T0 + 1], [1, 2], [null, 5]]);
    expect(buffer.latest("b")).toBe(5);
    expect(buffer.latest("missing")).toBeNull();
  });

  it("ignores a sample without a valid time", () => {
    const buffer = new SeriesBuffer(600, 0, ["v"]);
    expect(buffer.add({ t: Number.NaN, values: { v: 1 } })).toBe(false);
    expect(buffer.length).toBe(0);
  });
});

describe("a machine's series", () => {
  it("turns readings into samples on the truck's clock, nulls kept", () => {
    expect(speedSample({ at: iso(2), speedKmh: 31.5 })).toEqual({ t: T0 + 2, values: { speed: 31.5 } });
    expect(temperatureSample(reading(1, null))).toEqual({ t: T0 + 1, values: { Coolant: null, "Brakes front": 150, "Brakes rear": 140 } });
    expect(tyreSample(reading(1, 80, null)).values).toEqual({ "1.1": null, "1.2": 705 });
  });

  it("is filled from the history, then grows with this truck's live samples only", () => {
    const series = new MachineSeries(ID);
    series.loadHistory({
      step: 2,
      speed: [
        { at: iso(0), speedKmh: 10 },
        { at: iso(2), speedKmh: 12 },
      ],
      health: [reading(1, 80)],
    });
    expect(series.speed.length).toBe(2);
    const other = { equipmentId: "other", lon: 0, lat: 0, at: iso(4), speedKmh: 99 };
    expect(series.applyPositions([other])).toBe(false);
    expect(series.applyPositions([{ ...other, equipmentId: ID, speedKmh: 14 }])).toBe(true);
    expect(series.applyHealth([{ ...reading(3, 82), equipmentId: ID }, { ...reading(3, 1), equipmentId: "other" }])).toBe(true);
    expect(series.speed.data()[1]).toEqual([10, 12, 14]);
    expect(series.temperatures.data()[1]).toEqual([80, 82]);
    expect(series.tyres.channels).toEqual(["1.1", "1.2"]);
  });

  it("keeps live samples that came before the history's answer", () => {
    const series = new MachineSeries(ID);
    series.applyPositions([{ equipmentId: ID, lon: 0, lat: 0, at: iso(10), speedKmh: 20 }]);
    series.loadHistory({ step: 2, speed: [{ at: iso(0), speedKmh: 10 }], health: [] });
    expect(series.speed.data()).toEqual([[T0, T0 + 10], [10, 20]]);
  });
});
