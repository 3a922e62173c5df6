// The machine detail's time series: a short window (10 minutes) of samples per chart, filled
// first from the REST history (GET /api/v1/trucks/<id>/series/) and then from the live feed
// (`positions` for the speed, `health` for the temperatures and tyre pressures). Pure: no DOM,
// no uPlot; the chart takes `data()` as it is (uPlot's aligned columns).
//
// Times are the truck's own timestamps (seconds since the epoch), never the browser's clock:
// the history and the live samples are then on one axis, and the window is trimmed from the
// newest sample, so a browser with a wrong clock still shows the last 10 minutes.

import type { HealthReading, PositionSummary, SeriesAnswer } from "./types";

export const WINDOW_S = 600;

export interface Sample {
  /** Seconds since the epoch (the truck's timestamp). */
  t: number;
  values: Record<string, number | null>;
}

/** uPlot's AlignedData: the times, then one column per channel (null: no reading). */
export type Columns = [number[], ...(number | null)[][]];

export class SeriesBuffer {
  readonly channels: string[] = [];
  private readonly times: number[] = [];
  private readonly columns = new Map<string, (number | null)[]>();

  /**
   * @param windowS how far back from the newest sample to keep
   * @param minSpacingS the spacing kept between points: positions come at up to 10 a second,
   *   and a 10-minute chart needs no more than two a second
   */
  constructor(
    readonly windowS = WINDOW_S,
    readonly minSpacingS = 0.5,
    channels: string[] = [],
  ) {
    for (const channel of channels) this.channel(channel);
  }

  get length(): number {
    return this.times.length;
  }

  /** Add channels in the order first seen (a truck's tyres are known from its first reading). */
  private channel(name: string): (number | null)[] {
    let column = this.columns.get(name);
    if (!column) {
      column = this.times.map(() => null);
      this.columns.set(name, column);
      this.channels.push(name);
    }
    return column;
  }

  /** Insert one sample in time order. A sample at a time already held (the history and the live
   * feed overlap) fills in what it carries; a newer one replaces the newest while that is within
   * `minSpacingS` of the one before it. Returns whether anything changed. */
  add(sample: Sample): boolean {
    if (!Number.isFinite(sample.t)) return false;
    const last = this.times.length - 1;
    let index = this.indexOf(sample.t);
    // A newer sample replaces the newest one while that one is still within the spacing of the
    // one before it: the newest point follows the live feed, the others stay `minSpacingS` apart.
    if (index === -(last + 2) && last >= 1 && this.times[last]! - this.times[last - 1]! < this.minSpacingS) {
      this.times[last] = sample.t;
      index = last;
    }
    if (index < 0) {
      index = -index - 1;
      this.times.splice(index, 0, sample.t);
      for (const column of this.columns.values()) column.splice(index, 0, null);
    }
    for (const [name, value] of Object.entries(sample.values)) {
      this.channel(name)[index] = value ?? null;
    }
    this.trim();
    return true;
  }

  addAll(samples: Iterable<Sample>): void {
    for (const sample of samples) this.add(sample);
  }

  /** The position of `t` if held, else -(where it would go) - 1 (binary search). */
  private indexOf(t: number): number {
    let lo = 0;
    let hi = this.times.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const at = this.times[mid]!;
      if (at === t) return mid;
      if (at < t) lo = mid + 1;
      else hi = mid;
    }
    return -lo - 1;
  }

  private trim(): void {
    const newest = this.times[this.times.length - 1];
    if (newest === undefined) return;
    let drop = 0;
    while (drop < this.times.length && this.times[drop]! < newest - this.windowS) drop += 1;
    if (!drop) return;
    this.times.splice(0, drop);
    for (const column of this.columns.values()) column.splice(0, drop);
  }

  /** The columns for the chart (copies: uPlot keeps what it is given). */
  data(): Columns {
    return [this.times.slice(), ...this.channels.map((name) => this.columns.get(name)!.slice())];
  }

  /** The newest reading of a channel (the figure beside the chart's title). */
  latest(channel: string): number | null {
    const column = this.columns.get(channel);
    if (!column) return null;
    for (let i = column.length - 1; i >= 0; i -= 1) {
      if (column[i] !== null && column[i] !== undefined) return column[i]!;
    }
    return null;
  }
}

function seconds(iso: string): number {
  return Date.parse(iso) / 1000;
}

// --- what the charts are made of ---------------------------------------------------------------

export const TEMPERATURES: Array<{ key: keyof HealthReading; label: string }> = [
  { key: "coolantC", label: "Coolant" },
  { key: "brakeFrontC", label: "Brakes front" },
  { key: "brakeRearC", label: "Brakes rear" },
];

export function speedSample(position: Pick<PositionSummary, "at" | "speedKmh">): Sample {
  return { t: seconds(position.at), values: { speed: position.speedKmh ?? null } };
}

export function temperatureSample(reading: HealthReading): Sample {
  const values: Record<string, number | null> = {};
  for (const { key, label } of TEMPERATURES) values[label] = (reading[key] as number | null | undefined) ?? null;
  return { t: seconds(reading.at), values };
}

/** One column per tyre, named by its TirePosition ("1.1", "1.2", ...). */
export function tyreSample(reading: HealthReading): Sample {
  return { t: seconds(reading.at), values: { ...reading.tyresKpa } };
}

/** The three charts' buffers, filled from the REST history and then the live feed. */
export class MachineSeries {
  readonly speed = new SeriesBuffer(WINDOW_S, 0.5, ["speed"]);
  readonly temperatures = new SeriesBuffer(WINDOW_S, 0.5, TEMPERATURES.map((t) => t.label));
  readonly tyres = new SeriesBuffer(WINDOW_S, 0.5);

  constructor(readonly equipmentId: string) {}

  /** The history, merged with whatever the live feed has already added. */
  loadHistory(answer: SeriesAnswer): void {
    this.speed.addAll(answer.speed.map((point) => speedSample(point)));
    this.addHealth(answer.health);
  }

  /** This truck's items of a `positions` event; whether any was its. */
  applyPositions(trucks: PositionSummary[]): boolean {
    let mine = false;
    for (const position of trucks) {
      if (position.equipmentId !== this.equipmentId) continue;
      mine = this.speed.add(speedSample(position)) || mine;
    }
    return mine;
  }

  /** This truck's items of a `health` event; whether any was its. */
  applyHealth(trucks: Array<HealthReading & { equipmentId: string }>): boolean {
    const mine = trucks.filter((reading) => reading.equipmentId === this.equipmentId);
    this.addHealth(mine);
    return mine.length > 0;
  }

  private addHealth(readings: HealthReading[]): void {
    for (const reading of readings) {
      this.temperatures.add(temperatureSample(reading));
      this.tyres.add(tyreSample(reading));
    }
  }
}
