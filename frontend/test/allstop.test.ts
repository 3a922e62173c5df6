import { describe, expect, it } from "vitest";

import { ALL_STOP_MESSAGE, summarise, touchesAllStop } from "../src/allstop";
import type { AllStopStatus } from "../src/types";

const applied: AllStopStatus = {
  in_force: true,
  last: { mode: "Apply", stop_id: "x", reason: "person on the road", actor: "omar", machines: 3, at: "2026-01-01T10:00:00Z" },
  acknowledged: ["HT-001", "HT-002"],
  waiting: ["HT-003"],
  failed: [],
};

describe("the all-stop panel", () => {
  it("says an all-stop is in force, why, by whom, and how far the machines answered", () => {
    const summary = summarise(applied);
    expect(summary.inForce).toBe(true);
    expect(summary.headline).toBe("ALL-STOP IN FORCE: person on the road (applied by omar)");
    expect(summary.progress).toBe("2 of 3 acknowledged");
    expect(summary.complete).toBe(false);
  });

  it("says when none is in force", () => {
    expect(summarise(null).inForce).toBe(false);
    const removed = summarise({ ...applied, in_force: false, last: { ...applied.last!, mode: "Remove", actor: "sofia", reason: "clear" }, waiting: [] });
    expect(removed.headline).toBe("No all-stop in force (last removed by sofia: clear)");
    expect(removed.complete).toBe(true);
  });

  it("re-reads on all-stop events and all-stop acknowledgements only", () => {
    expect(touchesAllStop({ event: "allstop.changed", data: {} })).toBe(true);
    expect(touchesAllStop({ event: "command.changed", data: { message: ALL_STOP_MESSAGE } })).toBe(true);
    expect(touchesAllStop({ event: "commands.answered", data: { message: ALL_STOP_MESSAGE } })).toBe(true);
    expect(touchesAllStop({ event: "command.changed", data: { message: "MachineStopRequestV1" } })).toBe(false);
    expect(touchesAllStop({ event: "positions", data: {} })).toBe(false);
  });
});
