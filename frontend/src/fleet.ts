// The dashboard's picture of the fleet: one record per truck, merged from the REST register and
// the live events. Pure: no DOM, no map; `now` is always passed in (milliseconds on the page's
// monotonic clock, performance.now()), so staleness is judged by when an update reached this
// page, never by comparing a truck's clock with the browser's.

import type { PositionSummary, ProductionStateChange, TruckRecord } from "./types";

/** A link with no update for this long is drawn stale. The FMS's own rules stop trusting a
 * position after 5 s (COLLISION_POSITION_MAX_AGE_S); trucks report at 1-10 Hz and the live feed
 * sends at most every 0.5 s, so 5 s is several missed reports, not jitter. */
export const STALE_AFTER_S = 5;

export interface Truck {
  id: string;
  name: string;
  capacityT: number | null;
  lon: number | null;
  lat: number | null;
  heading: number;
  speedKmh: number | null;
  /** The truck's own timestamp of its newest position, ms since the epoch (orders updates). */
  at: number;
  /** When the newest update reached this page, on the page's clock (ms); null: never. */
  seenAt: number | null;
  state: string;
  autonomyMode: string;
  payloadT: number | null;
  /** The truck acknowledged the all-stop in force (the server's all-stop status says so). */
  allStopped: boolean;
}

export function newTruck(id: string, name?: string): Truck {
  return {
    id,
    name: name ?? id.slice(0, 8),
    capacityT: null,
    lon: null,
    lat: null,
    heading: 0,
    speedKmh: null,
    at: 0,
    seenAt: null,
    state: "Unknown",
    autonomyMode: "",
    payloadT: null,
    allStopped: false,
  };
}

/** A position, if it is newer than what the truck has; the truck unchanged (same object)
 * otherwise, so a caller can tell a late or repeated update from a real one. */
export function mergePosition(truck: Truck, position: PositionSummary, now: number): Truck {
  const at = Date.parse(position.at);
  if (!Number.isFinite(at) || at <= truck.at) {
    return truck;
  }
  return {
    ...truck,
    lon: position.lon,
    lat: position.lat,
    heading: position.heading ?? truck.heading,
    speedKmh: position.speedKmh ?? null,
    at,
    seenAt: now,
  };
}

export function mergeState(truck: Truck, change: Omit<ProductionStateChange, "equipmentId">): Truck {
  return {
    ...truck,
    state: change.ProductionState ?? truck.state,
    autonomyMode: change.AutonomyMode ?? truck.autonomyMode,
  };
}

/** A truck from the register: name and capacity always; its latest state where it is newer
 * than what live events already brought. `seenAgeS` is the server's age of the newest message,
 * turned into a time on this page's clock. */
export function mergeRecord(truck: Truck | undefined, record: TruckRecord, now: number): Truck {
  let merged: Truck = {
    ...(truck ?? newTruck(record.id)),
    name: record.name,
    capacityT: record.payload_capacity_t,
  };
  const latest = record.latest ?? {};
  if (latest.position) {
    const before = merged;
    merged = mergePosition(merged, latest.position, now);
    if (merged !== before && latest.seenAgeS !== undefined) {
      merged.seenAt = now - latest.seenAgeS * 1000;
    }
  }
  if (latest.HaulTruckProductionStateV2 && merged.state === "Unknown") {
    merged = mergeState(merged, latest.HaulTruckProductionStateV2);
  }
  if (latest.HaulTruckPayloadV1) {
    merged.payloadT = latest.HaulTruckPayloadV1.PayloadWeight;
  }
  return merged;
}

/** Seconds since the truck's newest update reached the page; Infinity if none ever did. */
export function ageS(truck: Truck, now: number): number {
  return truck.seenAt === null ? Infinity : Math.max(0, (now - truck.seenAt) / 1000);
}

export function isStale(truck: Truck, now: number, afterS = STALE_AFTER_S): boolean {
  return ageS(truck, now) > afterS;
}

/** "4 s", "2 min", "3 h", "never": short enough for a map label. */
export function formatAge(seconds: number): string {
  if (!Number.isFinite(seconds)) return "never";
  if (seconds < 60) return `${Math.floor(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  return `${Math.floor(seconds / 3600)} h`;
}

/** Payload as a share of capacity, 0..1 (0 when either is unknown). */
export function loadFraction(truck: Truck): number {
  if (truck.payloadT === null || !truck.capacityT) return 0;
  return Math.min(1, Math.max(0, truck.payloadT / truck.capacityT));
}

/**
 * The fleet of one site. Every change marks the truck dirty; the map drains the dirty set once
 * per animation frame, so however many events arrive between two frames, each truck is
 * redrawn once, with its newest state.
 */
export class Fleet {
  readonly trucks = new Map<string, Truck>();
  private dirty = new Set<string>();

  private put(before: Truck | undefined, after: Truck): void {
    if (before === after) return;
    this.trucks.set(after.id, after);
    this.dirty.add(after.id);
  }

  private get(id: string): Truck {
    return this.trucks.get(id) ?? newTruck(id);
  }

  applyRecords(records: TruckRecord[], now: number): void {
    for (const record of records) {
      this.put(this.trucks.get(record.id), mergeRecord(this.trucks.get(record.id), record, now));
    }
  }

  /** Returns the ids this page did not know yet (the register should be read again). */
  applyPositions(positions: PositionSummary[], now: number): string[] {
    const unknown: string[] = [];
    for (const position of positions) {
      const before = this.trucks.get(position.equipmentId);
      if (before === undefined) unknown.push(position.equipmentId);
      this.put(before, mergePosition(before ?? newTruck(position.equipmentId), position, now));
    }
    return unknown;
  }

  applyStates(changes: ProductionStateChange[]): void {
    for (const change of changes) {
      this.put(this.trucks.get(change.equipmentId), mergeState(this.get(change.equipmentId), change));
    }
  }

  /** The trucks changed since the last call, each once. */
  drainDirty(): Truck[] {
    const changed = [...this.dirty].flatMap((id) => {
      const truck = this.trucks.get(id);
      return truck ? [truck] : [];
    });
    this.dirty.clear();
    return changed;
  }

  /** The machines that acknowledged the all-stop in force (none when none is in force): they
   * are drawn as held by it until the server says otherwise. */
  setAllStopped(names: Iterable<string>): void {
    const held = new Set(names);
    for (const truck of this.trucks.values()) {
      const allStopped = held.has(truck.name);
      if (truck.allStopped !== allStopped) this.put(truck, { ...truck, allStopped });
    }
  }

  byName(name: string): Truck | undefined {
    for (const truck of this.trucks.values()) {
      if (truck.name === name) return truck;
    }
    return undefined;
  }

  stale(now: number, afterS = STALE_AFTER_S): Truck[] {
    return [...this.trucks.values()]
      .filter((truck) => truck.lon !== null && isStale(truck, now, afterS))
      .sort((a, b) => ageS(b, now) - ageS(a, now));
  }
}
