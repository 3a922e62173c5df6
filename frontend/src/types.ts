// The shapes the dashboard reads from the REST API (/api/docs/) and the site's websocket
// (/ws/sites/<id>/, fleet/live). Only the fields the dashboard uses are named.

/** A truck's position as the live feed sends it (fleet.telemetry.latest.position_summary). */
export interface PositionSummary {
  equipmentId: string;
  lon: number;
  lat: number;
  elevation?: number | null;
  /** Compass degrees, 0..359. */
  heading?: number | null;
  speedKmh?: number | null;
  /** The truck's own timestamp (ISO 8601). */
  at: string;
  roadRevision?: number | null;
}

/** One HaulTruckProductionStateV2 report (the `productionStates` event's `changes`). */
export interface ProductionStateChange {
  equipmentId: string;
  AssignmentId?: string | null;
  WayId?: number | null;
  AutonomyMode?: string;
  ProductionState?: string;
}

/** GET /api/v1/trucks/?site=: the register with the latest state from Redis. */
export interface TruckRecord {
  id: string;
  site: string;
  name: string;
  payload_capacity_t: number | null;
  autonomous: boolean;
  status: string;
  latest: {
    position?: PositionSummary;
    /** Seconds since the truck's newest message reached ingest. */
    seenAgeS?: number;
    HaulTruckProductionStateV2?: Omit<ProductionStateChange, "equipmentId">;
    HaulTruckPayloadV1?: { PayloadWeight: number };
    connection?: { state?: string };
  };
}

export interface Site {
  id: string;
  name: string;
  slug: string;
}

/** GET /api/v1/sites/ answers GeoJSON: a FeatureCollection of the sites' boundaries. */
export interface SiteCollection {
  type: "FeatureCollection";
  features: Array<{ id: string; properties: { name: string; slug: string } }>;
}

export function parseSites(collection: SiteCollection): Site[] {
  return collection.features
    .map((feature) => ({ id: String(feature.id), name: feature.properties.name, slug: feature.properties.slug }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

export type Severity = "info" | "warning" | "critical";
export type AlertStatus = "open" | "acknowledged" | "assigned" | "resolved";

/** An alert as the REST API lists it, or as the `alert` event sends it (fewer fields). */
export interface Alert {
  id: number;
  equipment: string;
  equipment_name?: string;
  kind: string;
  severity: Severity;
  status: AlertStatus;
  source: string;
  channel: string;
  reason: string;
  count: number;
  last_seen_at: string;
  assigned_to?: string | null;
}

/** The websocket `alert` event's payload (fleet.control.alerts.live_event). */
export interface AlertEvent {
  id: number;
  equipmentId: string;
  kind: string;
  severity: Severity;
  status: AlertStatus;
  source: string;
  channel: string;
  reason: string;
  count: number;
  lastSeenAt: string;
}

/** GET /api/v1/sites/<id>/all-stop/. */
export interface AllStopStatus {
  in_force: boolean;
  last: {
    mode: "Apply" | "Remove";
    stop_id: string;
    reason: string;
    actor: string;
    machines: number;
    at: string;
  } | null;
  acknowledged: string[];
  waiting: string[];
  failed: string[];
}

/** GET /api/v1/me/. */
export interface Me {
  username: string;
  is_superuser: boolean;
  roles: string[];
  can: {
    applyAllStop: boolean;
    removeAllStop: boolean;
    changeAlert: boolean;
    stopTruck: boolean;
    activateZone: boolean;
    decideTraffic: boolean;
    drainNode: boolean;
  };
}

/** Every frame on the site's websocket: `{event, data}`. */
export interface LiveMessage {
  event: string;
  data: unknown;
}

/** A truck's charted health readings: the live `health` event's items (with `equipmentId`) and
 * GET /api/v1/trucks/<id>/series/'s `health` (fleet.telemetry.latest.health_summary). */
export interface HealthReading {
  /** The reading's envelope Timestamp (ISO 8601). */
  at: string;
  coolantC: number | null;
  brakeFrontC: number | null;
  brakeRearC: number | null;
  /** Pressure by TirePosition ("1.1", "1.2", ...); null: the sensor was unavailable. */
  tyresKpa: Record<string, number | null>;
}

/** GET /api/v1/trucks/<id>/series/: mean speed per step, the newest health reading per step. */
export interface SeriesAnswer {
  step: number;
  speed: Array<{ at: string; speedKmh: number | null }>;
  health: HealthReading[];
}

/** One prediction: the live `prediction` event and GET /api/v1/trucks/<id>/predictions/
 * (fleet.learning.tasks.live_event). `outputs` depends on the head (`model`). */
export interface Prediction {
  equipmentId: string;
  model: string;
  modelId: string;
  windowEnd: string;
  outputs: Record<string, unknown>;
}

export type CommandStatus = "issued" | "sent" | "acknowledged" | "rejected" | "expired" | "superseded";

/** GET /api/v1/commands/?equipment= (fleet.control.views.CommandSerializer). */
export interface Command {
  serial: number;
  command_id: string;
  equipment: string;
  message_name: string;
  body: Record<string, unknown>;
  status: CommandStatus;
  reason: string;
  issued_by: string | null;
  issued_at: string;
  answered_at: string | null;
  answer: string;
}

/** The live `command.changed` event's payload (fleet.control.services._changed). */
export interface CommandChange {
  commandId: string;
  equipmentId: string;
  message: string;
  status: CommandStatus;
  reason: string;
  answer: string;
}

/** GET /api/v1/loading-units/?site=: GeoJSON features. */
export interface LoadingUnitCollection {
  features: Array<{ id: number; properties: { name: string; active: boolean; material: string } }>;
}
