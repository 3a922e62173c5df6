// Pure: the production and pool answers turned into what the plots and tables draw. uPlot
// takes columns (x in seconds since the epoch, then one array per series, null for a gap).

export type Columns = [number[], ...(number | null)[][]];

// --- time ranges -----------------------------------------------------------------------------

export type RangeChoice = "shift" | "hour" | "12h";

export const RANGE_LABELS: Record<RangeChoice, string> = {
  shift: "Shift so far",
  hour: "Last hour",
  "12h": "Last 12 h",
};

/** Shifts of SHIFT_HOURS starting at SHIFT_START_HOUR local time (06:00 and 18:00): the
 * common roster of open-pit mines; the server keeps no roster yet. */
export const SHIFT_START_HOUR = 6;
export const SHIFT_HOURS = 12;

/** When the shift running at `now` began (local time of the browser). */
export function shiftStart(now: Date, firstHour = SHIFT_START_HOUR, hours = SHIFT_HOURS): Date {
  const start = new Date(now);
  start.setHours(firstHour, 0, 0, 0);
  while (start > now) start.setTime(start.getTime() - hours * 3_600_000);
  while (start.getTime() + hours * 3_600_000 <= now.getTime()) start.setTime(start.getTime() + hours * 3_600_000);
  return start;
}

export interface TimeRange {
  from: Date;
  to: Date;
  /** Seconds per point of the series: about 12 to 50 points whatever the range. */
  bucketS: number;
}

export function rangeFor(choice: RangeChoice, now: Date): TimeRange {
  const to = new Date(now);
  if (choice === "hour") return { from: new Date(now.getTime() - 3_600_000), to, bucketS: 300 };
  if (choice === "12h") return { from: new Date(now.getTime() - 12 * 3_600_000), to, bucketS: 1800 };
  const from = shiftStart(now);
  // The server wants at least a minute; a shift that began seconds ago gets one.
  if (to.getTime() - from.getTime() < 60_000) from.setTime(to.getTime() - 60_000);
  const spanS = (to.getTime() - from.getTime()) / 1000;
  return { from, to, bucketS: spanS <= 2 * 3600 ? 300 : 900 };
}

export function rangeQuery(range: TimeRange, bucket = true): string {
  const query = new URLSearchParams({ from: range.from.toISOString(), to: range.to.toISOString() });
  if (bucket) query.set("bucket", String(range.bucketS));
  return query.toString();
}

// --- production --------------------------------------------------------------------------------

export const PHASES = [
  { key: "queue_s", label: "Queue", colour: "#f9a825" },
  { key: "spot_s", label: "Spot", colour: "#00897b" },
  { key: "load_s", label: "Load", colour: "#7cb342" },
  { key: "haul_s", label: "Haul", colour: "#2e7d32" },
  { key: "dump_s", label: "Dump", colour: "#8d6e63" },
  { key: "return_s", label: "Return", colour: "#1565c0" },
] as const;

export type PhaseKey = (typeof PHASES)[number]["key"];

export interface Production {
  from: string;
  to: string;
  bucket_s: number;
  cycles: number;
  tonnes: number;
  tph: number | null;
  cycle_time_s: Record<PhaseKey, number | null>;
  tph_series: Array<{ at: string; cycles: number; tonnes: number; tph: number }>;
  loading_units: Array<{ loadingUnit: string; name: string; cycles: number; tonnes: number; tph: number | null; queue_s: number | null; load_s: number | null }>;
}

export interface TimeUseDict {
  seconds: Record<"operating" | "standby" | "offline" | "down", number>;
  availability: number | null;
  utilisation: number | null;
}

export interface Availability {
  from: string;
  to: string;
  fleet: TimeUseDict;
  machines: Array<{ equipment: string; name: string } & TimeUseDict>;
  series?: Array<{ at: string } & TimeUseDict>;
}

export function epochS(iso: string): number {
  return Date.parse(iso) / 1000;
}

export function tphColumns(production: Production): Columns {
  return [production.tph_series.map((p) => epochS(p.at)), production.tph_series.map((p) => p.tph)];
}

/** Availability and utilisation in per cent; an empty bucket (no machine) is a gap. */
export function availabilityColumns(availability: Availability): Columns {
  const series = availability.series ?? [];
  const percent = (value: number | null) => (value === null ? null : Math.round(value * 1000) / 10);
  return [series.map((p) => epochS(p.at)), series.map((p) => percent(p.availability)), series.map((p) => percent(p.utilisation))];
}

export interface PhaseShare {
  key: PhaseKey;
  label: string;
  colour: string;
  seconds: number;
  /** Of the whole mean cycle, 0..1. */
  share: number;
}

/** The mean cycle split into its phases (a phase with no figure counts as 0 s). */
export function cycleBreakdown(cycleTime: Record<PhaseKey, number | null>): { totalS: number; phases: PhaseShare[] } {
  const totalS = PHASES.reduce((sum, phase) => sum + (cycleTime[phase.key] ?? 0), 0);
  return {
    totalS,
    phases: PHASES.map((phase) => {
      const seconds = cycleTime[phase.key] ?? 0;
      return { ...phase, seconds, share: totalS > 0 ? seconds / totalS : 0 };
    }),
  };
}

