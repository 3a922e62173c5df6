// The side panels and the critical banner: rendered from the pure state (alerts.ts, allstop.ts,
// fleet.ts) and wired to the REST actions. Every control is also checked by the server; a
// refusal is shown in the panel in the server's words.

import { AlertFeed, nextActions } from "./alerts";
import { summarise } from "./allstop";
import { ApiError, api } from "./api";
import { confirmDialog, fill, h, since } from "./dom";
import { type Fleet, formatAge, ageS } from "./fleet";
import { POLICY_COLOURS, POLICY_LABELS, TRUCK_STATES, stateKey } from "./legend";
import { findTruck } from "./machine";
import type { Alert, AllStopStatus, Me } from "./types";

function message(error: unknown): string {
  return error instanceof ApiError ? error.message : `Could not reach the server: ${String(error)}`;
}

function roleNote(me: Me): string {
  return me.roles.length ? me.roles.join(", ") : me.is_superuser ? "superuser" : "no role";
}

// --- all-stop --------------------------------------------------------------------------------

export class AllStopPanel {
  private status: AllStopStatus | null = null;
  private notice: { text: string; kind: "error" | "ok" } | null = null;

  constructor(
    private readonly root: HTMLElement,
    private readonly dialog: HTMLDialogElement,
    private readonly siteId: string,
    private readonly me: Me,
    private readonly onStatus: (status: AllStopStatus) => void = () => {},
  ) {}

  private url(rest = ""): string {
    return `/api/v1/sites/${this.siteId}/all-stop/${rest}`;
  }

  async load(): Promise<void> {
    try {
      this.status = await api<AllStopStatus>(this.url());
      this.onStatus(this.status);
    } catch (error) {
      this.notice = { text: message(error), kind: "error" };
    }
    this.render();
  }

  private async act(mode: "apply" | "remove"): Promise<void> {
    const apply = mode === "apply";
    const reason = await confirmDialog(this.dialog, {
      title: apply ? "Apply an all-stop to the whole site?" : "Remove the all-stop?",
      body: apply
        ? "Every machine on the site is told to stop now, and stays stopped until a supervisor removes the all-stop."
        : "Every machine on the site is released and resumes its work.",
      confirmLabel: apply ? "Stop every machine" : "Remove the all-stop",
      danger: apply,
      input: { label: "Reason (kept in the audit trail)", required: true },
    });
    if (reason === null) return;
    this.notice = null;
    try {
      this.status = await api<AllStopStatus>(this.url(apply ? "" : "remove/"), { method: "POST", body: { reason } });
      this.onStatus(this.status);
      this.notice = { text: apply ? "All-stop applied; each machine's answer is listed above as it arrives." : "All-stop removed.", kind: "ok" };
    } catch (error) {
      this.notice = { text: message(error), kind: "error" };
    }
    this.render();
  }

  render(): void {
    const summary = summarise(this.status);
    const names = (list: string[], kind: string) => h("ul", { class: `chips ${kind}` }, ...list.map((name) => h("li", {}, name)));
    const applyHint = this.me.can.applyAllStop ? null : h("p", { class: "hint" }, `Your role (${roleNote(this.me)}) may not apply an all-stop; the server will refuse it.`);
    const removeHint = this.me.can.removeAllStop ? null : h("p", { class: "hint" }, "Removing an all-stop needs the supervisor role.");
    this.root.dataset["inForce"] = String(summary.inForce);
    fill(this.root,
      h("h2", {}, "All-stop"),
      h("p", { class: "headline", id: "allstop-headline" }, summary.headline),
      summary.progress ? h("p", { class: "progress", id: "allstop-progress" }, summary.progress, summary.complete ? " ✓" : "") : null,
      summary.acknowledged.length ? h("div", {}, h("h3", {}, "Acknowledged"), names(summary.acknowledged, "ok")) : null,
      summary.waiting.length ? h("div", {}, h("h3", {}, "Waiting"), names(summary.waiting, "wait")) : null,
      summary.failed.length ? h("div", {}, h("h3", {}, "Rejected or expired"), names(summary.failed, "bad")) : null,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "danger big", id: "allstop-apply", onclick: () => void this.act("apply") }, "ALL-STOP"),
        summary.inForce ? h("button", { type: "button", class: "secondary", id: "allstop-remove", onclick: () => void this.act("remove") }, "Remove all-stop") : null,
      ),
      applyHint,
      summary.inForce ? removeHint : null,
      this.notice ? h("p", { class: `notice ${this.notice.kind}`, id: "allstop-notice", role: this.notice.kind === "error" ? "alert" : "status" }, this.notice.text) : null,
    );
  }
}

