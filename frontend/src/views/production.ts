// The production view: what the site produced over a shift, the last hour or the last 12 h,
// from its haul cycles (GET /api/v1/sites/<id>/production/) and its machines' status history
// (GET /api/v1/sites/<id>/availability/?bucket=): tonnes per hour and fleet availability as
// plots, the mean cycle split into its phases, each loading unit's queue.

import { ApiError, api } from "../api";
import { fill, h } from "../dom";
import { Plot } from "./plot";
import type { View } from "./router";
import {
  type Availability,
  type Production,
  RANGE_LABELS,
  type RangeChoice,
  availabilityColumns,
  cycleBreakdown,
  formatDuration,
  rangeFor,
  rangeQuery,
  tphColumns,
} from "./series";

// The figures move as cycles end (one every few minutes per truck): a minute is fresh enough.
const REFRESH_MS = 60_000;

function percent(value: number | null | undefined): string {
  return value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)} %`;
}

export class ProductionView implements View {
  private choice: RangeChoice = "shift";
  private timer: number | undefined;
  private loads = 0;
  private readonly picker = h("div", { class: "range-picker", role: "group", "aria-label": "Time range" });
  private readonly status = h("span", { class: "muted view-status" });
  private readonly kpis = h("div", { class: "kpis", id: "production-kpis" });
  private readonly breakdown = h("div", { class: "breakdown", id: "cycle-breakdown" });
  private readonly units = h("div", { class: "units", id: "loading-units" });
  private readonly tph: Plot;
  private readonly availability: Plot;

  constructor(
    root: HTMLElement,
    private readonly siteId: string,
  ) {
    const tphBox = h("div", { id: "plot-tph" });
    const availabilityBox = h("div", { id: "plot-availability" });
    fill(root,
      h("div", { class: "view-head" }, h("h2", {}, "Production"), this.picker, this.status),
      this.kpis,
      h(
        "div",
        { class: "view-grid" },
        h("section", { class: "card" }, tphBox),
        h("section", { class: "card" }, availabilityBox),
        h("section", { class: "card" }, h("h3", {}, "Cycle time, mean per cycle"), this.breakdown),
        h("section", { class: "card" }, h("h3", {}, "Loading units"), this.units),
      ),
    );
    this.tph = new Plot(tphBox, { title: "Tonnes per hour", unit: "t/h", bars: true });
    this.availability = new Plot(availabilityBox, { title: "Fleet availability and utilisation", unit: "%", yRange: [0, 100] });
    this.renderPicker();
  }

  show(): void {
    void this.load();
    this.timer = window.setInterval(() => void this.load(), REFRESH_MS);
  }

  hide(): void {
    window.clearInterval(this.timer);
  }

  private renderPicker(): void {
    fill(this.picker,
      ...(Object.keys(RANGE_LABELS) as RangeChoice[]).map((choice) =>
        h(
          "button",
          {
            type: "button",
            class: choice === this.choice ? "primary" : "secondary",
            "data-range": choice,
            "aria-pressed": String(choice === this.choice),
            onclick: () => {
              this.choice = choice;
              this.renderPicker();
              void this.load();
            },
          },
          RANGE_LABELS[choice],
        ),
      ),
    );
  }

  async load(): Promise<void> {
    const choice = this.choice;
    const range = rangeFor(choice, new Date());
    const site = `/api/v1/sites/${this.siteId}`;
    // A range picked while an earlier one loads: the earlier answer, arriving last, must not
    // replace the newer one on screen.
    const ticket = ++this.loads;
    this.status.textContent = "loading…";
    try {
      const [production, availability] = await Promise.all([
        api<Production>(`${site}/production/?${rangeQuery(range)}`),
        api<Availability>(`${site}/availability/?${rangeQuery(range)}`),
      ]);
      if (ticket !== this.loads) return;
      this.render(production, availability, [range.from.getTime() / 1000, range.to.getTime() / 1000]);
      this.status.textContent = `${range.from.toLocaleString()} to ${range.to.toLocaleTimeString()} · ${range.bucketS / 60} min buckets`;
      this.status.dataset.range = choice;
      this.status.classList.remove("error");
    } catch (error) {
      if (ticket !== this.loads) return;
      this.status.textContent = error instanceof ApiError ? error.message : `Could not reach the server: ${String(error)}`;
      this.status.classList.add("error");
    }
  }

  private render(production: Production, availability: Availability, span: [number, number]): void {
    const kpi = (label: string, value: string, id: string) => h("div", { class: "kpi", id }, h("span", { class: "kpi-value" }, value), h("span", { class: "kpi-label" }, label));
    fill(this.kpis,
      kpi("tonnes", production.tonnes.toLocaleString(), "kpi-tonnes"),
      kpi("t/h", production.tph === null ? "–" : production.tph.toLocaleString(), "kpi-tph"),
      kpi("cycles", String(production.cycles), "kpi-cycles"),
      kpi("availability", percent(availability.fleet.availability), "kpi-availability"),
      kpi("utilisation", percent(availability.fleet.utilisation), "kpi-utilisation"),
    );
    this.tph.set([{ label: "t/h", colour: "#66bb6a", digits: 0 }], tphColumns(production), span);
    this.availability.set(
      [
        { label: "availability", colour: "#8ab4f8" },
        { label: "utilisation", colour: "#f9a825" },
      ],
      availabilityColumns(availability),
      span,
    );
    this.renderBreakdown(production);
    this.renderUnits(production);
  }

  private renderBreakdown(production: Production): void {
    const { totalS, phases } = cycleBreakdown(production.cycle_time_s);
    if (!production.cycles) {
      fill(this.breakdown, h("p", { class: "empty" }, "No cycle ended in this range."));
      return;
    }
    fill(this.breakdown,
      h(
        "div",
        { class: "stacked-bar", role: "img", "aria-label": phases.map((p) => `${p.label} ${formatDuration(p.seconds)}`).join(", ") },
        ...phases.filter((p) => p.share > 0).map((p) => h("span", { style: `flex-grow: ${p.share}; background: ${p.colour}`, title: `${p.label}: ${formatDuration(p.seconds)}` }, p.share > 0.07 ? p.label : "")),
      ),
      h(
        "table",
        { class: "figures" },
        h("tbody", {},
          ...phases.map((p) =>
            h("tr", { "data-phase": p.key },
              h("td", {}, h("span", { class: "swatch", style: `background: ${p.colour}` }), p.label),
              h("td", { class: "num" }, formatDuration(p.seconds)),
              h("td", { class: "num muted" }, `${(p.share * 100).toFixed(0)} %`),
            ),
          ),
          h("tr", { class: "total" }, h("td", {}, "Whole cycle"), h("td", { class: "num" }, formatDuration(totalS)), h("td", {})),
        ),
      ),
    );
  }

  private renderUnits(production: Production): void {
    const units = production.loading_units;
    if (!units.length) {
      fill(this.units, h("p", { class: "empty" }, "No cycle with a known loading unit in this range."));
      return;
    }
    const longest = Math.max(1, ...units.map((u) => u.queue_s ?? 0));
    fill(this.units,
      h(
        "table",
        { class: "figures" },
        h("thead", {}, h("tr", {}, h("th", {}, "Unit"), h("th", { class: "num" }, "cycles"), h("th", { class: "num" }, "t"), h("th", { class: "num" }, "t/h"), h("th", {}, "mean queue"), h("th", { class: "num" }, "mean load"))),
        h("tbody", {},
          ...units.map((u) =>
            h("tr", { "data-unit": u.name },
              h("td", {}, u.name),
              h("td", { class: "num" }, String(u.cycles)),
              h("td", { class: "num" }, u.tonnes.toLocaleString()),
              h("td", { class: "num" }, u.tph === null ? "–" : u.tph.toLocaleString()),
              h("td", { class: "queue" }, h("span", { class: "queue-bar", style: `width: ${((u.queue_s ?? 0) / longest) * 100}%` }), h("span", { class: "queue-text" }, formatDuration(u.queue_s))),
              h("td", { class: "num" }, formatDuration(u.load_s)),
            ),
          ),
        ),
      ),
    );
  }

  /** Points in each plot (tests). */
  plotted(): { tph: number; availability: number } {
    return { tph: this.tph.points(), availability: this.availability.points() };
  }
}
