// Traffic permissions as the control room sees them (GET /api/v1/traffic-permissions/?site=,
// docs/control-traffic.md): the requests waiting and the grants in force first, then the latest
// closed ones; live `traffic.changed` events update a known permission in place, and an unknown
// one asks for a re-read. Pure: no DOM.

import type { LiveMessage } from "./types";

export type PermitStatus = "pending" | "granted" | "released" | "expired" | "revoked" | "rejected";

export interface TrafficPermit {
  id: string;
  truck: string;
  equipment: string;
  zone: string;
  zone_name: string;
  way_id: number | null;
  loaded: boolean;
  status: PermitStatus;
  reason: string;
  decided_by: string;
  requested_at: string;
  granted_at: string | null;
  closed_at: string | null;
}

/** The `traffic.changed` event's data (fleet/control/traffic_services.py). */
export interface PermitEvent {
  permissionId: string;
  status: PermitStatus;
  reason: string;
  actor: string;
}

export const OPEN_STATUSES: PermitStatus[] = ["pending", "granted"];
// Closed permissions shown under the open ones: what just happened, not the day's history.
export const CLOSED_SHOWN = 8;

export const PERMIT_LABELS: Record<PermitStatus, string> = {
  pending: "Waiting",
  granted: "Granted",
  released: "Released",
  expired: "Expired",
  revoked: "Revoked",
  rejected: "Refused",
};

export type PermitAction = "grant" | "revoke";

/** What a supervisor may do by hand: grant a waiting request out of turn or refuse it; revoke
 * a grant. The server decides (409 when it would conflict); these are the buttons shown. */
export function permitActions(status: PermitStatus): PermitAction[] {
  if (status === "pending") return ["grant", "revoke"];
  if (status === "granted") return ["revoke"];
  return [];
}

export function actionLabel(action: PermitAction, status: PermitStatus): string {
  if (action === "grant") return "Grant";
  return status === "pending" ? "Refuse" : "Revoke";
}

export class PermitList {
  private readonly byId = new Map<string, TrafficPermit>();

  load(permits: TrafficPermit[]): void {
    this.byId.clear();
    for (const permit of permits) this.byId.set(permit.id, permit);
  }

  upsert(permit: TrafficPermit): void {
    this.byId.set(permit.id, permit);
  }

  /** Apply a live change; false when the permission is not known here (a new request): the
   * caller reads the list again. */
  applyEvent(event: PermitEvent): boolean {
    const known = this.byId.get(event.permissionId);
    if (!known) return false;
    this.byId.set(known.id, { ...known, status: event.status, reason: event.reason, decided_by: event.actor });
    return true;
  }

  /** Open ones first (waiting before granted, oldest request first: the queue's order), then
   * the latest closed ones, newest first. */
  list(): { open: TrafficPermit[]; closed: TrafficPermit[] } {
    const all = [...this.byId.values()];
    const open = all
      .filter((p) => OPEN_STATUSES.includes(p.status))
      .sort((a, b) => OPEN_STATUSES.indexOf(a.status) - OPEN_STATUSES.indexOf(b.status) || a.requested_at.localeCompare(b.requested_at));
    const closed = all
      .filter((p) => !OPEN_STATUSES.includes(p.status))
      .sort((a, b) => (b.closed_at ?? b.requested_at).localeCompare(a.closed_at ?? a.requested_at))
      .slice(0, CLOSED_SHOWN);
    return { open, closed };
  }
}

export function isPermitEvent(message: LiveMessage): message is { event: "traffic.changed"; data: PermitEvent } {
  return message.event === "traffic.changed";
}

/** "HT-004 · West switchback · loaded, by way 12" */
export function permitTitle(permit: TrafficPermit): string {
  const how = [permit.loaded ? "loaded" : "empty", permit.way_id === null ? "from inside" : `by way ${permit.way_id}`].join(", ");
  return `${permit.truck} · ${permit.zone_name} · ${how}`;
}
