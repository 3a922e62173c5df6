// Pure: the replay's plan and clock. A range is fetched in chunks the server accepts
// (fleet/control/replay_views.py: at most 2 min at recorded resolution, 6 h from the minute
// roll-ups), the fleet's positions are kept per truck in time order, and each truck is drawn
// where it was at the clock's time, interpolated between the two samples around it.

export type Resolution = "recorded" | "minute";

/** Up to an hour is played as recorded; beyond, from the minute roll-ups (an hour of 100
 * trucks at 10 Hz is already 3.6 million positions). */
export const RECORDED_UP_TO_MS = 3_600_000;
export const CHUNK_MS: Record<Resolution, number> = { recorded: 120_000, minute: 6 * 3_600_000 };
/** Samples further apart than this are not joined: the truck is held at the older one (a
 * link that was down is not drawn as a truck gliding across the pit). */
export const JOIN_GAP_MS: Record<Resolution, number> = { recorded: 15_000, minute: 150_000 };
export const SPEEDS = [1, 2, 5, 10, 20] as const;

export function resolutionFor(durationMs: number): Resolution {
  return durationMs <= RECORDED_UP_TO_MS ? "recorded" : "minute";
}

export interface Chunk {
  from: number;
  to: number;
}

/** [from, to) cut into consecutive chunks of at most the resolution's size. */
export function planChunks(from: number, to: number, resolution: Resolution): Chunk[] {
  const chunks: Chunk[] = [];
  for (let at = from; at < to; at += CHUNK_MS[resolution]) chunks.push({ from: at, to: Math.min(to, at + CHUNK_MS[resolution]) });
  return chunks;
}

/** The chunk that holds time t (the last one for t at the very end); -1 outside the range. */
export function chunkIndexAt(chunks: Chunk[], t: number): number {
  if (!chunks.length || t < chunks[0]!.from || t > chunks[chunks.length - 1]!.to) return -1;
  const index = chunks.findIndex((chunk) => t < chunk.to);
  return index < 0 ? chunks.length - 1 : index;
}

/** The replay's clock: replay time advances by real time times the speed while playing, and
 * stops at the end of the range. */
export class ReplayClock {
  t: number;
  speed = 1;
  playing = false;

  constructor(
    readonly from: number,
    readonly to: number,
  ) {
    this.t = from;
  }

  /** Advance by `realMs` of wall time; true when the time changed. */
  advance(realMs: number): boolean {
    if (!this.playing || realMs <= 0) return false;
    const before = this.t;
    this.t = Math.min(this.to, this.t + realMs * this.speed);
    if (this.t >= this.to) this.playing = false;
    return this.t !== before;
  }

  seek(t: number): void {
    this.t = Math.max(this.from, Math.min(this.to, t));
  }

  play(): void {
    if (this.t >= this.to) this.t = this.from; // play again from the start
    this.playing = true;
  }

  pause(): void {
    this.playing = false;
  }

  /** 0..1 through the range. */
  get fraction(): number {
    return this.to > this.from ? (this.t - this.from) / (this.to - this.from) : 0;
  }
}

/** One chunk as the server answers it (positions are [epoch ms, truck index, lon, lat,
 * heading or null, speed km/h], in time order). */
export interface ReplayAnswer {
  from: string;
  to: string;
  resolution: Resolution;
  trucks: Array<{ id: string; name: string }>;
  positions: Array<[number, number, number, number, number | null, number]>;
  /** [epoch ms, truck index, status]: each truck's status at the chunk's start, then its
   * changes (a ProductionState, or Offline, Maintenance, ... from the status history). */
  states?: Array<[number, number, string]>;
  alerts: Array<{ at: string; alert: number; action: string; equipment: string; kind: string; severity: string; reason: string; actor: string }>;
  commands: Array<{ at: string; command: string; message: string; equipment: string; status: string; reason: string; actor: string }>;
}

