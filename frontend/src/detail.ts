// The machine detail: a drawer over the map's right edge for one truck, opened by clicking it
// on the map (or its name in the side panel), closed by its button or Escape. It shows live
// charts (speed, temperatures, tyre pressures: the REST history, then the live feed), the
// newest model outputs (the predicted trajectory is drawn on the map), the truck's commands
// with their acknowledgement and its alerts, and the controls: Stop, Resume, Reassign. Every
// control is checked by the server; a refusal is shown in the server's words.

import "uplot/dist/uPlot.min.css";
import "./detail.css";

import uPlot from "uplot";

import { ApiError, api } from "./api";
import { confirmDialog, fill, h, since } from "./dom";
import type { Fleet } from "./fleet";
import { stateKey, TRUCK_STATES } from "./legend";
import { CommandList, ModelOutputs, TRAJECTORY_SHOWN_S, commandStatus, commandTitle, etaText, faultView, percent, trajectoryPath } from "./machine";
import { MachineSeries, type SeriesBuffer, WINDOW_S } from "./series";
import type { Alert, Command, CommandChange, HealthReading, LiveMessage, LoadingUnitCollection, Me, PositionSummary, Prediction, SeriesAnswer } from "./types";

const CHART_WIDTH = 400;
const CHART_HEIGHT = 110;
const LIST_LENGTH = 8;
// The newest commands, above the charts: the answer to a Stop shows where it was pressed.
const COMMANDS_SHOWN = 4;
const TEMPERATURE_COLOURS = ["#4dd0e1", "#ff8a65", "#ffd54f"];
const TYRE_COLOURS = ["#8ab4f8", "#a5d6a7", "#ce93d8", "#ffcc80", "#80cbc4", "#ef9a9a", "#e6ee9c", "#b0bec5"];

/** What the detail needs of the page around it. */
export interface DetailHost {
  readonly siteId: string;
  readonly me: Me;
  readonly fleet: Fleet;
  readonly dialog: HTMLDialogElement;
  /** Draw (or clear, with an empty list) the predicted trajectory on the map. */
  showTrajectory(path: Array<[number, number]>): void;
  closed(): void;
}

