import { describe, expect, it } from "vitest";

import { AlertFeed, nextActions } from "../src/alerts";
import type { Alert, AlertEvent } from "../src/types";

function alert(id: number, severity: Alert["severity"], lastSeen: string, status: Alert["status"] = "open"): Alert {
  return {
    id,
    equipment: "e",
    equipment_name: "HT-001",
    kind: "exclusion",
    severity,
    status,
    source: "compliance.exclusion",
    channel: "",
    reason: "inside Old bench",
    count: 1,
    last_seen_at: lastSeen,
    assigned_to: null,
  };
}

function event(id: number, status: Alert["status"], severity: Alert["severity"] = "critical"): AlertEvent {
  return {
    id,
    equipmentId: "e",
    kind: "exclusion",
    severity,
    status,
    source: "compliance.exclusion",
    channel: "",
    reason: "inside Old bench",
    count: 2,
    lastSeenAt: "2026-01-01T10:00:05Z",
  };
}

describe("the alerts feed", () => {
  it("lists the most severe first, then the newest", () => {
    const feed = new AlertFeed();
    feed.load([
      alert(1, "warning", "2026-01-01T10:00:09Z"),
      alert(2, "critical", "2026-01-01T10:00:01Z"),
      alert(3, "warning", "2026-01-01T10:00:10Z"),
      alert(4, "info", "2026-01-01T10:00:11Z"),
    ]);
    expect(feed.list().map((a) => a.id)).toEqual([2, 3, 1, 4]);
    expect(feed.counts()).toEqual({ critical: 1, warning: 2, info: 1 });
  });

  it("keeps the machine's name when a live event updates an alert", () => {
    const feed = new AlertFeed();
    feed.load([alert(1, "critical", "2026-01-01T10:00:00Z")]);
    feed.applyEvent(event(1, "acknowledged"));
    expect(feed.get(1)).toMatchObject({ status: "acknowledged", equipment_name: "HT-001", count: 2 });
  });

  it("adds a new alert from a live event and drops a resolved one", () => {
    const feed = new AlertFeed();
    feed.applyEvent(event(7, "open"));
    expect(feed.list().map((a) => a.id)).toEqual([7]);
    feed.applyEvent(event(7, "resolved"));
    expect(feed.list()).toEqual([]);
  });

  it("ignores an older sighting arriving late", () => {
    const feed = new AlertFeed();
    feed.upsert(alert(1, "warning", "2026-01-01T10:00:09Z"));
    feed.upsert({ ...alert(1, "warning", "2026-01-01T10:00:01Z"), count: 1, reason: "old" });
    expect(feed.get(1)!.last_seen_at).toBe("2026-01-01T10:00:09Z");
  });
});

describe("the critical banner", () => {
  it("shows a critical alert until it is acknowledged, by anyone", () => {
    const feed = new AlertFeed();
    feed.applyEvent(event(1, "open"));
    feed.applyEvent(event(2, "open", "warning"));
    expect(feed.unacknowledgedCritical().map((a) => a.id)).toEqual([1]);
    feed.applyEvent(event(1, "acknowledged"));
    expect(feed.unacknowledgedCritical()).toEqual([]);
  });

  it("offers only what the server's state machine allows", () => {
    expect(nextActions("open")).toEqual(["acknowledge", "assign", "resolve"]);
    expect(nextActions("acknowledged")).toEqual(["assign", "resolve"]);
    expect(nextActions("resolved")).toEqual([]);
  });
});

describe("reading the list while events arrive", () => {
  it("keeps an alert opened while the list was on its way", () => {
    const feed = new AlertFeed();
    feed.startRead();
    feed.applyEvent(event(9, "open"));
    feed.load([]); // the list was made before the alert existed
    expect(feed.list().map((a) => a.id)).toEqual([9]);
    expect(feed.unacknowledgedCritical().map((a) => a.id)).toEqual([9]);
  });

  it("does not undo an acknowledgement that came while the list was on its way", () => {
    const feed = new AlertFeed();
    feed.startRead();
    feed.applyEvent(event(1, "acknowledged"));
    feed.load([alert(1, "critical", "2026-01-01T10:00:05Z", "open")]);
    expect(feed.get(1)!.status).toBe("acknowledged");
    expect(feed.unacknowledgedCritical()).toEqual([]);
  });

  it("forgets the events once the list is in", () => {
    const feed = new AlertFeed();
    feed.startRead();
    feed.applyEvent(event(2, "open"));
    feed.load([]);
    feed.load([]); // a later read without events in between: the server's word alone
    expect(feed.list()).toEqual([]);
  });
});
