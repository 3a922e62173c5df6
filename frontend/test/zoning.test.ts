import { describe, expect, it } from "vitest";

import { type LonLat, type ZoneAnswers, answerLine, areaM2, closedRing, openRing, orderZones, policiesFor, polygonProblems, selfIntersects, touchesZones } from "../src/zoning";

// About 100 m x 100 m at the test mine's latitude (-22.3°).
const LON0 = -68.9;
const LAT0 = -22.3;
const DX = 100 / (111_320 * Math.cos((LAT0 * Math.PI) / 180));
const DY = 100 / 111_320;
const square: LonLat[] = [
  [LON0, LAT0],
  [LON0 + DX, LAT0],
  [LON0 + DX, LAT0 + DY],
  [LON0, LAT0 + DY],
];
const bowTie: LonLat[] = [
  [LON0, LAT0],
  [LON0 + DX, LAT0 + DY],
  [LON0 + DX, LAT0],
  [LON0, LAT0 + DY],
];

describe("a drawn polygon", () => {
  it("drops the closing vertex and the repeated last click of a double click", () => {
    expect(openRing([...square, square[3]!, square[0]!])).toEqual(square);
    expect(closedRing(square)).toEqual([...square, square[0]!]);
  });

  it("measures its area in square metres", () => {
    expect(areaM2(square)).toBeCloseTo(10_000, -1);
    expect(areaM2([...square, square[0]!])).toBeCloseTo(10_000, -1);
  });

  it("finds an outline that crosses itself, and not a plain one", () => {
    expect(selfIntersects(bowTie)).toBe(true);
    expect(selfIntersects(square)).toBe(false);
    // A concave (L-shaped) outline is fine.
    const l: LonLat[] = [square[0]!, square[1]!, [LON0 + DX, LAT0 + DY / 2], [LON0 + DX / 2, LAT0 + DY / 2], [LON0 + DX / 2, LAT0 + DY], square[3]!];
    expect(selfIntersects(l)).toBe(false);
  });

  it("says why it cannot be a zone: too few corners, crossing, smaller than a truck", () => {
    expect(polygonProblems(square)).toEqual([]);
    expect(polygonProblems(square.slice(0, 2))[0]).toMatch(/three corners/);
    expect(polygonProblems(bowTie)[0]).toMatch(/crosses itself/);
    const tiny = square.map(([lon, lat]) => [LON0 + (lon - LON0) / 20, LAT0 + (lat - LAT0) / 20] as LonLat);
    expect(polygonProblems(tiny)[0]).toBe("The zone covers 25 m², less than a haul truck (50 m²).");
  });
});

describe("the policy asked for", () => {
  it("is an exclusion, or a speed limit given in km/h and sent in m/s", () => {
    expect(policiesFor("exclusion", "")).toEqual({ policies: { exclusion: {} } });
    expect(policiesFor("speedLimit", "36")).toEqual({ policies: { speedLimit: { type: "absolute", value: 10 } } });
    expect(policiesFor("speedLimit", "12,5")).toEqual({ policies: { speedLimit: { type: "absolute", value: 3.472 } } });
  });

  it("refuses a missing or absurd speed, and an unknown policy", () => {
    expect(policiesFor("speedLimit", "")).toEqual({ error: "Give the speed limit in km/h." });
    expect(policiesFor("speedLimit", "fast")).toEqual({ error: "Give the speed limit in km/h." });
    expect(policiesFor("speedLimit", "250")).toEqual({ error: "A speed limit of 250 km/h is outside 1 to 100 km/h." });
    expect(policiesFor("lowTraction", "")).toEqual({ error: "Unknown policy lowTraction." });
  });
});

function zone(name: string, status: ZoneAnswers["status"], answers: Partial<ZoneAnswers> = {}): ZoneAnswers {
  return {
    id: name,
    name,
    status,
    policies: { exclusion: {} },
    reason: "",
    delete_reason: "",
    activated_at: null,
    deleted_at: null,
    request: status === "active" || status === "pending" ? "activate" : "deactivate",
    accepted: [],
    rejected: [],
    waiting: [],
    silent: [],
    ...answers,
  };
}

describe("the zone list", () => {
  it("puts active zones first, then pending, being deleted and deleted", () => {
    const ordered = orderZones([zone("d", "deleted"), zone("b", "pending_delete"), zone("z", "active"), zone("a", "active"), zone("p", "pending")]);
    expect(ordered.map((z) => z.name)).toEqual(["a", "z", "p", "b", "d"]);
  });

  it("counts each machine's answer to the latest request", () => {
    const active = zone("a", "active", { accepted: ["HT-001"], waiting: ["HT-002"], rejected: [{ machine: "HT-003", reason: "no" }] });
    expect(answerLine(active)).toBe("1 of 3 accepted it");
    expect(answerLine(zone("b", "pending_delete", { accepted: ["HT-001", "HT-002"] }))).toBe("2 of 2 dropped it");
    expect(answerLine(zone("c", "active"))).toMatch(/gets it in the zone set sent when it connects/);
  });

  it("is read again on zone changes and on answers to zone commands only", () => {
    expect(touchesZones({ event: "zone.changed", data: {} })).toBe(true);
    expect(touchesZones({ event: "command.changed", data: { message: "ActivateZoneRequestV1" } })).toBe(true);
    expect(touchesZones({ event: "commands.answered", data: { message: "DeactivateZoneRequestV1" } })).toBe(true);
    expect(touchesZones({ event: "command.changed", data: { message: "MachineAllStopRequestV1" } })).toBe(false);
    expect(touchesZones({ event: "positions", data: {} })).toBe(false);
  });
});