/** "7 min 05 s", "45 s": durations as a control room reads them. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return "–";
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole} s`;
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) return `${minutes} min ${String(whole % 60).padStart(2, "0")} s`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

// --- pool ------------------------------------------------------------------------------------

export interface DeploymentPoint {
  at: string;
  replicas: number;
  served_per_s: number;
  mean_batch_rows: number | null;
  latency_p50_ms: number | null;
  latency_p99_ms: number | null;
  queue_requests: number;
}

export interface Utilisation {
  from: string;
  to: string;
  /** Per node/slice: [time, busy 0..1 or null]. */
  slices: Record<string, Array<[string, number | null]>>;
  deployments: Record<string, DeploymentPoint[]>;
}

/** Several series on their own times, aligned on the union of the times (uPlot's one x
 * column); a series without a point at a time has a gap there. Names come back sorted. */
export function alignSeries(series: Record<string, Array<[number, number | null]>>): { names: string[]; columns: Columns } {
  const names = Object.keys(series).sort();
  const times = [...new Set(names.flatMap((name) => series[name]!.map(([t]) => t)))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const columns: Columns = [times];
  for (const name of names) {
    const column: (number | null)[] = new Array(times.length).fill(null);
    for (const [t, value] of series[name]!) column[index.get(t)!] = value;
    columns.push(column);
  }
  return { names, columns };
}

/** Each slice's busy fraction over time, in per cent. */
export function sliceColumns(utilisation: Utilisation): { names: string[]; columns: Columns } {
  const series: Record<string, Array<[number, number | null]>> = {};
  for (const [key, points] of Object.entries(utilisation.slices)) {
    series[key] = points.map(([at, busy]) => [epochS(at), busy === null ? null : Math.round(busy * 1000) / 10]);
  }
  return alignSeries(series);
}

/** One figure of every deployment over time (latency p99, batch size, rate). */
export function deploymentColumns(utilisation: Utilisation, field: "latency_p99_ms" | "latency_p50_ms" | "mean_batch_rows" | "served_per_s"): { names: string[]; columns: Columns } {
  const series: Record<string, Array<[number, number | null]>> = {};
  for (const [name, points] of Object.entries(utilisation.deployments)) {
    series[name] = points.map((point) => [epochS(point.at), point[field]]);
  }
  return alignSeries(series);
}

/** The newest point of a series: what a table shows beside the plot. */
export function latest<T>(points: T[] | undefined): T | undefined {
  return points && points.length ? points[points.length - 1] : undefined;
}

/** GET /api/v1/pool/ (fleet/pool/serializers.py), the fields the view reads. */
export interface PoolReplica {
  deployment: string;
  model_id: string;
  engine: string;
  consuming: boolean;
  served_per_s: number | null;
  mean_batch_rows: number | null;
  latency_ms: { p50: number | null; p99: number | null; mean: number | null } | null;
  queue_requests: number | null;
  rejected_total: number;
}

export interface PoolSlice {
  key: string;
  name: string;
  device: string;
  kind: string;
  live: boolean;
  restarts: number | null;
  compute_share: number | null;
  memory_bytes: number | null;
  busy: number | null;
  serving: string[];
  assigned: string[];
  share: { configured_share: number | null; delivered_share: number | null } | null;
  replicas: PoolReplica[];
}

export interface PoolNode {
  name: string;
  up: boolean;
  host: string;
  heartbeat_at: string | null;
  draining: boolean;
  drained_by: string | null;
  drained_at: string | null;
  devices: Array<Record<string, unknown>>;
  slices: PoolSlice[];
}

export interface PoolDeployment {
  name: string;
  model: string;
  model_id: string;
  priority: string;
  slo_ms: number;
  min_replicas: number;
  max_replicas: number;
  replicas: string[];
  serving: string[];
  unplaced: string | null;
  queue_requests: number;
  served_per_s: number;
}

export interface Pool {
  at: string;
  plan: { version: number; at: string; decisions: string[] } | null;
  nodes: PoolNode[];
  deployments: PoolDeployment[];
}

export interface ModelFigures {
  /** Where a replica of it runs now (node/slice). */
  slices: string[];
  servedPerS: number;
  /** The worst replica's: the one a request may land on. */
  latencyP99Ms: number | null;
  /** Mean over the replicas that report one. */
  latencyP50Ms: number | null;
  meanBatchRows: number | null;
}

/** Each deployment's figures now, from its replicas' batchers on every slice. */
export function modelFigures(nodes: PoolNode[]): Map<string, ModelFigures> {
  const collected = new Map<string, { slices: string[]; served: number; p99: number[]; p50: number[]; batch: number[] }>();
  for (const node of nodes) {
    for (const slice of node.slices) {
      for (const replica of slice.replicas) {
        let entry = collected.get(replica.deployment);
        if (!entry) collected.set(replica.deployment, (entry = { slices: [], served: 0, p99: [], p50: [], batch: [] }));
        entry.slices.push(slice.key);
        entry.served += replica.served_per_s ?? 0;
        if (replica.latency_ms?.p99 != null) entry.p99.push(replica.latency_ms.p99);
        if (replica.latency_ms?.p50 != null) entry.p50.push(replica.latency_ms.p50);
        if (replica.mean_batch_rows != null) entry.batch.push(replica.mean_batch_rows);
      }
    }
  }
  const mean = (values: number[]) => (values.length ? values.reduce((a, b) => a + b, 0) / values.length : null);
  return new Map(
    [...collected].map(([name, e]) => [
      name,
      { slices: e.slices.sort(), servedPerS: e.served, latencyP99Ms: e.p99.length ? Math.max(...e.p99) : null, latencyP50Ms: mean(e.p50), meanBatchRows: mean(e.batch) },
    ]),
  );
}
