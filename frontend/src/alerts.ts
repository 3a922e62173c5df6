// The alerts feed: the unresolved alerts of one site, most severe first, merged from the REST
// list and the live `alert` events. Pure: the panel renders what these functions return.

import type { Alert, AlertEvent, Severity } from "./types";

const SEVERITY_RANK: Record<Severity, number> = { critical: 0, warning: 1, info: 2 };

/** The event's fields over what the page knows (the event has no machine name or assignee). */
export function fromEvent(event: AlertEvent, known: Alert | undefined): Alert {
  return {
    ...known,
    id: event.id,
    equipment: event.equipmentId,
    kind: event.kind,
    severity: event.severity,
    status: event.status,
    source: event.source,
    channel: event.channel,
    reason: event.reason,
    count: event.count,
    last_seen_at: event.lastSeenAt,
    // An alert that went back to Open or on to Acknowledged is no longer someone's.
    assigned_to: event.status === "assigned" ? (known?.assigned_to ?? null) : null,
  };
}

/** Most severe first, then the most recently seen. */
export function compareAlerts(a: Alert, b: Alert): number {
  return (
    SEVERITY_RANK[a.severity] - SEVERITY_RANK[b.severity] ||
    Date.parse(b.last_seen_at) - Date.parse(a.last_seen_at) ||
    b.id - a.id
  );
}

export class AlertFeed {
  private alerts = new Map<number, Alert>();
  /** What live events and actions brought while a read of the list was on its way: the list
   * may have been made before them, so they are applied again over it. */
  private sinceRead: Map<number, Alert> | null = null;

  /** Call when a read of the REST list starts. */
  startRead(): void {
    this.sinceRead = new Map();
  }

  /** The REST list replaces what the page had (it is the server's word at that moment), then
   * what arrived since the read started goes over it: an alert opened while the list was on
   * its way is not lost, an acknowledgement is not undone. */
  load(alerts: Alert[]): void {
    const since = this.sinceRead ?? new Map<number, Alert>();
    this.sinceRead = null;
    this.alerts.clear();
    for (const alert of alerts) this.upsert(alert);
    for (const alert of since.values()) this.upsert(alert);
  }

  /** One alert, from an answer to an action (it carries every field) or a live event. */
  upsert(alert: Alert): void {
    this.sinceRead?.set(alert.id, { ...this.sinceRead.get(alert.id), ...alert });
    const known = this.alerts.get(alert.id);
    // Events can overtake each other between replicas: never go back to an older sighting
    // of the same status.
    if (
      known &&
      known.status === alert.status &&
      Date.parse(known.last_seen_at) > Date.parse(alert.last_seen_at)
    ) {
      return;
    }
    if (alert.status === "resolved") {
      this.alerts.delete(alert.id);
    } else {
      this.alerts.set(alert.id, { ...known, ...alert });
    }
  }

  applyEvent(event: AlertEvent): void {
    this.upsert(fromEvent(event, this.alerts.get(event.id)));
  }

  get(id: number): Alert | undefined {
    return this.alerts.get(id);
  }

  /** Unresolved alerts, most severe and newest first. */
  list(): Alert[] {
    return [...this.alerts.values()].sort(compareAlerts);
  }

  counts(): Record<Severity, number> {
    const counts: Record<Severity, number> = { critical: 0, warning: 0, info: 0 };
    for (const alert of this.alerts.values()) counts[alert.severity] += 1;
    return counts;
  }

  /** What the banner shows: critical alerts nobody has acknowledged yet. It stays until each
   * is acknowledged (or resolved), by this operator or another. */
  unacknowledgedCritical(): Alert[] {
    return this.list().filter((a) => a.severity === "critical" && a.status === "open");
  }
}

/** What an operator may do next with an alert in this status (the server's state machine:
 * Open -> Acknowledged -> Assigned -> Resolved; fleet.control.alerts). */
export function nextActions(status: Alert["status"]): Array<"acknowledge" | "assign" | "resolve"> {
  switch (status) {
    case "open":
      return ["acknowledge", "assign", "resolve"];
    case "acknowledged":
      return ["assign", "resolve"];
    case "assigned":
      return ["assign", "resolve"];
    default:
      return [];
  }
}
