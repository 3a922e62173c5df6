// The traffic permissions panel: the site's requests waiting and grants in force on its one-lane
// sections, with Grant, Refuse and Revoke by hand (supervisors), each confirmed with a reason;
// the server decides (409 when a grant would conflict) and its refusal is shown in its words.
// Live `traffic.changed` events update the list in place (permits.ts).

import { ApiError, api } from "./api";
import { confirmDialog, fill, h, since } from "./dom";
import { PERMIT_LABELS, type PermitAction, PermitList, type TrafficPermit, actionLabel, permitActions, permitTitle } from "./permits";
import type { Me } from "./types";

function message(error: unknown): string {
  return error instanceof ApiError ? error.message : `Could not reach the server: ${String(error)}`;
}

export class PermissionsPanel {
  readonly permits = new PermitList();
  private notice: { text: string; kind: "error" | "ok" } | null = null;

  constructor(
    private readonly root: HTMLElement,
    private readonly dialog: HTMLDialogElement,
    private readonly siteId: string,
    private readonly me: Me,
  ) {}

  async load(): Promise<void> {
    try {
      this.permits.load(await api<TrafficPermit[]>(`/api/v1/traffic-permissions/?site=${this.siteId}&limit=50`));
    } catch (error) {
      this.notice = { text: message(error), kind: "error" };
    }
    this.render();
  }

  private async act(permit: TrafficPermit, action: PermitAction): Promise<void> {
    const label = actionLabel(action, permit.status);
    const reason = await confirmDialog(this.dialog, {
      title: `${label} ${permit.truck}'s permission for ${permit.zone_name}?`,
      body:
        action === "grant"
          ? "The truck may enter the section now, out of its turn."
          : permit.status === "granted"
            ? "The truck is told it may not enter (or must stop where it is); the section goes to the next in line."
            : "The truck's request is refused; the section goes to the next in line.",
      confirmLabel: label,
      danger: action === "revoke",
      input: { label: "Reason (told to the truck, kept in the trail)", required: true },
    });
    if (reason === null) return;
    try {
      const updated = await api<TrafficPermit>(`/api/v1/traffic-permissions/${permit.id}/${action}/`, { method: "POST", body: { reason } });
      this.permits.upsert(updated);
      this.notice = { text: `${permit.truck}, ${permit.zone_name}: ${PERMIT_LABELS[updated.status].toLowerCase()}.`, kind: "ok" };
    } catch (error) {
      this.notice = { text: message(error), kind: "error" };
    }
    this.render();
  }

  render(): void {
    const { open, closed } = this.permits.list();
    fill(
      this.root,
      h("h2", {}, "Traffic permissions ", h("span", { class: "muted" }, `${open.length} open`)),
      this.me.can.decideTraffic ? null : h("p", { class: "hint" }, "Granting and revoking by hand needs the supervisor role; the server will refuse it."),
      this.notice ? h("p", { class: `notice ${this.notice.kind}`, id: "permissions-notice", role: this.notice.kind === "error" ? "alert" : "status" }, this.notice.text) : null,
      open.length ? h("ol", { class: "permit-list" }, ...open.map((p) => this.item(p))) : h("p", { class: "empty" }, "No truck is waiting for or holding a one-lane section."),
      closed.length ? h("h3", {}, "Lately closed") : null,
      closed.length ? h("ol", { class: "permit-list closed" }, ...closed.map((p) => this.item(p))) : null,
    );
  }

  private item(permit: TrafficPermit): HTMLElement {
    return h(
      "li",
      { class: `permit ${permit.status}`, "data-permit-id": permit.id, "data-truck": permit.truck },
      h("div", { class: "permit-head" }, h("strong", {}, permitTitle(permit)), h("span", { class: `permit-status ${permit.status}` }, PERMIT_LABELS[permit.status])),
      h("p", { class: "meta" }, `${permit.reason || "no reason given"}${permit.decided_by ? ` (${permit.decided_by})` : ""} · asked ${since(permit.requested_at)}`),
      h(
        "div",
        { class: "actions" },
        ...permitActions(permit.status).map((action) =>
          h("button", { type: "button", class: action === "grant" ? "primary" : "secondary", "data-action": action, onclick: () => void this.act(permit, action) }, actionLabel(action, permit.status)),
        ),
      ),
    );
  }
}