export interface Sample {
  at: number;
  lon: number;
  lat: number;
  heading: number | null;
  speedKmh: number;
}

export interface TruckAt {
  id: string;
  name: string;
  lon: number;
  lat: number;
  /** Compass degrees. */
  heading: number;
  speedKmh: number;
  /** Its status at that time ("Unknown" when none is recorded). */
  state: string;
}

/** Compass bearing in degrees from one point to another (short distances: flat earth). */
export function bearing(lon1: number, lat1: number, lon2: number, lat2: number): number {
  const dx = (lon2 - lon1) * Math.cos((lat1 * Math.PI) / 180);
  const dy = lat2 - lat1;
  return ((Math.atan2(dx, dy) * 180) / Math.PI + 360) % 360;
}

/** Between two headings the short way round (350° to 10° passes 0°, not 180°). */
export function lerpHeading(a: number, b: number, f: number): number {
  const delta = ((((b - a) % 360) + 540) % 360) - 180;
  return (a + delta * f + 360) % 360;
}

export function interpolate(before: Sample, after: Sample | undefined, t: number, maxGapMs: number): Omit<TruckAt, "id" | "name" | "state"> {
  const moved = after && (after.lon !== before.lon || after.lat !== before.lat);
  const motion = moved ? bearing(before.lon, before.lat, after!.lon, after!.lat) : null;
  const headingOf = (sample: Sample) => sample.heading ?? motion ?? 0;
  if (!after || after.at - before.at > maxGapMs || after.at <= before.at) {
    return { lon: before.lon, lat: before.lat, heading: headingOf(before), speedKmh: before.speedKmh };
  }
  const f = Math.max(0, Math.min(1, (t - before.at) / (after.at - before.at)));
  return {
    lon: before.lon + (after.lon - before.lon) * f,
    lat: before.lat + (after.lat - before.lat) * f,
    heading: lerpHeading(headingOf(before), headingOf(after), f),
    speedKmh: before.speedKmh + (after.speedKmh - before.speedKmh) * f,
  };
}

/** Index of the last sample at or before t (-1: none). */
export function lastAtOrBefore(samples: Sample[], t: number): number {
  let low = 0;
  let high = samples.length - 1;
  let found = -1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if (samples[middle]!.at <= t) {
      found = middle;
      low = middle + 1;
    } else {
      high = middle - 1;
    }
  }
  return found;
}

export interface ReplayEvent {
  at: number;
  kind: "alert" | "command";
  key: string;
  severity: string;
  equipment: string;
  title: string;
  detail: string;
}

/** The fleet's recorded positions and the alerts and commands of the loaded chunks. */
export class ReplayTrack {
  private readonly samples = new Map<string, Sample[]>();
  private readonly states = new Map<string, Array<{ at: number; status: string }>>();
  private readonly names = new Map<string, string>();
  private readonly loaded = new Set<number>();
  private readonly eventKeys = new Set<string>();
  readonly events: ReplayEvent[] = [];

  constructor(readonly resolution: Resolution) {}

  has(chunkFrom: number): boolean {
    return this.loaded.has(chunkFrom);
  }

  add(chunkFrom: number, answer: ReplayAnswer): void {
    if (this.loaded.has(chunkFrom)) return;
    this.loaded.add(chunkFrom);
    for (const truck of answer.trucks) this.names.set(truck.id, truck.name);
    const touched = new Set<Sample[]>();
    for (const [at, index, lon, lat, heading, speedKmh] of answer.positions) {
      const id = answer.trucks[index]?.id;
      if (!id) continue;
      let list = this.samples.get(id);
      if (!list) this.samples.set(id, (list = []));
      // Chunks usually arrive in order; one loaded out of order (a scrub ahead) is sorted in.
      if (list.length && list[list.length - 1]!.at > at) touched.add(list);
      list.push({ at, lon, lat, heading, speedKmh });
    }
    for (const list of touched) list.sort((a, b) => a.at - b.at);
    this.addStates(answer);
    this.addEvents(answer);
  }

