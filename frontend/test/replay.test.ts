import { describe, expect, it } from "vitest";

import {
  type ReplayAnswer,
  ReplayClock,
  ReplayTrack,
  bearing,
  chunkIndexAt,
  interpolate,
  lastAtOrBefore,
  lerpHeading,
  planChunks,
  resolutionFor,
} from "../src/views/replaydata";

const T0 = Date.parse("2026-12-05T06:00:00Z");
const MIN = 60_000;

describe("chunk planning", () => {
  it("plays up to an hour as recorded, beyond from the minute roll-ups", () => {
    expect(resolutionFor(60 * MIN)).toBe("recorded");
    expect(resolutionFor(60 * MIN + 1)).toBe("minute");
  });

  it("cuts a range into chunks the server accepts, the last one shorter", () => {
    const chunks = planChunks(T0, T0 + 5 * MIN, "recorded");
    expect(chunks.map((c) => (c.to - c.from) / MIN)).toEqual([2, 2, 1]);
    expect(chunks[1]!.from).toBe(chunks[0]!.to);
    expect(planChunks(T0, T0 + 13 * 60 * MIN, "minute").map((c) => (c.to - c.from) / MIN / 60)).toEqual([6, 6, 1]);
  });

  it("finds the chunk holding a time", () => {
    const chunks = planChunks(T0, T0 + 5 * MIN, "recorded");
    expect(chunkIndexAt(chunks, T0)).toBe(0);
    expect(chunkIndexAt(chunks, T0 + 2 * MIN)).toBe(1);
    expect(chunkIndexAt(chunks, T0 + 5 * MIN)).toBe(2);
    expect(chunkIndexAt(chunks, T0 - 1)).toBe(-1);
  });
});

describe("the replay clock", () => {
  it("advances by real time times the speed, only while playing", () => {
    const clock = new ReplayClock(T0, T0 + 10 * MIN);
    expect(clock.advance(1000)).toBe(false);
    clock.play();
    clock.speed = 20;
    clock.advance(1500);
    expect(clock.t).toBe(T0 + 30_000);
    expect(clock.fraction).toBeCloseTo(0.05);
  });

  it("stops at the end, and plays again from the start", () => {
    const clock = new ReplayClock(T0, T0 + MIN);
    clock.play();
    clock.speed = 10;
    clock.advance(10_000);
    expect(clock.t).toBe(T0 + MIN);
    expect(clock.playing).toBe(false);
    clock.play();
    expect(clock.t).toBe(T0);
  });

  it("seeks within the range only", () => {
    const clock = new ReplayClock(T0, T0 + MIN);
    clock.seek(T0 - 5);
    expect(clock.t).toBe(T0);
    clock.seek(T0 + 2 * MIN);
    expect(clock.t).toBe(T0 + MIN);
  });
});

describe("interpolation between recorded samples", () => {
  const a = { at: T0, lon: 10, lat: 0, heading: 350, speedKmh: 20 };
  const b = { at: T0 + 1000, lon: 10.001, lat: 0, heading: 10, speedKmh: 30 };

  it("moves a truck along the line between its samples", () => {
    const mid = interpolate(a, b, T0 + 250, 15_000);
    expect(mid.lon).toBeCloseTo(10.00025, 8);
    expect(mid.speedKmh).toBe(22.5);
  });

  it("turns the short way round", () => {
    expect(lerpHeading(350, 10, 0.5)).toBeCloseTo(0);
    expect(lerpHeading(10, 350, 0.25)).toBeCloseTo(5);
    expect(interpolate(a, b, T0 + 500, 15_000).heading).toBeCloseTo(0);
  });

  it("holds a truck at its older sample across a gap (a link that was down)", () => {
    const late = { ...b, at: T0 + 60_000 };
    expect(interpolate(a, late, T0 + 30_000, 15_000).lon).toBe(10);
    expect(interpolate(a, undefined, T0 + 30_000, 15_000).lon).toBe(10);
  });

  it("heads along the motion when the roll-ups carry no heading", () => {
    expect(bearing(10, 0, 10.001, 0)).toBeCloseTo(90);
    const north = interpolate({ ...a, heading: null }, { ...a, at: T0 + MIN, lat: 0.001, heading: null }, T0, 150_000);
    expect(north.heading).toBeCloseTo(0);
  });

  it("finds the last sample at or before a time", () => {
    const samples = [a, b, { ...b, at: T0 + 2000 }];
    expect(lastAtOrBefore(samples, T0 - 1)).toBe(-1);
    expect(lastAtOrBefore(samples, T0 + 1000)).toBe(1);
    expect(lastAtOrBefore(samples, T0 + 1999)).toBe(1);
    expect(lastAtOrBefore(samples, T0 + 9999)).toBe(2);
  });
});

