// The inference pool: its nodes with their devices and slices, which model runs where, each
// slice's utilisation and each model's latency and batch size over time (sampled every minute
// server-side: GET /api/v1/pool/utilisation/), and Drain / Undrain a node behind a
// confirmation (supervisors: the server decides, and its refusal is shown in its own words).

import { ApiError, api } from "../api";
import { confirmDialog, fill, h, since } from "../dom";
import type { Me } from "../types";
import { Plot } from "./plot";
import type { View } from "./router";
import { type Pool, type PoolNode, type PoolSlice, type Utilisation, deploymentColumns, modelFigures, sliceColumns } from "./series";

// The nodes and slices beat every few seconds; the samples are a minute apart, so the history
// is read again once a minute only.
const REFRESH_MS = 10_000;
const HISTORY_REFRESH_MS = 60_000;
const HISTORY_MS = { "1 h": 3_600_000, "6 h": 6 * 3_600_000, "24 h": 24 * 3_600_000 } as const;
type History = keyof typeof HISTORY_MS;

function message(error: unknown): string {
  return error instanceof ApiError ? error.message : `Could not reach the server: ${String(error)}`;
}

const pct = (value: number | null | undefined) => (value === null || value === undefined ? "–" : `${Math.round(value * 100)} %`);
const ms = (value: number | null | undefined) => (value === null || value === undefined ? "–" : `${value.toFixed(value < 10 ? 1 : 0)} ms`);

export class PoolView implements View {
  private timer: number | undefined;
  private history: History = "1 h";
  private historyReadAt = -Infinity;
  private pool: Pool | null = null;
  private notice: { text: string; kind: "error" | "ok" } | null = null;
  private readonly status = h("span", { class: "muted view-status" });
  private readonly picker = h("div", { class: "range-picker", role: "group", "aria-label": "History shown" });
  private readonly noticeBox = h("div", { id: "pool-notice" });
  private readonly nodes = h("div", { class: "pool-nodes", id: "pool-nodes" });
  private readonly models = h("div", { id: "pool-models" });
  private readonly decisions = h("div", { id: "pool-decisions" });
  private readonly slicePlot: Plot;
  private readonly latencyPlot: Plot;
  private readonly batchPlot: Plot;