  private addStates(answer: ReplayAnswer): void {
    for (const [at, index, status] of answer.states ?? []) {
      const id = answer.trucks[index]?.id;
      if (!id) continue;
      let list = this.states.get(id);
      if (!list) this.states.set(id, (list = []));
      list.push({ at, status });
      if (list.length > 1 && list[list.length - 2]!.at > at) list.sort((a, b) => a.at - b.at);
    }
  }

  /** Drop the positions of the loaded chunks more than `keep` chunks away from the one at
   * `index` (a long recorded range would otherwise hold millions of samples in the page); a
   * dropped chunk is fetched again if the clock comes back to it. Statuses and events, a few
   * per truck, stay. Returns the chunks dropped. */
  keepAround(chunks: Chunk[], index: number, keep = 2): number {
    let dropped = 0;
    chunks.forEach((chunk, i) => {
      if (Math.abs(i - index) <= keep || !this.loaded.has(chunk.from)) return;
      this.loaded.delete(chunk.from);
      dropped += 1;
      for (const [id, list] of this.samples) {
        const from = lastAtOrBefore(list, chunk.from - 1) + 1;
        const to = lastAtOrBefore(list, chunk.to - 1) + 1;
        if (to > from) list.splice(from, to - from);
        if (!list.length) this.samples.delete(id);
      }
    });
    return dropped;
  }

  /** Samples held in the page (tests). */
  sampleCount(): number {
    let count = 0;
    for (const list of this.samples.values()) count += list.length;
    return count;
  }

  /** A truck's status at time t: the last one at or before it. */
  stateAt(id: string, t: number): string {
    const list = this.states.get(id);
    if (!list) return "Unknown";
    let found = "Unknown";
    for (const entry of list) {
      if (entry.at > t) break;
      found = entry.status;
    }
    return found;
  }

  private addEvents(answer: ReplayAnswer): void {
    const fresh: ReplayEvent[] = [];
    for (const a of answer.alerts) {
      fresh.push({ at: Date.parse(a.at), kind: "alert", key: `a${a.alert}-${a.action}-${a.at}`, severity: a.severity, equipment: a.equipment, title: `${a.kind} ${a.action}${a.actor ? ` by ${a.actor}` : ""}`, detail: a.reason });
    }
    for (const c of answer.commands) {
      fresh.push({ at: Date.parse(c.at), kind: "command", key: `c${c.command}-${c.status}-${c.at}`, severity: "command", equipment: c.equipment, title: `${c.message.replace(/V\d+$/, "")} ${c.status}${c.actor ? ` by ${c.actor}` : ""}`, detail: c.reason });
    }
    for (const event of fresh) {
      if (this.eventKeys.has(event.key)) continue;
      this.eventKeys.add(event.key);
      this.events.push(event);
    }
    this.events.sort((a, b) => a.at - b.at);
  }

  /** Every truck with a sample at or before t, where it was at t. */
  at(t: number): TruckAt[] {
    const maxGap = JOIN_GAP_MS[this.resolution];
    const trucks: TruckAt[] = [];
    for (const [id, list] of this.samples) {
      const i = lastAtOrBefore(list, t);
      if (i < 0) continue;
      trucks.push({ id, name: this.names.get(id) ?? id.slice(0, 8), state: this.stateAt(id, t), ...interpolate(list[i]!, list[i + 1], t, maxGap) });
    }
    return trucks;
  }

  /** The events that happened by time t, the newest first. */
  eventsUntil(t: number, limit = 100): ReplayEvent[] {
    const index = this.events.findIndex((event) => event.at > t);
    const past = index < 0 ? this.events : this.events.slice(0, index);
    return past.slice(-limit).reverse();
  }

  truckCount(): number {
    return this.samples.size;
  }
}
