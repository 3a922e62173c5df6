// Zones drawn in the control room: the polygon checked before it is sent (the server checks it
// again: fleet/mine/geometry.py), the policy asked for turned into the ISO 23725 form the API
// takes, and the zone list with each machine's answer (GET /api/v1/sites/<id>/zone-answers/).
// Pure: no DOM, no map.

import type { LiveMessage } from "./types";

/** [longitude, latitude] in WGS84 degrees. */
export type LonLat = [number, number];

// The server's own bound (fleet/mine/geometry.py MIN_ZONE_AREA_M2): smaller than a haul truck.
export const MIN_ZONE_AREA_M2 = 50;
const METRES_PER_DEGREE = 111_320;

/** The ring without its closing vertex and without vertices repeated in a row (a double click
 * ends OpenLayers' Draw with the last point twice). */
export function openRing(ring: LonLat[]): LonLat[] {
  const out: LonLat[] = [];
  for (const point of ring) {
    const last = out[out.length - 1];
    if (!last || last[0] !== point[0] || last[1] !== point[1]) out.push(point);
  }
  const first = out[0];
  const last = out[out.length - 1];
  if (out.length > 1 && first![0] === last![0] && first![1] === last![1]) out.pop();
  return out;
}

/** The ring closed (first vertex repeated last), as GeoJSON wants it. */
export function closedRing(ring: LonLat[]): LonLat[] {
  const open = openRing(ring);
  return open.length ? [...open, open[0]!] : [];
}

/** Metres east and north of the ring's first vertex: an equirectangular projection, exact
 * enough over a mine (a few km) for an area check and crossing tests. */
function toMetres(ring: LonLat[]): Array<[number, number]> {
  const [lon0, lat0] = ring[0]!;
  const scale = Math.cos((lat0 * Math.PI) / 180);
  return ring.map(([lon, lat]) => [(lon - lon0) * METRES_PER_DEGREE * scale, (lat - lat0) * METRES_PER_DEGREE]);
}

/** Area in square metres of an open ring (the shoelace formula). */
export function areaM2(ring: LonLat[]): number {
  const open = openRing(ring);
  if (open.length < 3) return 0;
  const xy = toMetres(open);
  let twice = 0;
  for (let i = 0; i < xy.length; i++) {
    const [x0, y0] = xy[i]!;
    const [x1, y1] = xy[(i + 1) % xy.length]!;
    twice += x0 * y1 - x1 * y0;
  }
  return Math.abs(twice) / 2;
}

function orientation(a: number[], b: number[], c: number[]): number {
  const value = (b[1]! - a[1]!) * (c[0]! - b[0]!) - (b[0]! - a[0]!) * (c[1]! - b[1]!);
  return Math.abs(value) < 1e-9 ? 0 : Math.sign(value);
}

function onSegment(a: number[], b: number[], p: number[]): boolean {
  return Math.min(a[0]!, b[0]!) - 1e-9 <= p[0]! && p[0]! <= Math.max(a[0]!, b[0]!) + 1e-9 && Math.min(a[1]!, b[1]!) - 1e-9 <= p[1]! && p[1]! <= Math.max(a[1]!, b[1]!) + 1e-9;
}

function segmentsCross(a: number[], b: number[], c: number[], d: number[]): boolean {
  const o1 = orientation(a, b, c);
  const o2 = orientation(a, b, d);
  const o3 = orientation(c, d, a);
  const o4 = orientation(c, d, b);
  if (o1 !== o2 && o3 !== o4) return true;
  return (o1 === 0 && onSegment(a, b, c)) || (o2 === 0 && onSegment(a, b, d)) || (o3 === 0 && onSegment(c, d, a)) || (o4 === 0 && onSegment(c, d, b));
}

/** Whether two edges of the ring that are not neighbours touch or cross (a bow tie). */
export function selfIntersects(ring: LonLat[]): boolean {
  const xy = toMetres(openRing(ring));
  const n = xy.length;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      if (j === i + 1 || (i === 0 && j === n - 1)) continue; // neighbours share a vertex
      if (segmentsCross(xy[i]!, xy[(i + 1) % n]!, xy[j]!, xy[(j + 1) % n]!)) return true;
    }
  }
  return false;
}

