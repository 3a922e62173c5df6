// The zones panel: draw a polygon on the live map to put a zone in force (exclusion or speed
// limit, with a reason), deactivate one, and follow each machine's answer as it arrives. The
// server checks every action by role (operators) and the polygon again; its refusal is shown in
// its own words. The list is GET /api/v1/sites/<id>/zone-answers/, read again on the live
// feed's zone events (zoning.ts touchesZones).

import Draw from "ol/interaction/Draw";
import VectorLayer from "ol/layer/Vector";
import { toLonLat } from "ol/proj";
import VectorSource from "ol/source/Vector";
import { Fill, Stroke, Style } from "ol/style";
import type Polygon from "ol/geom/Polygon";

import { ApiError, api } from "./api";
import { confirmDialog, fill, h } from "./dom";
import { formDialog } from "./form";
import { policySummary } from "./legend";
import type { LiveMap } from "./map";
import type { Me } from "./types";
import { type LonLat, STATUS_LABELS, type ZoneAnswers, answerLine, closedRing, orderZones, policiesFor, polygonProblems } from "./zoning";

function message(error: unknown): string {
  return error instanceof ApiError ? error.message : `Could not reach the server: ${String(error)}`;
}

const SKETCH = "#ffd54f";

export class ZonesPanel {
  private zones: ZoneAnswers[] = [];
  private notice: { text: string; kind: "error" | "ok" } | null = null;
  private draw: Draw | null = null;
  private readonly sketch = new VectorSource();