  constructor(
    root: HTMLElement,
    private readonly dialog: HTMLDialogElement,
    private readonly me: Me,
  ) {
    const boxes = { slices: h("div", { id: "plot-slices" }), latency: h("div", { id: "plot-latency" }), batch: h("div", { id: "plot-batch" }) };
    fill(root,
      h("div", { class: "view-head" }, h("h2", {}, "Accelerator pool"), this.status),
      this.noticeBox,
      this.nodes,
      h("section", { class: "card" }, h("h3", {}, "Models"), this.models),
      h("div", { class: "view-head sub" }, h("h3", {}, "Over time"), this.picker, h("span", { class: "muted" }, "sampled every minute")),
      h("div", { class: "view-grid three" }, h("section", { class: "card" }, boxes.slices), h("section", { class: "card" }, boxes.latency), h("section", { class: "card" }, boxes.batch)),
      h("section", { class: "card" }, h("h3", {}, "Placement decisions"), this.decisions),
    );
    this.slicePlot = new Plot(boxes.slices, { title: "Slice utilisation", unit: "% busy", yRange: [0, 100] });
    this.latencyPlot = new Plot(boxes.latency, { title: "Latency p99 per model", unit: "ms" });
    this.batchPlot = new Plot(boxes.batch, { title: "Mean batch size per model", unit: "rows" });
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
      ...(Object.keys(HISTORY_MS) as History[]).map((history) =>
        h("button", {
          type: "button",
          class: history === this.history ? "primary" : "secondary",
          "aria-pressed": String(history === this.history),
          onclick: () => {
            this.history = history;
            this.renderPicker();
            void this.loadHistory();
          },
        }, `Last ${history}`),
      ),
    );
  }

  async load(): Promise<void> {
    const historyDue = performance.now() - this.historyReadAt >= HISTORY_REFRESH_MS;
    await Promise.all([this.loadPool(), historyDue ? this.loadHistory() : null]);
  }

  private async loadPool(): Promise<void> {
    try {
      this.pool = await api<Pool>("/api/v1/pool/");
      this.status.textContent = `plan ${this.pool.plan ? `v${this.pool.plan.version}` : "not made yet"} · read ${new Date(this.pool.at).toLocaleTimeString()}`;
      this.status.classList.remove("error");
    } catch (error) {
      this.status.textContent = message(error);
      this.status.classList.add("error");
    }
    this.render();
  }

  private async loadHistory(): Promise<void> {
    this.historyReadAt = performance.now();
    const now = Date.now();
    const from = now - HISTORY_MS[this.history];
    const span: [number, number] = [from / 1000, now / 1000];
    try {
      const utilisation = await api<Utilisation>(`/api/v1/pool/utilisation/?from=${encodeURIComponent(new Date(from).toISOString())}`);
      const slices = sliceColumns(utilisation);
      this.slicePlot.set(slices.names.map((label) => ({ label, digits: 0 })), slices.columns, span);
      const latency = deploymentColumns(utilisation, "latency_p99_ms");
      this.latencyPlot.set(latency.names.map((label) => ({ label })), latency.columns, span);
      const batch = deploymentColumns(utilisation, "mean_batch_rows");
      this.batchPlot.set(batch.names.map((label) => ({ label })), batch.columns, span);
    } catch (error) {
      this.notice = { text: message(error), kind: "error" };
      this.renderNotice();
    }
  }

  private async drain(node: PoolNode, draining: boolean): Promise<void> {
    const reason = await confirmDialog(this.dialog, {
      title: draining ? `Drain ${node.name}?` : `Put ${node.name} back in service?`,
      body: draining
        ? "The scheduler moves every replica off this node's slices (others take its work where they have room) and places nothing new on it until it is undrained."
        : "The scheduler may place replicas on this node's slices again.",
      confirmLabel: draining ? "Drain the node" : "Undrain the node",
      danger: draining,
      input: { label: "Reason (kept in the audit trail)" },
    });
    if (reason === null) return;
    try {
      await api(`/api/v1/pool/nodes/${encodeURIComponent(node.name)}/${draining ? "drain" : "undrain"}/`, { method: "POST", body: { reason } });
      this.notice = { text: draining ? `${node.name} is draining.` : `${node.name} is back in service.`, kind: "ok" };
    } catch (error) {
      this.notice = { text: message(error), kind: "error" };
    }
    await this.loadPool();
  }

  private renderNotice(): void {
    fill(this.noticeBox, this.notice ? h("p", { class: `notice ${this.notice.kind}`, role: this.notice.kind === "error" ? "alert" : "status" }, this.notice.text) : null);
  }

  private render(): void {
    this.renderNotice();
    const pool = this.pool;
    if (!pool) return;
    fill(this.nodes, ...(pool.nodes.length ? pool.nodes.map((node) => this.nodeCard(node)) : [h("p", { class: "empty" }, "No node has joined the pool.")]));
    this.renderModels(pool);
    const decisions = pool.plan?.decisions ?? [];
    fill(this.decisions, decisions.length ? h("ol", { class: "decisions" }, ...decisions.slice(-12).reverse().map((d) => h("li", {}, d))) : h("p", { class: "empty" }, "No decision yet."));
  }

  private nodeCard(node: PoolNode): HTMLElement {
    const canDrain = this.me.can.drainNode;
    return h(
      "section",
      { class: `card node${node.draining ? " draining" : ""}${node.up ? "" : " down"}`, "data-node": node.name },
      h(
        "div",
        { class: "node-head" },
        h("h3", {}, node.name),
        h("span", { class: `pill ${node.up ? "ok" : "bad"}` }, node.up ? "up" : "not beating"),
        node.draining ? h("span", { class: "pill warn" }, `draining${node.drained_by ? ` (${node.drained_by}${node.drained_at ? `, ${since(node.drained_at)}` : ""})` : ""}`) : null,
        h("span", { class: "muted" }, node.host),
        h(
          "button",
          { type: "button", class: node.draining ? "secondary" : "danger", "data-action": node.draining ? "undrain" : "drain", onclick: () => void this.drain(node, !node.draining) },
          node.draining ? "Undrain" : "Drain",
        ),
      ),
      canDrain ? null : h("p", { class: "hint" }, "Draining a node needs the supervisor role; the server will refuse it."),
      h("p", { class: "devices" }, "Devices: ", node.devices.length ? node.devices.map(describeDevice).join(" · ") : "none reported"),
      h(
        "table",
        { class: "figures slices" },
        h("thead", {}, h("tr", {}, h("th", {}, "Slice"), h("th", {}, "state"), h("th", { class: "num" }, "share"), h("th", { class: "num" }, "busy"), h("th", {}, "models (p50 / p99, batch)"))),
        h("tbody", {}, ...node.slices.map((slice) => sliceRow(slice))),
      ),
    );
  }

  private renderModels(pool: Pool): void {
    const figures = modelFigures(pool.nodes);
    fill(this.models,
      pool.deployments.length
        ? h(
            "table",
            { class: "figures", id: "pool-model-table" },
            h("thead", {}, h("tr", {}, h("th", {}, "Model"), h("th", {}, "priority"), h("th", {}, "runs on"), h("th", { class: "num" }, "req/s"), h("th", { class: "num" }, "p50"), h("th", { class: "num" }, "p99 / SLO"), h("th", { class: "num" }, "batch"), h("th", { class: "num" }, "queued"))),
            h("tbody", {},
              ...pool.deployments.map((d) => {
                const f = figures.get(d.name);
                const late = f?.latencyP99Ms != null && f.latencyP99Ms > d.slo_ms;
                return h("tr", { "data-model": d.name },
                  h("td", {}, h("strong", {}, d.name), h("div", { class: "muted" }, d.model_id || d.model)),
                  h("td", {}, d.priority),
                  h("td", {}, d.serving.length ? d.serving.join(", ") : h("span", { class: "bad" }, "nowhere"), d.unplaced ? h("div", { class: "hint bad" }, d.unplaced) : null),
                  h("td", { class: "num" }, d.served_per_s.toFixed(1)),
                  h("td", { class: "num" }, ms(f?.latencyP50Ms)),
                  h("td", { class: `num${late ? " bad" : ""}` }, `${ms(f?.latencyP99Ms)} / ${ms(d.slo_ms)}`),
                  h("td", { class: "num" }, f?.meanBatchRows == null ? "–" : f.meanBatchRows.toFixed(1)),
                  h("td", { class: "num" }, String(d.queue_requests)),
                );
              }),
            ),
          )
        : h("p", { class: "empty" }, "No model is deployed."),
    );
  }
}