/** Why the drawn ring cannot be a zone, in the operator's words; empty when it can. */
export function polygonProblems(ring: LonLat[]): string[] {
  const open = openRing(ring);
  if (open.length < 3) return ["A zone needs at least three corners."];
  if (selfIntersects(open)) return ["The outline crosses itself: draw it again without crossing."];
  const area = areaM2(open);
  if (area < MIN_ZONE_AREA_M2) return [`The zone covers ${Math.round(area)} m², less than a haul truck (${MIN_ZONE_AREA_M2} m²).`];
  return [];
}

export type PolicyChoice = "exclusion" | "speedLimit";

/** The policies the API takes for what the operator chose: an exclusion, or a speed limit given
 * in km/h (the server's absolute limits are in metres per second). */
export function policiesFor(choice: string, speedKmh: string): { policies: Record<string, Record<string, unknown>> } | { error: string } {
  if (choice === "exclusion") return { policies: { exclusion: {} } };
  if (choice !== "speedLimit") return { error: `Unknown policy ${choice}.` };
  const kmh = Number(speedKmh.trim().replace(",", "."));
  if (!speedKmh.trim() || !Number.isFinite(kmh)) return { error: "Give the speed limit in km/h." };
  if (kmh < 1 || kmh > 100) return { error: `A speed limit of ${kmh} km/h is outside 1 to 100 km/h.` };
  return { policies: { speedLimit: { type: "absolute", value: Math.round((kmh / 3.6) * 1000) / 1000 } } };
}

/** One zone with its machines' answers to the latest request about it. */
export interface ZoneAnswers {
  id: string;
  name: string;
  status: "pending" | "active" | "pending_delete" | "deleted";
  policies: Record<string, Record<string, unknown>>;
  reason: string;
  delete_reason: string;
  activated_at: string | null;
  deleted_at: string | null;
  request: "activate" | "deactivate";
  accepted: string[];
  rejected: Array<{ machine: string; reason: string }>;
  waiting: string[];
  silent: string[];
}

const STATUS_ORDER: Record<ZoneAnswers["status"], number> = { active: 0, pending: 1, pending_delete: 2, deleted: 3 };
export const STATUS_LABELS: Record<ZoneAnswers["status"], string> = {
  active: "Active",
  pending: "Pending",
  pending_delete: "Being deleted",
  deleted: "Deleted",
};

/** Active zones first, then pending, being deleted and lately deleted; by name within each. */
export function orderZones(zones: ZoneAnswers[]): ZoneAnswers[] {
  return [...zones].sort((a, b) => STATUS_ORDER[a.status] - STATUS_ORDER[b.status] || a.name.localeCompare(b.name));
}

/** "2 of 3 accepted the activation" / "3 of 3 dropped it", or "" when no machine was asked. */
export function answerLine(zone: ZoneAnswers): string {
  const total = zone.accepted.length + zone.rejected.length + zone.waiting.length + zone.silent.length;
  // Machines that connect later are not asked on their own: they get the whole active set.
  if (!total) return zone.status === "deleted" || zone.status === "pending_delete" ? "No machine was connected to ask." : "No machine was asked on its own: each gets it in the zone set sent when it connects.";
  const verb = zone.request === "activate" ? "accepted it" : "dropped it";
  return `${zone.accepted.length} of ${total} ${verb}`;
}

/** Which live events can change the zone list: a zone's own change, and the answers to the
 * zone commands (each machine's Activate/Deactivate response closes its command). */
export const ZONE_MESSAGES = ["ActivateZoneRequestV1", "DeactivateZoneRequestV1"];

export function touchesZones(message: LiveMessage): boolean {
  if (message.event === "zone.changed") return true;
  if (message.event === "command.changed" || message.event === "commands.answered") {
    const data = message.data as { message?: string } | null;
    return ZONE_MESSAGES.includes(data?.message ?? "");
  }
  return false;
}
