// What `manage.py bench dashboard` measures in the page (fleet/live/dashboard_bench.py): the
// main-thread time of each map render with the frames handled and the truck updates applied
// before it, and the age of each drawn position. Off until started, so an operator's page keeps nothing.

/** At most this many samples are kept between two `take()`s (a bench reads every few seconds:
 * 1,000 trucks at 5 Hz make 5,000 positions a second). */
export const MAX_SAMPLES = 200_000;

export interface ProbeSamples {
  /** Per map render: ms handling the frames and applying the updates since the previous
   * render, plus the render. */
  drawMs: number[];
  /** Per truck update: ms from the truck's own timestamp to the render that followed it. */
  lagMs: number[];
  /** Animation frames of 50 ms or more (Long Animation Frames API), their durations. */
  longFramesMs: number[];
}

export class DrawProbe {
  private recording = false;
  private updateMs = 0;
  /** Truck timestamps (ms since the epoch) applied to the map and not yet rendered. */
  private waiting: number[] = [];
  private samples: ProbeSamples = { drawMs: [], lagMs: [], longFramesMs: [] };

  start(): void {
    this.take();
    this.recording = true;
  }

  stop(): void {
    this.recording = false;
  }

  /** A websocket frame took `ms` to parse and handle (its events merged into the fleet). */
  handled(ms: number): void {
    if (this.recording) this.updateMs += ms;
  }

  /** The map took `truckTimes` (each truck's own timestamp) in `ms` of script. */
  updated(ms: number, truckTimes: number[]): void {
    if (!this.recording) return;
    this.updateMs += ms;
    if (this.waiting.length + truckTimes.length <= MAX_SAMPLES) this.waiting.push(...truckTimes);
  }

  /** The map rendered in `ms`, at `wallNow` (ms since the epoch, the trucks' clock). */
  rendered(ms: number, wallNow: number): void {
    if (!this.recording) return;
    push(this.samples.drawMs, this.updateMs + ms);
    for (const at of this.waiting) push(this.samples.lagMs, wallNow - at);
    this.updateMs = 0;
    this.waiting = [];
  }

  longFrame(ms: number): void {
    if (this.recording) push(this.samples.longFramesMs, ms);
  }

  /** The samples so far; the probe starts over (still recording if it was). */
  take(): ProbeSamples {
    const taken = this.samples;
    this.samples = { drawMs: [], lagMs: [], longFramesMs: [] };
    this.updateMs = 0;
    this.waiting = [];
    return taken;
  }
}

function push(samples: number[], value: number): void {
  if (samples.length < MAX_SAMPLES) samples.push(value);
}
