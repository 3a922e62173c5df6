import { describe, expect, it } from "vitest";

import { CLOSED_SHOWN, PermitList, type TrafficPermit, actionLabel, isPermitEvent, permitActions, permitTitle } from "../src/permits";

function permit(id: string, status: TrafficPermit["status"], requested: number, extra: Partial<TrafficPermit> = {}): TrafficPermit {
  const at = (s: number) => new Date(Date.UTC(2026, 11, 6, 10, 0, s)).toISOString();
  return {
    id,
    truck: `HT-${id}`,
    equipment: id,
    zone: "z",
    zone_name: "West switchback",
    way_id: 12,
    loaded: false,
    status,
    reason: "",
    decided_by: "rule:fifo",
    requested_at: at(requested),
    granted_at: null,
    closed_at: status === "pending" || status === "granted" ? null : at(requested + 30),
    ...extra,
  };
}

describe("the traffic permissions list", () => {
  it("shows the waiting requests in queue order, then the grants, then the latest closed", () => {
    const list = new PermitList();
    list.load([permit("3", "granted", 5), permit("2", "pending", 20), permit("1", "pending", 10), permit("4", "released", 1), permit("5", "revoked", 2)]);
    const { open, closed } = list.list();
    expect(open.map((p) => p.id)).toEqual(["1", "2", "3"]);
    expect(closed.map((p) => p.id)).toEqual(["5", "4"]);
  });

  it("keeps only the latest closed ones", () => {
    const list = new PermitList();
    list.load(Array.from({ length: 20 }, (_, i) => permit(String(i), "released", i)));
    expect(list.list().closed).toHaveLength(CLOSED_SHOWN);
    expect(list.list().closed[0]!.id).toBe("19");
  });

  it("applies a live change of a known permission in place, and asks for a read of a new one", () => {
    const list = new PermitList();
    list.load([permit("1", "pending", 0)]);
    expect(list.applyEvent({ permissionId: "1", status: "granted", reason: "free, first in line", actor: "rule:fifo" })).toBe(true);
    expect(list.list().open[0]).toMatchObject({ status: "granted", reason: "free, first in line" });
    expect(list.applyEvent({ permissionId: "9", status: "pending", reason: "occupied", actor: "rule:fifo" })).toBe(false);
    expect(isPermitEvent({ event: "traffic.changed", data: {} })).toBe(true);
    expect(isPermitEvent({ event: "alert", data: {} })).toBe(false);
  });

  it("offers grant or refuse for a waiting request, revoke for a grant, nothing once closed", () => {
    expect(permitActions("pending")).toEqual(["grant", "revoke"]);
    expect(permitActions("granted")).toEqual(["revoke"]);
    expect(permitActions("released")).toEqual([]);
    expect(actionLabel("revoke", "pending")).toBe("Refuse");
    expect(actionLabel("revoke", "granted")).toBe("Revoke");
    expect(permitTitle(permit("7", "pending", 0, { loaded: true, way_id: null }))).toBe("HT-7 · West switchback · loaded, from inside");
  });
});