function answer(positions: ReplayAnswer["positions"], extra: Partial<ReplayAnswer> = {}): ReplayAnswer {
  return {
    from: "",
    to: "",
    resolution: "recorded",
    trucks: [
      { id: "t1", name: "HT-001" },
      { id: "t2", name: "HT-002" },
    ],
    positions,
    alerts: [],
    commands: [],
    ...extra,
  };
}

describe("the replay's track", () => {
  it("places each truck where it was at the clock's time, across chunks", () => {
    const track = new ReplayTrack("recorded");
    track.add(T0, answer([[T0, 0, 10, 0, 90, 20], [T0 + 1000, 1, 11, 0, 90, 0]]));
    track.add(T0 + 2 * MIN, answer([[T0 + 2000, 0, 10.002, 0, 90, 20]]));
    const at = Object.fromEntries(track.at(T0 + 1000).map((t) => [t.name, t.lon]));
    expect(at["HT-001"]).toBeCloseTo(10.001, 8);
    expect(at["HT-002"]).toBe(11);
    expect(track.at(T0 + 500).map((t) => t.name)).toEqual(["HT-001"]); // HT-002 not yet seen
  });

  it("sorts in a chunk loaded out of order, and loads a chunk once", () => {
    const track = new ReplayTrack("recorded");
    track.add(T0 + 2 * MIN, answer([[T0 + 2 * MIN, 0, 12, 0, 90, 0]]));
    track.add(T0, answer([[T0, 0, 10, 0, 90, 0]]));
    track.add(T0, answer([[T0, 0, 99, 0, 90, 0]]));
    expect(track.at(T0)[0]!.lon).toBe(10);
    expect(track.at(T0 + 3 * MIN)[0]!.lon).toBe(12);
  });

  it("colours each truck by its status at the clock's time, across chunks", () => {
    const track = new ReplayTrack("recorded");
    track.add(T0, answer([[T0, 0, 10, 0, 90, 20], [T0, 1, 11, 0, 90, 0]], { states: [[T0, 0, "Hauling"], [T0 + 40_000, 0, "Dumping"]] }));
    track.add(T0 + 2 * MIN, answer([], { states: [[T0 + 2 * MIN, 0, "Driving"]] }));
    const state = (t: number) => Object.fromEntries(track.at(t).map((truck) => [truck.name, truck.state]));
    expect(state(T0 + 39_999)).toEqual({ "HT-001": "Hauling", "HT-002": "Unknown" });
    expect(state(T0 + 40_000)["HT-001"]).toBe("Dumping");
    expect(state(T0 + 3 * MIN)["HT-001"]).toBe("Driving");
  });

  it("keeps the positions of the chunks near the clock only, and loads a dropped one again", () => {
    const track = new ReplayTrack("recorded");
    const chunks = planChunks(T0, T0 + 10 * MIN, "recorded");
    chunks.forEach((chunk, i) => track.add(chunk.from, answer([[chunk.from, 0, 10 + i, 0, 90, 0], [chunk.from + 1000, 0, 10 + i, 0, 90, 0]])));
    expect(track.sampleCount()).toBe(10);
    expect(track.keepAround(chunks, 4, 1)).toBe(3);
    expect(track.sampleCount()).toBe(4);
    expect([0, 1, 2, 3, 4].map((i) => track.has(chunks[i]!.from))).toEqual([false, false, false, true, true]);
    expect(track.at(T0 + 8 * MIN)[0]!.lon).toBe(14);
    // Back at the start: the first chunk is fetched and added again.
    track.add(chunks[0]!.from, answer([[T0, 0, 10, 0, 90, 0]]));
    expect(track.at(T0)[0]!.lon).toBe(10);
  });

  it("replays the alerts and commands as the clock passes them, newest first", () => {
    const track = new ReplayTrack("recorded");
    const alert = { at: "2026-12-05T06:00:30Z", alert: 7, action: "opened", equipment: "HT-001", kind: "exclusion", severity: "critical", reason: "in blast", actor: "rule" };
    const command = { at: "2026-12-05T06:00:40Z", command: "c1", message: "MachineAllStopRequestV1", equipment: "HT-001", status: "issued", reason: "alert 7", actor: "omar" };
    track.add(T0, answer([], { alerts: [alert], commands: [command] }));
    track.add(T0 + 1, answer([], { alerts: [alert] })); // the same event in two answers: once
    expect(track.eventsUntil(T0 + 29_000)).toEqual([]);
    expect(track.eventsUntil(T0 + 30_000).map((e) => e.detail)).toEqual(["in blast"]);
    const both = track.eventsUntil(T0 + 60_000);
    expect(both.map((e) => e.kind)).toEqual(["command", "alert"]);
    expect(both[0]!.title).toBe("MachineAllStopRequest issued by omar");
  });
});