  constructor(
    private readonly root: HTMLElement,
    private readonly dialog: HTMLDialogElement,
    private readonly map: LiveMap,
    private readonly siteId: string,
    private readonly me: Me,
  ) {
    const style = new Style({ stroke: new Stroke({ color: SKETCH, width: 2, lineDash: [6, 4] }), fill: new Fill({ color: "rgba(255, 213, 79, 0.15)" }) });
    this.map.map.addLayer(new VectorLayer({ source: this.sketch, style, properties: { name: "zone-sketch" } }));
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.draw) this.stopDrawing();
    });
  }

  get drawing(): boolean {
    return this.draw !== null;
  }

  async load(): Promise<void> {
    try {
      this.zones = await api<ZoneAnswers[]>(`/api/v1/sites/${this.siteId}/zone-answers/`);
    } catch (error) {
      this.notice = { text: message(error), kind: "error" };
    }
    this.render();
  }

  startDrawing(): void {
    if (this.draw) return;
    this.notice = null;
    this.sketch.clear();
    this.draw = new Draw({ source: this.sketch, type: "Polygon" });
    this.draw.on("drawend", (event) => {
      const ring = (event.feature.getGeometry() as Polygon).getCoordinates()[0]!.map((c) => toLonLat(c) as LonLat);
      this.stopDrawing(false);
      void this.confirmZone(ring);
    });
    this.map.map.addInteraction(this.draw);
    this.render();
  }

  private stopDrawing(clear = true): void {
    if (this.draw) this.map.map.removeInteraction(this.draw);
    this.draw = null;
    if (clear) this.sketch.clear();
    this.render();
  }

  private async confirmZone(ring: LonLat[]): Promise<void> {
    const problems = polygonProblems(ring);
    if (problems.length) {
      // Draw adds the finished sketch to the source right after its drawend event: clear it then.
      queueMicrotask(() => this.sketch.clear());
      this.notice = { text: problems.join(" "), kind: "error" };
      this.render();
      return;
    }
    const answers = await formDialog(this.dialog, {
      title: "Put this zone in force?",
      body: "Every connected machine of the site is sent the zone now; each answer is listed in the Zones panel.",
      confirmLabel: "Activate the zone",
      fields: [
        { name: "name", label: "Name", required: true },
        { name: "policy", label: "Policy", kind: "select", value: "exclusion", options: [["exclusion", "Exclusion (no entry)"], ["speedLimit", "Speed limit"]] },
        { name: "speedKmh", label: "Speed limit (km/h)", kind: "number", required: true, shownWhen: { field: "policy", value: "speedLimit" } },
        { name: "reason", label: "Reason (kept with the zone and sent with it)", required: true },
      ],
      check: (values) => {
        const chosen = policiesFor(values["policy"] ?? "", values["speedKmh"] ?? "");
        return "error" in chosen ? chosen.error : null;
      },
    });
    if (answers === null) {
      this.sketch.clear();
      return;
    }
    const chosen = policiesFor(answers["policy"]!, answers["speedKmh"] ?? "");
    if ("error" in chosen) return; // the dialog's check does not let this through
    try {
      const zone = await api<{ id: string; properties: { name: string } }>("/api/v1/zones/draw/", {
        method: "POST",
        body: { site: this.siteId, name: answers["name"], geometry: { type: "Polygon", coordinates: [closedRing(ring)] }, policies: chosen.policies, reason: answers["reason"] },
      });
      this.notice = { text: `Zone ${zone.properties.name} is active; each machine's answer is listed as it arrives.`, kind: "ok" };
    } catch (error) {
      this.notice = { text: message(error), kind: "error" };
    }
    this.sketch.clear();
    await this.load();
  }

  private async deactivate(zone: ZoneAnswers): Promise<void> {
    const reason = await confirmDialog(this.dialog, {
      title: `Deactivate ${zone.name}?`,
      body: `${policySummary(zone.policies)}. Every connected machine is told to drop the zone; it is deleted when all have answered.`,
      confirmLabel: "Deactivate",
      danger: true,
      input: { label: "Reason (kept with the zone and sent with it)", required: true },
    });
    if (reason === null) return;
    try {
      await api(`/api/v1/zones/${zone.id}/deactivate/`, { method: "POST", body: { reason } });
      this.notice = { text: `Deletion of ${zone.name} requested; the machines' answers are listed as they arrive.`, kind: "ok" };
    } catch (error) {
      this.notice = { text: message(error), kind: "error" };
    }
    await this.load();
  }

  render(): void {
    const zones = orderZones(this.zones);
    fill(
      this.root,
      h("h2", {}, "Zones ", h("span", { class: "muted" }, `${zones.filter((z) => z.status === "active").length} active`)),
      h(
        "div",
        { class: "actions" },
        this.draw
          ? h("button", { type: "button", class: "secondary", id: "zone-draw-cancel", onclick: () => this.stopDrawing() }, "Cancel drawing")
          : h("button", { type: "button", class: "primary", id: "zone-draw", onclick: () => this.startDrawing() }, "Draw a zone"),
      ),
      this.draw ? h("p", { class: "hint", id: "zone-draw-hint" }, "Click the corners on the map; click the first corner (or double-click) to finish. Esc cancels.") : null,
      this.me.can.activateZone ? null : h("p", { class: "hint" }, "Drawing and deactivating zones needs the operator role; the server will refuse it."),
      this.notice ? h("p", { class: `notice ${this.notice.kind}`, id: "zones-notice", role: this.notice.kind === "error" ? "alert" : "status" }, this.notice.text) : null,
      zones.length ? h("ol", { class: "zone-list" }, ...zones.map((zone) => this.item(zone))) : h("p", { class: "empty" }, "No zones in force."),
    );
  }

  private item(zone: ZoneAnswers): HTMLElement {
    const chips = (names: string[], kind: string) => (names.length ? h("ul", { class: `chips ${kind}` }, ...names.map((name) => h("li", {}, name))) : null);
    return h(
      "li",
      { class: `zone ${zone.status}`, "data-zone-id": zone.id, "data-zone-name": zone.name },
      h("div", { class: "zone-head" }, h("strong", {}, zone.name), h("span", { class: `zone-status ${zone.status}` }, STATUS_LABELS[zone.status])),
      h("p", { class: "meta" }, policySummary(zone.policies), zone.reason ? ` · ${zone.reason}` : ""),
      h("p", { class: "progress" }, answerLine(zone)),
      chips(zone.accepted, "ok"),
      chips(zone.waiting, "wait"),
      chips([...zone.rejected.map((r) => `${r.machine}: ${r.reason || "rejected"}`), ...zone.silent.map((name) => `${name}: no answer`)], "bad"),
      zone.status === "active" || zone.status === "pending"
        ? h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", "data-action": "deactivate", onclick: () => void this.deactivate(zone) }, "Deactivate"))
        : null,
    );
  }
}
