// Replay: a stretch of the site's history played back on a map of its own (a second LiveMap)
// at 1x to 20x, with a time slider to scrub, and the alerts and commands of that time listed as
// the clock passes them. Up to an hour plays as recorded, longer ranges from the minute
// roll-ups; the range is fetched in the chunks the server accepts (replaydata.ts), the next
// one prefetched while the current one plays.

import { ApiError, api } from "../api";
import { fill, h } from "../dom";
import { type Truck, newTruck } from "../fleet";
import { LiveMap } from "../map";
import type { View } from "./router";
import { type Chunk, type ReplayAnswer, ReplayClock, type ReplayEvent, ReplayTrack, SPEEDS, chunkIndexAt, planChunks, resolutionFor } from "./replaydata";

const DURATIONS_MIN = [5, 15, 30, 60, 180, 360, 720, 1440];
/** The map's page clock is advanced this often (the live map's staleness; nothing fades here). */
const MAP_TICK_MS = 1_000;

function durationLabel(minutes: number): string {
  return minutes < 60 ? `${minutes} min` : `${minutes / 60} h`;
}

/** "2026-12-05T06:00:00" in the browser's local time, as a datetime-local input wants it. */
export function localInputValue(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

export class ReplayView implements View {
  map: LiveMap | null = null;
  clock: ReplayClock | null = null;
  track: ReplayTrack | null = null;
  private chunks: Chunk[] = [];
  private readonly inFlight = new Map<number, Promise<void>>();
  private frame = 0;
  private lastFrameAt = 0;
  private lastTickAt = 0;
  private shownIds = new Set<string>();
  private shownEvents = "";
  private siteLoaded = false;
  private generation = 0;

  private readonly start = h("input", { type: "datetime-local", step: 1, id: "replay-start", required: true });
  private readonly duration = h("select", { id: "replay-duration" }, ...DURATIONS_MIN.map((m) => h("option", { value: m, selected: m === 15 }, durationLabel(m))));
  private readonly resolutionNote = h("span", { class: "muted", id: "replay-resolution" });
  private readonly playButton = h("button", { type: "button", class: "primary", id: "replay-play", disabled: true }, "Play");
  private readonly speeds = h("div", { class: "range-picker speeds", role: "group", "aria-label": "Speed" });
  private readonly slider = h("input", { type: "range", id: "replay-slider", min: 0, max: 1, step: 100, value: 0, disabled: true });
  private readonly clockText = h("span", { class: "replay-clock", id: "replay-clock" }, "–");
  private readonly status = h("span", { class: "muted view-status", id: "replay-status" }, "Choose a start and a duration, then Load.");
  private readonly events = h("div", { class: "replay-events", id: "replay-events" });
  private readonly mapBox = h("section", { class: "map replay-map", id: "replay-map", "aria-label": "Replay map" });

  constructor(
    root: HTMLElement,
    private readonly siteId: string,
  ) {
    const form = h(
      "form",
      { class: "replay-form", onsubmit: (event: Event) => { event.preventDefault(); void this.load(); } },
      h("label", {}, "Start ", this.start),
      h("label", {}, "Duration ", this.duration),
      h("button", { type: "submit", class: "primary", id: "replay-load" }, "Load"),
      this.resolutionNote,
    );
    fill(root,
      h("div", { class: "view-head" }, h("h2", {}, "Replay"), form, this.status),
      h("div", { class: "replay-controls" }, this.playButton, this.speeds, this.slider, this.clockText),
      h("div", { class: "replay-body" }, this.mapBox, h("aside", { class: "side replay-side" }, h("section", { class: "panel" }, h("h2", {}, "Alerts and commands"), this.events))),
    );
    this.start.value = localInputValue(new Date(Date.now() - 15 * 60_000));
    this.duration.addEventListener("change", () => this.noteResolution());
    this.playButton.addEventListener("click", () => this.togglePlay());
    this.slider.addEventListener("input", () => this.seek(Number(this.slider.value)));
    this.renderSpeeds();
    this.noteResolution();
    this.renderEvents([]);
    this.readHash();
  }

  show(): void {
    if (!this.map) {
      this.map = new LiveMap(this.mapBox);
      this.draw(); // a range loaded from the link before the map existed
    }
    if (!this.siteLoaded) {
      this.siteLoaded = true;
      void api(`/api/v1/sites/${this.siteId}/map/`).then((collection) => this.map!.showSite(collection as Parameters<LiveMap["showSite"]>[0], true));
    }
    this.loop();
  }

  hide(): void {
    this.clock?.pause();
    this.renderPlay();
    cancelAnimationFrame(this.frame);
  }

  private durationMs(): number {
    return Number(this.duration.value) * 60_000;
  }

  private noteResolution(): void {
    this.resolutionNote.textContent = resolutionFor(this.durationMs()) === "recorded" ? "as recorded" : "from the minute roll-ups";
  }

  /** A link to a replay (#replay?from=...&minutes=...) fills the form and loads it. */
  private readHash(): void {
    const query = new URLSearchParams(window.location.hash.split("?")[1] ?? "");
    const from = query.get("from");
    const minutes = query.get("minutes");
    if (!from || Number.isNaN(Date.parse(from))) return;
    this.start.value = localInputValue(new Date(from));
    if (minutes && DURATIONS_MIN.includes(Number(minutes))) this.duration.value = minutes;
    this.noteResolution();
    void this.load();
  }

  private renderSpeeds(): void {
    const current = this.clock?.speed ?? 1;
    fill(this.speeds,
      ...SPEEDS.map((speed) =>
        h("button", {
          type: "button",
          class: speed === current ? "primary" : "secondary",
          "data-speed": speed,
          "aria-pressed": String(speed === current),
          onclick: () => {
            if (this.clock) this.clock.speed = speed;
            this.renderSpeeds();
          },
        }, `${speed}x`),
      ),
    );
  }

  private renderPlay(): void {
    this.playButton.textContent = this.clock?.playing ? "Pause" : "Play";
  }

  async load(): Promise<void> {
    const from = new Date(this.start.value).getTime();
    if (Number.isNaN(from)) {
      this.status.textContent = "The start is not a time.";
      return;
    }
    const to = from + this.durationMs();
    const resolution = resolutionFor(to - from);
    const speed = this.clock?.speed ?? 1;
    this.generation += 1;
    this.clock = new ReplayClock(from, to);
    this.clock.speed = speed;
    this.track = new ReplayTrack(resolution);
    this.chunks = planChunks(from, to, resolution);
    this.inFlight.clear();
    this.shownEvents = "";
    this.map?.removeAllTrucks();
    this.shownIds.clear();
    history.replaceState(null, "", `#replay?from=${new Date(from).toISOString()}&minutes=${this.duration.value}`);
    this.slider.max = String(to - from);
    this.slider.step = String(resolution === "recorded" ? 100 : 1000);
    this.slider.value = "0";
    this.status.textContent = `${this.chunks.length} chunk${this.chunks.length > 1 ? "s" : ""} ${resolution === "recorded" ? "as recorded" : "of minute roll-ups"}; loading…`;
    await this.ensure(from);
    this.slider.disabled = false;
    this.playButton.disabled = false;
    this.draw();
  }

  /** The chunk holding t, and the one after it (prefetched while this one plays). */
  private ensure(t: number): Promise<void> {
    const index = chunkIndexAt(this.chunks, t);
    if (index < 0) return Promise.resolve();
    const next = this.chunks[index + 1];
    if (next) void this.fetchChunk(next);
    this.track?.keepAround(this.chunks, index);
    return this.fetchChunk(this.chunks[index]!);
  }

  private fetchChunk(chunk: Chunk): Promise<void> {
    const track = this.track!;
    if (track.has(chunk.from)) return Promise.resolve();
    const pending = this.inFlight.get(chunk.from);
    if (pending) return pending;
    const generation = this.generation;
    const query = new URLSearchParams({ from: new Date(chunk.from).toISOString(), to: new Date(chunk.to).toISOString(), resolution: track.resolution });
    const request = api<ReplayAnswer>(`/api/v1/sites/${this.siteId}/replay/?${query}`)
      .then((answer) => {
        if (generation !== this.generation) return; // a range loaded since
        track.add(chunk.from, answer);
        const loaded = this.chunks.filter((c) => track.has(c.from)).length;
        this.status.textContent = `${loaded} of ${this.chunks.length} chunk${this.chunks.length > 1 ? "s" : ""} loaded · ${track.truckCount()} trucks · ${track.events.length} alerts and commands so far`;
        this.status.classList.remove("error");
      })
      .catch((error: unknown) => {
        this.status.textContent = error instanceof ApiError ? error.message : `Could not reach the server: ${String(error)}`;
        this.status.classList.add("error");
      })
      .finally(() => this.inFlight.delete(chunk.from));
    this.inFlight.set(chunk.from, request);
    return request;
  }

  private togglePlay(): void {
    if (!this.clock) return;
    if (this.clock.playing) this.clock.pause();
    else this.clock.play();
    this.lastFrameAt = performance.now();
    this.renderPlay();
  }

  private seek(offsetMs: number): void {
    if (!this.clock) return;
    this.clock.seek(this.clock.from + offsetMs);
    void this.ensure(this.clock.t).then(() => this.draw());
    this.draw();
  }

  /** One animation frame: advance the clock (unless the chunk it needs is still loading). */
  private loop(): void {
    cancelAnimationFrame(this.frame);
    const step = (now: number) => {
      const clock = this.clock;
      if (clock?.playing) {
        const index = chunkIndexAt(this.chunks, clock.t);
        const ready = index >= 0 && this.track!.has(this.chunks[index]!.from);
        if (ready && clock.advance(now - this.lastFrameAt)) {
          this.slider.value = String(clock.t - clock.from);
          this.draw();
        }
        void this.ensure(clock.t);
        if (!clock.playing) this.renderPlay(); // reached the end
      }
      this.lastFrameAt = now;
      if (now - this.lastTickAt > MAP_TICK_MS) {
        this.lastTickAt = now;
        this.map?.tick(now);
      }
      this.frame = requestAnimationFrame(step);
    };
    this.lastFrameAt = performance.now();
    this.frame = requestAnimationFrame(step);
  }

  /** The trucks where they were at the clock's time, and the events that happened by then. */
  private draw(): void {
    const clock = this.clock;
    const track = this.track;
    if (!clock || !track || !this.map) return;
    this.clockText.textContent = new Date(clock.t).toLocaleString();
    const seen = performance.now();
    const trucks: Truck[] = track.at(clock.t).map((at) => ({
      ...newTruck(at.id, at.name),
      lon: at.lon,
      lat: at.lat,
      heading: Math.round(at.heading),
      speedKmh: at.speedKmh,
      state: at.state,
      at: clock.t,
      seenAt: seen,
    }));
    const ids = new Set(trucks.map((t) => t.id));
    // Scrubbed back before some truck's first sample: it leaves the map.
    if ([...this.shownIds].some((id) => !ids.has(id))) this.map.removeAllTrucks();
    this.shownIds = ids;
    this.map.updateTrucks(trucks);
    const events = track.eventsUntil(clock.t);
    const key = `${events.length}:${events[0]?.key ?? ""}`;
    if (key !== this.shownEvents) {
      this.shownEvents = key;
      this.renderEvents(events);
    }
  }

  private renderEvents(events: ReplayEvent[]): void {
    fill(this.events,
      events.length
        ? h(
            "ol",
            { class: "alert-list" },
            ...events.map((event) =>
              h(
                "li",
                { class: `alert ${event.kind === "alert" ? event.severity : "info"} replay-event`, "data-kind": event.kind },
                h("div", { class: "alert-head" }, h("span", { class: `severity ${event.kind === "alert" ? event.severity : "info"}` }, event.kind === "alert" ? event.severity : "command"), h("strong", {}, event.equipment), h("span", { class: "kind" }, event.title)),
                event.detail ? h("p", { class: "reason" }, event.detail) : null,
                h("p", { class: "meta" }, new Date(event.at).toLocaleTimeString()),
              ),
            ),
          )
        : h("p", { class: "empty" }, this.clock ? "Nothing yet at this time." : "Load a range to replay it."),
    );
  }

  /** Where a truck is drawn on the replay map (tests). */
  pixelOf(name: string): number[] | null {
    const id = this.track?.at(this.clock?.t ?? 0).find((t) => t.name === name)?.id;
    return id && this.map ? this.map.pixelOf(id) : null;
  }
}