function describeDevice(device: Record<string, unknown>): string {
  const extra = ["cores", "memory_gib", "model"].filter((k) => device[k] !== undefined).map((k) => `${device[k]} ${k === "memory_gib" ? "GiB" : k === "cores" ? "cores" : ""}`.trim());
  return `${String(device["name"] ?? "?")} (${String(device["kind"] ?? "?")}${extra.length ? `, ${extra.join(", ")}` : ""})`;
}

function sliceRow(slice: PoolSlice): HTMLElement {
  return h(
    "tr",
    { "data-slice": slice.key },
    h("td", {}, h("strong", {}, slice.name), h("div", { class: "muted" }, slice.kind)),
    h("td", {}, slice.live ? h("span", { class: "ok" }, "live") : h("span", { class: "bad" }, `not beating${slice.restarts ? ` (${slice.restarts} restarts)` : ""}`)),
    h("td", { class: "num" }, pct(slice.share?.delivered_share ?? null), h("div", { class: "muted" }, `of ${pct(slice.compute_share)}`)),
    h("td", { class: "num" }, pct(slice.busy)),
    h(
      "td",
      {},
      slice.replicas.length
        ? h("ul", { class: "replicas" }, ...slice.replicas.map((r) => h("li", {}, h("strong", {}, r.model_id), r.consuming ? "" : " (not consuming)", ` · ${ms(r.latency_ms?.p50)} / ${ms(r.latency_ms?.p99)}, batch ${r.mean_batch_rows == null ? "–" : r.mean_batch_rows.toFixed(1)}`)))
        : slice.assigned.length
          ? h("span", { class: "muted" }, `planned: ${slice.assigned.join(", ")}`)
          : h("span", { class: "muted" }, "idle"),
    ),
  );
}