// --- alerts ----------------------------------------------------------------------------------

const ACTION_LABELS = { acknowledge: "Acknowledge", assign: "Assign", resolve: "Resolve" } as const;

export class AlertsPanel {
  readonly feed = new AlertFeed();
  private notice: string | null = null;

  constructor(
    private readonly root: HTMLElement,
    private readonly banner: HTMLElement,
    private readonly dialog: HTMLDialogElement,
    private readonly siteId: string,
    private readonly me: Me,
    private readonly fleet: Fleet,
    /** Open a machine's detail (its name in each alert is a link to it). */
    private readonly onPick: (id: string) => void = () => {},
  ) {}

  async load(): Promise<void> {
    this.feed.startRead();
    try {
      const page = await api<{ results: Alert[] }>(
        `/api/v1/alerts/?site=${this.siteId}&status=open&status=acknowledged&status=assigned&limit=200`,
      );
      this.feed.load(page.results);
      this.notice = null;
    } catch (error) {
      this.notice = message(error);
    }
    this.render();
  }

  private machine(alert: Alert): string {
    return alert.equipment_name ?? this.fleet.trucks.get(alert.equipment)?.name ?? alert.equipment.slice(0, 8);
  }

  async act(alert: Alert, action: "acknowledge" | "assign" | "resolve"): Promise<void> {
    let body: Record<string, string> = {};
    if (action === "assign") {
      const assignee = await confirmDialog(this.dialog, {
        title: `Assign alert ${alert.id}`,
        body: `${this.machine(alert)}: ${alert.reason}`,
        confirmLabel: "Assign",
        input: { label: "User name of who is to deal with it", value: this.me.username, required: true },
      });
      if (assignee === null) return;
      body = { assignee };
    } else if (action === "resolve") {
      const note = await confirmDialog(this.dialog, {
        title: `Resolve alert ${alert.id}?`,
        body: `${this.machine(alert)}: ${alert.reason}. The next occurrence opens a new alert.`,
        confirmLabel: "Resolve",
        input: { label: "Note (optional)" },
      });
      if (note === null) return;
      body = { note };
    }
    try {
      this.feed.upsert(await api<Alert>(`/api/v1/alerts/${alert.id}/${action}/`, { method: "POST", body }));
      this.notice = null;
    } catch (error) {
      this.notice = message(error);
    }
    this.render();
  }

  render(): void {
    const alerts = this.feed.list();
    const counts = this.feed.counts();
    fill(this.root,
      h(
        "h2",
        {},
        "Alerts ",
        h("span", { class: "count critical", title: "critical" }, String(counts.critical)),
        h("span", { class: "count warning", title: "warning" }, String(counts.warning)),
        h("span", { class: "count info", title: "info" }, String(counts.info)),
      ),
      this.notice ? h("p", { class: "notice error", role: "alert", id: "alerts-notice" }, this.notice) : null,
      alerts.length
        ? h("ol", { class: "alert-list" }, ...alerts.map((alert) => this.item(alert)))
        : h("p", { class: "empty" }, "No unresolved alerts."),
    );
    this.renderBanner();
  }

  private item(alert: Alert): HTMLElement {
    return h(
      "li",
      { class: `alert ${alert.severity} ${alert.status}`, "data-alert-id": alert.id },
      h(
        "div",
        { class: "alert-head" },
        h("span", { class: `severity ${alert.severity}` }, alert.severity),
        h("button", { type: "button", class: "link machine", title: "Open this machine's detail", onclick: () => this.onPick(alert.equipment) }, this.machine(alert)),
        h("span", { class: "kind" }, alert.kind),
        alert.count > 1 ? h("span", { class: "repeat", title: "occurrences" }, `×${alert.count}`) : null,
      ),
      h("p", { class: "reason" }, alert.reason),
      h(
        "p",
        { class: "meta" },
        `${alert.status}${alert.assigned_to ? ` to ${alert.assigned_to}` : ""} · ${since(alert.last_seen_at)} · ${alert.source}`,
      ),
      h(
        "div",
        { class: "actions" },
        ...nextActions(alert.status).map((action) =>
          h("button", { type: "button", class: action === "acknowledge" ? "primary" : "secondary", "data-action": action, onclick: () => void this.act(alert, action) }, ACTION_LABELS[action]),
        ),
      ),
    );
  }

