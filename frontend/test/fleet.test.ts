import { describe, expect, it } from "vitest";

import { Fleet, STALE_AFTER_S, ageS, formatAge, isStale, loadFraction, mergePosition, newTruck } from "../src/fleet";
import type { PositionSummary, TruckRecord } from "../src/types";

const ID = "6f1c0000-0000-4000-8000-000000000001";

function position(at: string, lon = -68.9, extra: Partial<PositionSummary> = {}): PositionSummary {
  return { equipmentId: ID, lon, lat: -22.3, heading: 90, speedKmh: 30, at, ...extra };
}

function record(latest: TruckRecord["latest"] = {}): TruckRecord {
  return { id: ID, site: "s", name: "HT-001", payload_capacity_t: 90, autonomous: true, status: "active", latest };
}

describe("a truck's position", () => {
  it("takes a newer position and stamps it with the page's clock", () => {
    const truck = mergePosition(newTruck(ID), position("2026-01-01T10:00:00Z"), 1_000);
    expect(truck.lon).toBe(-68.9);
    expect(truck.heading).toBe(90);
    expect(truck.seenAt).toBe(1_000);
  });

  it("ignores an older or repeated position (the same object comes back)", () => {
    const truck = mergePosition(newTruck(ID), position("2026-01-01T10:00:01Z"), 1_000);
    expect(mergePosition(truck, position("2026-01-01T10:00:00Z", -1), 2_000)).toBe(truck);
    expect(mergePosition(truck, position("2026-01-01T10:00:01Z", -1), 2_000)).toBe(truck);
  });

  it("keeps the last heading when a report has none", () => {
    const truck = mergePosition(newTruck(ID), position("2026-01-01T10:00:00Z"), 0);
    expect(mergePosition(truck, position("2026-01-01T10:00:01Z", -68.9, { heading: null }), 0).heading).toBe(90);
  });
});

describe("staleness", () => {
  it(`is judged by when an update reached the page, stale after ${STALE_AFTER_S} s`, () => {
    const truck = mergePosition(newTruck(ID), position("2026-01-01T10:00:00Z"), 10_000);
    expect(isStale(truck, 10_000 + STALE_AFTER_S * 1000)).toBe(false);
    expect(isStale(truck, 10_001 + STALE_AFTER_S * 1000)).toBe(true);
    expect(ageS(truck, 22_500)).toBe(12.5);
  });

  it("counts a truck never heard from as stale for ever", () => {
    expect(ageS(newTruck(ID), 0)).toBe(Infinity);
    expect(formatAge(Infinity)).toBe("never");
  });

  it("formats ages short enough for a map label", () => {
    expect(formatAge(4.9)).toBe("4 s");
    expect(formatAge(125)).toBe("2 min");
    expect(formatAge(7300)).toBe("2 h");
  });

  it("places the register's age on the page's clock", () => {
    const fleet = new Fleet();
    fleet.applyRecords([record({ position: position("2026-01-01T10:00:00Z"), seenAgeS: 7 })], 100_000);
    const truck = fleet.trucks.get(ID)!;
    expect(ageS(truck, 100_000)).toBe(7);
    expect(fleet.stale(100_000).map((t) => t.name)).toEqual(["HT-001"]);
  });
});

describe("the fleet", () => {
  it("redraws each changed truck once however many events arrived (coalescing)", () => {
    const fleet = new Fleet();
    fleet.applyRecords([record()], 0);
    fleet.drainDirty();
    for (let second = 0; second < 10; second++) {
      fleet.applyPositions([position(`2026-01-01T10:00:0${second}Z`, -68.9 + second / 1000)], second);
    }
    const changed = fleet.drainDirty();
    expect(changed).toHaveLength(1);
    expect(changed[0]!.lon).toBeCloseTo(-68.891);
    expect(fleet.drainDirty()).toEqual([]);
  });

  it("does not mark a truck dirty for a late position", () => {
    const fleet = new Fleet();
    fleet.applyPositions([position("2026-01-01T10:00:05Z")], 0);
    fleet.drainDirty();
    fleet.applyPositions([position("2026-01-01T10:00:01Z")], 1);
    expect(fleet.drainDirty()).toEqual([]);
  });

  it("names the trucks it did not know, so the register is read again", () => {
    const fleet = new Fleet();
    expect(fleet.applyPositions([position("2026-01-01T10:00:00Z")], 0)).toEqual([ID]);
    expect(fleet.applyPositions([position("2026-01-01T10:00:01Z")], 0)).toEqual([]);
    fleet.applyRecords([record()], 0);
    expect(fleet.trucks.get(ID)!.name).toBe("HT-001");
    expect(fleet.trucks.get(ID)!.lon).toBe(-68.9); // the live position survives the register
  });

  it("takes production states and the payload", () => {
    const fleet = new Fleet();
    fleet.applyRecords([record({ HaulTruckPayloadV1: { PayloadWeight: 45 } })], 0);
    fleet.applyStates([{ equipmentId: ID, ProductionState: "Hauling", AutonomyMode: "Autonomous" }]);
    const truck = fleet.trucks.get(ID)!;
    expect(truck.state).toBe("Hauling");
    expect(loadFraction(truck)).toBe(0.5);
    expect(fleet.byName("HT-001")).toBe(truck);
  });

  it("does not let the register's older production state undo a live one", () => {
    const fleet = new Fleet();
    fleet.applyStates([{ equipmentId: ID, ProductionState: "Dumping" }]);
    fleet.applyRecords([record({ HaulTruckProductionStateV2: { ProductionState: "Hauling" } })], 0);
    expect(fleet.trucks.get(ID)!.state).toBe("Dumping");
  });
});

describe("the all-stop on the map", () => {
  it("draws the machines that acknowledged the all-stop in force as held, and releases them", () => {
    const fleet = new Fleet();
    fleet.applyRecords([record()], 0);
    fleet.drainDirty();
    fleet.setAllStopped(["HT-001"]);
    expect(fleet.drainDirty().map((t) => t.allStopped)).toEqual([true]);
    fleet.setAllStopped(["HT-001"]);
    expect(fleet.drainDirty()).toEqual([]); // nothing changed, nothing to redraw
    fleet.setAllStopped([]);
    expect(fleet.trucks.get(ID)!.allStopped).toBe(false);
  });
});