/** A chart's time axis: the control room's local clock, one line. */
function clock(seconds: number): string {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

function message(error: unknown): string {
  return error instanceof ApiError ? error.message : `Could not reach the server: ${String(error)}`;
}

interface Chart {
  buffer: SeriesBuffer;
  plot: uPlot | null;
  /** Channels the plot was built with: a new tyre in the data rebuilds it. */
  channels: number;
  element: HTMLElement;
  colours: string[];
  unit: string;
  now: HTMLElement;
}

export class MachineDetail {
  readonly root: HTMLElement;
  readonly series: MachineSeries;
  readonly outputs: ModelOutputs;
  readonly commands: CommandList;
  private alerts: Alert[] = [];
  private units: Array<{ id: number; name: string; active: boolean }> = [];
  private assignment: string | null = null;
  private trajectoryFrom: [number, number] | null = null;
  /** When the newest trajectory reached the page (page clock, ms); null: none drawn. */
  private trajectoryAt: number | null = null;
  private notice: { text: string; kind: "ok" | "error" } | null = null;
  private readonly charts: Chart[];
  private chartsPending = false;
  private closedAlready = false;
  private readonly onKey = (event: KeyboardEvent) => {
    // Escape in the confirmation dialog closes the dialog only.
    if (event.key === "Escape" && !this.host.dialog.open) this.close();
  };
  private readonly sections = {
    head: h("div", { class: "detail-head" }),
    controls: h("div", { class: "detail-controls" }),
    outputs: h("div", { class: "detail-outputs", id: "detail-outputs" }),
    commands: h("div", { class: "detail-commands", id: "detail-commands" }),
    alerts: h("div", { class: "detail-alerts", id: "detail-alerts" }),
  };
  /** Live changes that ask for a list to be read again, at most once a second each. */
  private readonly reread = { commands: 0, alerts: 0 };

  constructor(
    container: HTMLElement,
    readonly truckId: string,
    private readonly host: DetailHost,
  ) {
    this.series = new MachineSeries(truckId);
    this.outputs = new ModelOutputs(truckId);
    this.commands = new CommandList(truckId);
    this.charts = [
      this.chart("Speed", this.series.speed, ["#8ab4f8"], "km/h"),
      this.chart("Temperatures", this.series.temperatures, TEMPERATURE_COLOURS, "°C"),
      this.chart("Tyre pressures", this.series.tyres, TYRE_COLOURS, "kPa"),
    ];
    this.root = h(
      "aside",
      { class: "detail-drawer", id: "machine-detail", "aria-label": "Machine detail", "data-truck": truckId },
      this.sections.head,
      this.sections.controls,
      this.sections.commands,
      h("section", { class: "detail-charts" }, h("h3", {}, "Last 10 minutes"), ...this.charts.map((c) => c.element)),
      this.sections.outputs,
      this.sections.alerts,
    );
    container.append(this.root);
    document.addEventListener("keydown", this.onKey);
  }

  private chart(title: string, buffer: SeriesBuffer, colours: string[], unit: string): Chart {
    const now = h("span", { class: "chart-now" });
    const element = h("div", { class: "chart", "data-chart": title }, h("div", { class: "chart-title" }, title, now));
    return { buffer, plot: null, channels: 0, element, colours, unit, now };
  }

  private get truckName(): string {
    return this.host.fleet.trucks.get(this.truckId)?.name ?? this.truckId.slice(0, 8);
  }

  async open(): Promise<void> {
    this.render();
    const from = new Date(Date.now() - WINDOW_S * 1000).toISOString();
    await Promise.all([
      this.read(`/api/v1/trucks/${this.truckId}/series/?from=${encodeURIComponent(from)}&step=2`, (answer: SeriesAnswer) => {
        this.series.loadHistory(answer);
        this.scheduleCharts();
      }),
      this.read(`/api/v1/trucks/${this.truckId}/predictions/`, (predictions: Prediction[]) => {
        for (const prediction of predictions) {
          // A stored trajectory is as old as its window (on the browser's clock: coarse).
          if (this.outputs.apply(prediction) && prediction.model === "trajectory") {
            this.trajectoryAt = performance.now() - Math.max(0, Date.now() - Date.parse(prediction.windowEnd));
          }
        }
        this.renderOutputs();
      }),
      this.loadCommands(),
      this.loadAlerts(),
      this.read(`/api/v1/loading-units/?site=${this.host.siteId}`, (units: LoadingUnitCollection) => {
        this.units = units.features.map((f) => ({ id: f.id, name: f.properties.name, active: f.properties.active })).sort((a, b) => a.name.localeCompare(b.name));
        this.renderControls();
      }),
      this.read(`/api/v1/dispatch/assignments/?truck=${this.truckId}&limit=1`, (rows: Array<{ loading_unit: string; manual: boolean }>) => {
        this.assignment = rows[0] ? `${rows[0].loading_unit}${rows[0].manual ? " (by hand)" : ""}` : null;
        this.renderHead();
      }),
    ]);
  }

  /** A read whose failure is shown in the panel and does not stop the others. */
  private async read<T>(path: string, use: (value: T) => void): Promise<void> {
    try {
      use(await api<T>(path));
    } catch (error) {
      if (this.closedAlready) return;
      this.notice = { text: message(error), kind: "error" };
      this.renderControls();
    }
  }

  private async loadCommands(): Promise<void> {
    this.reread.commands = Date.now();
    await this.read(`/api/v1/commands/?equipment=${this.truckId}&limit=${LIST_LENGTH}`, (commands: Command[]) => {
      this.commands.load(commands);
      this.renderCommands();
    });
  }

  private async loadAlerts(): Promise<void> {
    this.reread.alerts = Date.now();
    await this.read(`/api/v1/alerts/?equipment=${this.truckId}&limit=${LIST_LENGTH}`, (page: { results: Alert[] }) => {
      this.alerts = page.results;
      this.renderAlerts();
    });
  }

  /** Read a list again soon: a burst of changes costs one read a second. */
  private rereadSoon(which: "commands" | "alerts"): void {
    const wait = Math.max(0, this.reread[which] + 1_000 - Date.now());
    this.reread[which] = Date.now() + wait;
    window.setTimeout(() => void (which === "commands" ? this.loadCommands() : this.loadAlerts()), wait);
  }

  /** Every live event passes here while the detail is open; this truck's are taken. */
  onMessage(message: LiveMessage): void {
    if (this.closedAlready) return;
    const data = message.data as Record<string, unknown>;
    switch (message.event) {
      case "positions":
        if (this.series.applyPositions((data["trucks"] ?? []) as PositionSummary[])) this.scheduleCharts();
        break;
      case "health":
        if (this.series.applyHealth((data["trucks"] ?? []) as Array<HealthReading & { equipmentId: string }>)) this.scheduleCharts();
        break;
      case "prediction":
        if (this.outputs.apply(data as unknown as Prediction)) {
          if ((data as unknown as Prediction).model === "trajectory") this.anchorTrajectory();
          this.renderOutputs();
        }
        break;
      case "command.changed": {
        const change = data as unknown as CommandChange;
        if (change.equipmentId !== this.truckId) break;
        if (this.commands.applyChange(change)) this.renderCommands();
        else this.rereadSoon("commands");
        break;
      }
      case "commands.answered":
        if (((data["equipmentIds"] ?? []) as string[]).includes(this.truckId)) this.rereadSoon("commands");
        break;
      case "alert":
        if (data["equipmentId"] === this.truckId) this.rereadSoon("alerts");
        break;
      case "dispatch.assigned":
        if (data["equipmentId"] === this.truckId) {
          this.assignment = `${String(data["loadingUnit"])}${data["manual"] ? " (by hand)" : ""}`;
          this.renderHead();
        }
        break;
    }
  }

  /** Once a second: the header's live figures (state, speed, age). */
  tick(): void {
    if (this.closedAlready) return;
    this.renderHead();
    if (this.trajectoryAt !== null && performance.now() - this.trajectoryAt > TRAJECTORY_SHOWN_S * 1000) {
      this.trajectoryAt = null;
      this.host.showTrajectory([]);
      this.renderOutputs();
    }
  }

  close(): void {
    if (this.closedAlready) return;
    this.closedAlready = true;
    document.removeEventListener("keydown", this.onKey);
    for (const chart of this.charts) chart.plot?.destroy();
    this.root.remove();
    this.host.showTrajectory([]);
    this.host.closed();
  }

  // --- rendering -----------------------------------------------------------------------------

  render(): void {
    this.renderHead();
    this.renderControls();
    this.renderOutputs();
    this.renderCommands();
    this.renderAlerts();
    this.scheduleCharts();
  }

  private renderHead(): void {
    const truck = this.host.fleet.trucks.get(this.truckId);
    const key = truck ? stateKey(truck.state, truck.autonomyMode, truck.allStopped) : "Unknown";
    const state = TRUCK_STATES.find((s) => s.key === key);
    fill(this.sections.head,
      h("h2", { id: "detail-name" }, this.truckName),
      h("span", { class: "detail-state", style: `--colour: ${state?.colour ?? "#9e9e9e"}` }, state?.label ?? truck?.state ?? "?"),
      h("button", { type: "button", class: "detail-close", "aria-label": "Close the machine detail", title: "Close (Esc)", onclick: () => this.close() }, "×"),
      h(
        "p",
        { class: "detail-facts" },
        truck?.speedKmh === null || truck?.speedKmh === undefined ? "speed not reported" : `${Math.round(truck.speedKmh)} km/h`,
        truck?.payloadT ? ` · ${truck.payloadT} t` : "",
        this.assignment ? ` · assigned to ${this.assignment}` : "",
      ),
    );
  }

  private renderControls(): void {
    const select = h(
      "select",
      { id: "detail-unit", "aria-label": "Loading unit" },
      ...this.units.map((unit) => h("option", { value: String(unit.id), disabled: !unit.active }, `${unit.name}${unit.active ? "" : " (down)"}`)),
    );
    const stopHint = this.host.me.can.stopTruck ? null : h("p", { class: "hint" }, "Stopping and resuming a machine needs the operator role; the server will refuse it.");
    fill(this.sections.controls,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "danger", id: "detail-stop", onclick: () => void this.command("stop") }, "Stop"),
        h("button", { type: "button", class: "secondary", id: "detail-resume", onclick: () => void this.command("resume") }, "Resume"),
      ),
      h(
        "div",
        { class: "actions reassign" },
        select,
        h("button", { type: "button", class: "secondary", id: "detail-reassign", disabled: !this.units.length, onclick: () => void this.reassign(select) }, "Reassign"),
      ),
      stopHint,
      this.notice ? h("p", { class: `notice ${this.notice.kind}`, id: "detail-notice", role: this.notice.kind === "error" ? "alert" : "status" }, this.notice.text) : null,
    );
  }

  private async command(action: "stop" | "resume"): Promise<void> {
    const stop = action === "stop";
    const reason = await confirmDialog(this.host.dialog, {
      title: stop ? `Stop ${this.truckName}?` : `Resume ${this.truckName}?`,
      body: stop
        ? "The machine is told to stop now, and stays stopped until someone resumes it."
        : "The machine's stop is removed and it resumes its work.",
      confirmLabel: stop ? "Stop the machine" : "Resume the machine",
      danger: stop,
      input: { label: "Reason (kept in the audit trail)", required: true },
    });
    if (reason === null || this.closedAlready) return;
    try {
      const command = await api<Command>(`/api/v1/trucks/${this.truckId}/${action}/`, { method: "POST", body: { reason } });
      this.commands.upsert(command);
      this.notice = { text: `${stop ? "Stop" : "Resume"} sent to ${this.truckName}; its acknowledgement shows under Commands.`, kind: "ok" };
      this.renderCommands();
    } catch (error) {
      this.notice = { text: message(error), kind: "error" };
    }
    this.renderControls();
  }

  private async reassign(select: HTMLSelectElement): Promise<void> {
    const unit = this.units.find((u) => String(u.id) === select.value);
    if (!unit) return;
    const reason = await confirmDialog(this.host.dialog, {
      title: `Send ${this.truckName} to ${unit.name}?`,
      body: "The truck holds this assignment until its next dump; the dispatcher then takes it back.",
      confirmLabel: "Reassign",
      input: { label: "Reason (kept in the audit trail)", required: true },
    });
    if (reason === null || this.closedAlready) return;
    try {
      const answer = await api<{ loading_unit: string }>(`/api/v1/trucks/${this.truckId}/assignment/`, {
        method: "POST",
        body: { loading_unit: unit.id, reason },
      });
      this.assignment = `${answer.loading_unit} (by hand)`;
      this.notice = { text: `${this.truckName} sent to ${answer.loading_unit}.`, kind: "ok" };
      this.renderHead();
      void this.loadCommands();
    } catch (error) {
      this.notice = { text: message(error), kind: "error" };
    }
    this.renderControls();
  }

  private renderOutputs(): void {
    const fault = this.outputs.byHead.get("fault");
    const eta = this.outputs.byHead.get("eta");
    const trajectory = this.outputs.byHead.get("trajectory");
    const view = fault ? faultView(fault.outputs) : null;
    const etaWords = eta ? etaText(eta.outputs) : null;
    const stamp = (p: Prediction) => h("span", { class: "muted stamp" }, ` ${p.modelId}, ${since(p.windowEnd)}`);
    fill(this.sections.outputs,
      h("h3", {}, "Model outputs"),
      view
        ? h(
            "div",
            { class: "fault", id: "detail-fault" },
            h("div", { class: "output-title" }, "Fault probabilities", stamp(fault!)),
            h(
              "ul",
              { class: "bars" },
              ...view.classes.map((c) =>
                h("li", { class: c.name === "normal" ? "normal" : "" }, h("span", { class: "bar-name" }, c.name), h("span", { class: "bar", style: `--p: ${c.probability}` }), h("span", { class: "bar-value" }, percent(c.probability))),
              ),
            ),
            view.channel ? h("p", { class: "meta" }, `Contributing channel: ${view.channel}${view.anomalous ? " · anomalous" : ""}`) : null,
          )
        : h("p", { class: "empty" }, "No fault prediction yet."),
      etaWords ? h("p", { id: "detail-eta" }, h("span", { class: "output-title" }, "ETA to next stop: "), etaWords, stamp(eta!)) : h("p", { class: "empty" }, "No ETA yet."),
      trajectory
        ? h(
            "p",
            { class: "meta", id: "detail-trajectory" },
            this.trajectoryAt === null ? `Predicted trajectory older than ${TRAJECTORY_SHOWN_S} s: not drawn.` : "Predicted trajectory (1, 3 and 5 s ahead) drawn on the map.",
            stamp(trajectory),
          )
        : null,
    );
    this.drawTrajectory();
  }

  /** Where the truck was when its newest trajectory arrived: the line starts there, close to
   * the prediction's own origin (its window's last fix), and does not stretch as the truck
   * drives on before the next prediction. */
  private anchorTrajectory(): void {
    this.trajectoryAt = performance.now();
    const truck = this.host.fleet.trucks.get(this.truckId);
    this.trajectoryFrom = truck && truck.lon !== null && truck.lat !== null ? [truck.lon, truck.lat] : null;
  }

  private drawTrajectory(): void {
    const trajectory = this.outputs.byHead.get("trajectory");
    if (trajectory && this.trajectoryAt !== null) this.host.showTrajectory(trajectoryPath(trajectory.outputs, this.trajectoryFrom));
  }

  private renderCommands(): void {
    const commands = this.commands.list().slice(0, COMMANDS_SHOWN);
    fill(this.sections.commands,
      h("h3", {}, "Commands"),
      commands.length
        ? h(
            "ol",
            { class: "command-list" },
            ...commands.map((c) =>
              h(
                "li",
                { class: `command ${c.status}`, "data-command-id": c.command_id, "data-status": c.status },
                h("strong", {}, commandTitle(c)),
                h("span", { class: "command-status" }, commandStatus(c)),
                h("div", { class: "meta" }, `${since(c.issued_at)}${c.issued_by ? ` by ${c.issued_by}` : ""}${c.reason ? ` · ${c.reason}` : ""}`),
              ),
            ),
          )
        : h("p", { class: "empty" }, "No commands sent to this machine."),
    );
  }

  private renderAlerts(): void {
    fill(this.sections.alerts,
      h("h3", {}, "Alerts"),
      this.alerts.length
        ? h(
            "ol",
            { class: "alert-list" },
            ...this.alerts.map((a) =>
              h(
                "li",
                { class: `alert ${a.severity} ${a.status}` },
                h("div", { class: "alert-head" }, h("span", { class: `severity ${a.severity}` }, a.severity), h("span", { class: "kind" }, a.kind), a.count > 1 ? h("span", { class: "repeat" }, `×${a.count}`) : null),
                h("p", { class: "reason" }, a.reason),
                h("p", { class: "meta" }, `${a.status} · ${since(a.last_seen_at)}`),
              ),
            ),
          )
        : h("p", { class: "empty" }, "No alerts for this machine."),
    );
  }

  // --- charts --------------------------------------------------------------------------------

  /** However many samples arrive between two paints, each chart is redrawn once. */
  private scheduleCharts(): void {
    if (this.chartsPending || this.closedAlready) return;
    this.chartsPending = true;
    requestAnimationFrame(() => {
      this.chartsPending = false;
      if (!this.closedAlready) for (const chart of this.charts) this.drawChart(chart);
    });
  }

  private drawChart(chart: Chart): void {
    const data = chart.buffer.data();
    const channels = chart.buffer.channels;
    const latest = channels.map((name) => chart.buffer.latest(name)).filter((v): v is number => v !== null);
    chart.now.textContent = latest.length ? ` ${latest.map((v) => Math.round(v)).join(" / ")} ${chart.unit}` : " no data yet";
    if (chart.plot && chart.channels === channels.length) {
      chart.plot.setData(data);
      return;
    }
    chart.plot?.destroy();
    chart.channels = channels.length;
    chart.plot = new uPlot(
      {
        width: CHART_WIDTH,
        height: CHART_HEIGHT,
        cursor: { drag: { x: false, y: false } },
        legend: { show: channels.length > 1, live: false },
        scales: { x: { time: true } },
        axes: [
          { stroke: "#9aa5b1", grid: { stroke: "#2f363d" }, ticks: { stroke: "#2f363d" }, space: 80, values: (_, splits) => splits.map(clock) },
          { stroke: "#9aa5b1", grid: { stroke: "#2f363d" }, ticks: { stroke: "#2f363d" }, size: 44 },
        ],
        series: [
          {},
          ...channels.map((name, i) => ({
            label: chart.unit === "kPa" ? `tyre ${name}` : name,
            stroke: chart.colours[i % chart.colours.length],
            width: 1.5,
            spanGaps: true,
            points: { show: false },
          })),
        ],
      },
      data,
      chart.element,
    );
  }

  /** How many points each chart holds (the browser tests watch them grow). */
  counts(): number[] {
    return this.charts.map((chart) => chart.buffer.length);
  }
}
