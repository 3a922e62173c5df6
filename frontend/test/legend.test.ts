import { describe, expect, it } from "vitest";

import { TRUCK_STATES, dominantPolicy, policySummary, rgba, stateCode, stateKey } from "../src/legend";

describe("truck state colours", () => {
  it("colours by production state", () => {
    expect(stateKey("Hauling")).toBe("Hauling");
    expect(TRUCK_STATES[stateCode("Queued")]!.key).toBe("Queued");
  });

  it("lets an all-stop or emergency stop override the production state", () => {
    expect(stateKey("Hauling", "AllStop")).toBe("AllStop");
    expect(stateKey("Driving", "EmergencyStop")).toBe("AllStop");
  });

  it("draws an unknown or missing state as not reported", () => {
    expect(stateKey("Flying")).toBe("Unknown");
    expect(stateCode("")).toBe(TRUCK_STATES.length - 1);
  });

  it("gives every state its own colour", () => {
    expect(new Set(TRUCK_STATES.map((s) => s.colour)).size).toBe(TRUCK_STATES.length);
  });
});

describe("zone policies", () => {
  it("colours a zone by its most restrictive policy", () => {
    expect(dominantPolicy({ speedLimit: {}, exclusion: {} })).toBe("exclusion");
    expect(dominantPolicy({ lowTraction: {}, speedLimit: {} })).toBe("speedLimit");
  });

  it("says what a zone does in words", () => {
    expect(policySummary({ speedLimit: { type: "absolute", value: 8.3 } })).toBe("speed ≤ 30 km/h");
    expect(policySummary({ trafficPermission: {} })).toBe("traffic permission (1 at a time)");
  });

  it("turns a colour into rgba", () => {
    expect(rgba("#d32f2f", 0.25)).toBe("rgba(211, 47, 47, 0.25)");
  });
});

describe("a truck held by the all-stop", () => {
  it("is drawn as held whatever its production state", () => {
    expect(stateKey("Hauling", "Autonomous", true)).toBe("AllStop");
  });
});