  /** Critical alerts nobody has acknowledged: a banner across the page until someone does. */
  private renderBanner(): void {
    const critical = this.feed.unacknowledgedCritical();
    this.banner.hidden = critical.length === 0;
    const shown = critical.slice(0, 3);
    fill(this.banner,
      ...shown.map((alert) =>
        h(
          "div",
          { class: "banner-item", "data-alert-id": alert.id },
          h("strong", {}, `CRITICAL · ${this.machine(alert)}`),
          h("span", {}, alert.reason),
          h("button", { type: "button", class: "primary", onclick: () => void this.act(alert, "acknowledge") }, "Acknowledge"),
        ),
      ),
      critical.length > shown.length ? h("div", { class: "banner-more" }, `and ${critical.length - shown.length} more critical alerts in the list`) : null,
    );
  }
}

// --- fleet -----------------------------------------------------------------------------------

export class FleetPanel {
  private readonly head = h("div");
  private readonly body = h("div");
  /** Built once, outside what `render` replaces each second: typing in it is never lost. */
  private readonly names = h("datalist", { id: "fleet-names" });
  private namesKey = "";

  constructor(
    root: HTMLElement,
    private readonly fleet: Fleet,
    private readonly onPick: (id: string) => void,
  ) {
    const input = h("input", { type: "search", name: "truck", list: "fleet-names", placeholder: "Truck name, e.g. HT-007", autocomplete: "off", "aria-label": "Open a truck's detail by its name" });
    const finder = h("form", { class: "finder", id: "fleet-finder" }, input, this.names, h("button", { type: "submit", class: "secondary" }, "Open"));
    const open = (report: boolean) => {
      const id = findTruck(this.fleet.trucks.values(), input.value);
      input.setCustomValidity(id || !report ? "" : `No single truck is named "${input.value.trim()}".`);
      if (id) {
        input.value = "";
        this.onPick(id);
      } else if (report) {
        input.reportValidity();
      }
    };
    finder.addEventListener("submit", (event) => {
      event.preventDefault();
      open(true);
    });
    // Picking a name from the list opens it at once.
    input.addEventListener("change", () => open(false));
    input.addEventListener("input", () => input.setCustomValidity(""));
    root.replaceChildren(this.head, finder, this.body);
  }

  private renderNames(): void {
    const names = [...this.fleet.trucks.values()].map((t) => t.name).sort();
    const key = names.join("\n");
    if (key === this.namesKey) return;
    this.namesKey = key;
    this.names.replaceChildren(...names.map((name) => h("option", { value: name })));
  }

  render(now: number): void {
    this.renderNames();
    const counts = new Map<string, number>();
    let placed = 0;
    for (const truck of this.fleet.trucks.values()) {
      const key = stateKey(truck.state, truck.autonomyMode, truck.allStopped);
      counts.set(key, (counts.get(key) ?? 0) + 1);
      if (truck.lon !== null) placed += 1;
    }
    const stale = this.fleet.stale(now);
    fill(this.head, h("h2", {}, "Fleet ", h("span", { class: "muted", id: "fleet-count" }, `${placed} on the map`)));
    fill(this.body,
      h(
        "ul",
        { class: "legend states" },
        ...TRUCK_STATES.map((state) =>
          h(
            "li",
            { class: counts.get(state.key) ? "" : "none" },
            h("span", { class: "swatch arrow", style: `--colour: ${state.colour}` }),
            state.label,
            h("span", { class: "n" }, String(counts.get(state.key) ?? 0)),
          ),
        ),
      ),
      h("h3", {}, "Stale links ", h("span", { class: "muted", id: "stale-count" }, String(stale.length))),
      stale.length
        ? h(
            "ul",
            { class: "stale-list" },
            ...stale.slice(0, 30).map((truck) =>
              h("li", {}, h("button", { type: "button", class: "link", onclick: () => this.onPick(truck.id) }, truck.name), ` no update for ${formatAge(ageS(truck, now))}`),
            ),
          )
        : h("p", { class: "empty" }, "Every link is live."),
      h("h3", {}, "Zones"),
      h(
        "ul",
        { class: "legend zones" },
        ...Object.entries(POLICY_LABELS).map(([policy, text]) =>
          h("li", {}, h("span", { class: "swatch zone", style: `--colour: ${POLICY_COLOURS[policy]}` }), text),
        ),
      ),
    );
  }
}
