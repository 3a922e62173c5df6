// The operator dashboard: one site's live picture (map, alerts, all-stop) from the REST API and
// the site's websocket. docs/dashboard.md describes what it draws and from which events.

import "ol/ol.css";
import "./style.css";

import { touchesAllStop } from "./allstop";
import { api, csrfToken, loginUrl } from "./api";
import { MachineDetail } from "./detail";
import { byId, h } from "./dom";
import { Fleet } from "./fleet";
import { type LinkState, LiveLink, Throttle, socketUrl } from "./live";
import { LiveMap } from "./map";
import { AllStopPanel, AlertsPanel, FleetPanel } from "./panels";
import { isPermitEvent } from "./permits";
import { PermissionsPanel } from "./permissions";
import { DrawProbe } from "./probe";
import type { AlertEvent, LiveMessage, Me, PositionSummary, ProductionStateChange, Site, SiteCollection, TruckRecord } from "./types";
import { parseSites } from "./types";
import { startViews } from "./views";
import { ZonesPanel } from "./zones";
import { touchesZones } from "./zoning";

// The live feed carries positions and production states, not payloads: the register (which has
// each truck's latest payload from Redis) is read again this often. docs/dashboard.md.
const REGISTER_REFRESH_MS = 15_000;
const SITE_KEY = "haulmind.site";

/** What the browser tests and the console can look at. */
interface DashboardStats {
  frames: number;
  events: number;
  positions: number;
  lastEventAt: number;
}

class Dashboard {
  readonly fleet = new Fleet();
  readonly map: LiveMap;
  readonly alerts: AlertsPanel;
  readonly allStop: AllStopPanel;
  readonly fleetPanel: FleetPanel;
  readonly zones: ZonesPanel;
  readonly permissions: PermissionsPanel;
  readonly stats: DashboardStats = { frames: 0, events: 0, positions: 0, lastEventAt: 0 };
  /** The machine detail open, if any (one at a time). */
  detail: MachineDetail | null = null;
  /** `manage.py bench dashboard`'s draw time and position age; records only once started. */
  readonly probe = new DrawProbe();
  private lastUpdateAt = 0;
  private link: LiveLink | null = null;
  private drawPending = false;
  private readonly trucksThrottle = new Throttle(() => void this.loadTrucks(), 2_000);
  private readonly allStopThrottle = new Throttle(() => void this.allStop.load(), 500);
  private readonly siteThrottle = new Throttle(() => void this.loadSite(false), 1_000);
  private readonly zonesThrottle = new Throttle(() => void this.zones.load(), 500);
  private readonly permissionsThrottle = new Throttle(() => void this.permissions.load(), 1_000);

  constructor(
    readonly site: Site,
    readonly me: Me,
  ) {
    const dialog = byId<HTMLDialogElement>("confirm");
    this.map = new LiveMap(byId("map"));
    this.alerts = new AlertsPanel(byId("alerts-panel"), byId("critical-banner"), dialog, site.id, me, this.fleet, (id) => this.showDetail(id));
    this.allStop = new AllStopPanel(byId("allstop-panel"), dialog, site.id, me, (status) => {
      // Each machine that acknowledged the all-stop in force is drawn as held by it.
      this.fleet.setAllStopped(status.in_force ? status.acknowledged : []);
      this.scheduleDraw();
    });
    this.fleetPanel = new FleetPanel(byId("fleet-panel"), this.fleet, (id) => this.showDetail(id));
    this.zones = new ZonesPanel(byId("zones-panel"), dialog, this.map, site.id, me);
    this.permissions = new PermissionsPanel(byId("permissions-panel"), dialog, site.id, me);
    this.bindTooltip();
    this.bindProbe();
    this.map.map.on("click", (event) => {
      // A click while drawing a zone is the zone's corner, whatever lies under it.
      const id = this.zones.drawing ? null : this.map.truckAt(event.pixel);
      if (id) this.openDetail(id);
    });
  }

  /** Open a truck's detail from a list (its name in the side panel): the map pans to it. */
  showDetail(id: string): void {
    this.openDetail(id);
    this.map.centreOn(id, this.detail?.root.offsetWidth ?? 0);
  }

  openDetail(id: string): void {
    if (this.detail?.truckId === id) return;
    this.detail?.close();
    const detail = new MachineDetail(byId("map"), id, {
      siteId: this.site.id,
      me: this.me,
      fleet: this.fleet,
      dialog: byId<HTMLDialogElement>("confirm"),
      showTrajectory: (path) => this.map.showTrajectory(path),
      closed: () => {
        if (this.detail !== detail) return;
        this.detail = null;
        this.map.select(null);
        this.watch();
      },
    });
    this.detail = detail;
    this.map.select(id);
    this.watch();
    void detail.open();
    this.keepInView();
  }

  /** The server sends health readings only of the trucks a page watches (fleet/live/consumers.py). */
  private watch(): void {
    this.link?.send({ watch: this.detail ? [this.detail.truckId] : [] });
  }

  /** The truck whose detail is open stays in the part of the map the drawer leaves in view:
   * once it drives under the drawer or off the map, the map pans to it (checked each second). */
  private keepInView(): void {
    if (!this.detail) return;
    const pixel = this.map.pixelOf(this.detail.truckId);
    const [width, height] = this.map.map.getSize() ?? [0, 0];
    const inset = this.detail.root.offsetWidth;
    if (pixel && (pixel[0]! > width! - inset - 20 || pixel[0]! < 0 || pixel[1]! < 0 || pixel[1]! > height!)) {
      this.map.centreOn(this.detail.truckId, inset);
    }
  }

  async start(): Promise<void> {
    this.allStop.render();
    this.alerts.render();
    await Promise.all([this.loadSite(true), this.loadTrucks(), this.alerts.load(), this.allStop.load(), this.zones.load(), this.permissions.load()]);
    this.link = new LiveLink(socketUrl(window.location, this.site.id), {
      message: (message) => this.onMessage(message),
      frame: () => {
        this.stats.frames += 1;
      },
      handled: (ms) => this.probe.handled(ms),
      state: (state, detail) => showLinkState(state, detail),
      resync: () => {
        // Whatever happened while the socket was down is read again.
        void this.loadTrucks();
        void this.alerts.load();
        void this.allStop.load();
        void this.zones.load();
        void this.permissions.load();
        this.watch();
        void this.detail?.open();
      },
      login: () => window.location.assign(loginUrl(window.location)),
    });
    this.link.open();
    window.setInterval(() => this.tick(), 1_000);
    window.setInterval(() => void this.loadTrucks(), REGISTER_REFRESH_MS);
    this.tick();
  }

  async loadSite(fit: boolean): Promise<void> {
    this.map.showSite(await api(`/api/v1/sites/${this.site.id}/map/`), fit);
  }

  async loadTrucks(): Promise<void> {
    const records = await api<TruckRecord[]>(`/api/v1/trucks/?site=${this.site.id}`);
    this.fleet.applyRecords(records, performance.now());
    this.scheduleDraw();
  }

  onMessage(message: LiveMessage): void {
    this.stats.events += 1;
    this.stats.lastEventAt = Date.now();
    switch (message.event) {
      case "positions": {
        const trucks = (message.data as { trucks: PositionSummary[] }).trucks;
        this.stats.positions += trucks.length;
        if (this.fleet.applyPositions(trucks, performance.now()).length) this.trucksThrottle.request();
        this.scheduleDraw();
        break;
      }
      case "productionStates":
        this.fleet.applyStates((message.data as { changes: ProductionStateChange[] }).changes);
        this.scheduleDraw();
        break;
      case "alert":
        this.alerts.feed.applyEvent(message.data as AlertEvent);
        this.alerts.render();
        break;
      case "zone.changed":
      case "roads.changed":
        this.siteThrottle.request();
        break;
    }
    if (touchesAllStop(message)) this.allStopThrottle.request();
    if (touchesZones(message)) this.zonesThrottle.request();
    if (isPermitEvent(message)) {
      // A change of a listed permission is applied in place; a new request is read.
      if (this.permissions.permits.applyEvent(message.data)) this.permissions.render();
      else this.permissionsThrottle.request();
    }
    this.detail?.onMessage(message);
  }

  /** However many events arrive between two frames, the map is updated once per frame with
   * each changed truck's newest state. */
  private scheduleDraw(): void {
    if (this.drawPending) return;
    this.drawPending = true;
    requestAnimationFrame(() => {
      this.drawPending = false;
      const started = performance.now();
      const changed = this.fleet.drainDirty();
      this.map.updateTrucks(changed);
      // Positions that reached the page since the last update (not trucks re-marked by a state
      // change or a register read): their age is measured when the map renders them.
      const moved = changed.filter((t) => t.seenAt !== null && t.seenAt > this.lastUpdateAt);
      this.lastUpdateAt = started;
      this.probe.updated(performance.now() - started, moved.map((t) => t.at));
    });
  }

  /** OpenLayers renders the map in an animation frame of its own after a change: its time, from
   * the first layer to the last, is the render's part of the probe's draw time. */
  private bindProbe(): void {
    let renderStarted = 0;
    this.map.map.on("precompose", () => (renderStarted = performance.now()));
    this.map.map.on("postcompose", () => this.probe.rendered(performance.now() - renderStarted, Date.now()));
    if (PerformanceObserver.supportedEntryTypes.includes("long-animation-frame")) {
      new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) this.probe.longFrame(entry.duration);
      }).observe({ type: "long-animation-frame" });
    }
  }

  private tick(): void {
    const now = performance.now();
    this.map.tick(now);
    this.fleetPanel.render(now);
    this.detail?.tick();
    this.keepInView();
  }

  private bindTooltip(): void {
    const tooltip = h("div", { class: "map-tooltip", hidden: true });
    byId("map").append(tooltip);
    this.map.map.on("pointermove", (event) => {
      if (event.dragging) return;
      const lines = this.map.describeAt(event.pixel);
      tooltip.hidden = !lines;
      if (!lines) return;
      tooltip.replaceChildren(...lines.map((line, i) => h(i ? "div" : "strong", {}, line)));
      tooltip.style.left = `${event.pixel[0]! + 14}px`;
      tooltip.style.top = `${event.pixel[1]! + 14}px`;
    });
    this.map.map.getViewport()?.addEventListener("mouseleave", () => (tooltip.hidden = true));
  }
}

function showLinkState(state: LinkState, detail?: string): void {
  const element = byId("link-state");
  element.dataset["state"] = state;
  const words: Record<LinkState, string> = {
    connecting: "connecting…",
    live: "live",
    reconnecting: "link lost, reconnecting",
    refused: "live feed refused",
  };
  element.textContent = detail ? `${words[state]} (${detail})` : words[state];
}

function chooseSite(sites: Site[]): Site | undefined {
  const wanted = new URLSearchParams(window.location.search).get("site") ?? localStorage.getItem(SITE_KEY);
  return sites.find((s) => s.id === wanted) ?? sites[0];
}

function showSitePicker(sites: Site[], current: Site): void {
  byId("site-name").textContent = current.name;
  if (sites.length < 2) return;
  const picker = byId<HTMLSelectElement>("site-picker");
  picker.replaceChildren(...sites.map((s) => h("option", { value: s.id, selected: s.id === current.id }, s.name)));
  picker.closest("label")!.hidden = false;
  byId("site-name").hidden = true;
  picker.addEventListener("change", () => {
    localStorage.setItem(SITE_KEY, picker.value);
    const url = new URL(window.location.href);
    url.searchParams.set("site", picker.value);
    window.location.assign(url.toString());
  });
}

async function logOut(): Promise<void> {
  await fetch("/logout/", { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": csrfToken(document.cookie) } });
  window.location.assign("/login/");
}

async function boot(): Promise<void> {
  const [me, siteList] = await Promise.all([api<Me>("/api/v1/me/"), api<SiteCollection>("/api/v1/sites/")]);
  const sites = parseSites(siteList);
  byId("user-name").textContent = `${me.username} (${me.roles.join(", ") || (me.is_superuser ? "superuser" : "no role")})`;
  byId("logout").addEventListener("click", () => void logOut());
  const site = chooseSite(sites);
  if (!site) {
    byId("map").replaceChildren(h("p", { class: "empty big" }, "There is no site to show yet. Import a mine map (docs/map-format.md)."));
    return;
  }
  showSitePicker(sites, site);
  document.title = `${site.name} · Haulmind`;
  const dashboard = new Dashboard(site, me);
  (window as unknown as { haulmindDashboard: Dashboard }).haulmindDashboard = dashboard;
  startViews(site, me);
  await dashboard.start();
}

boot().catch((error: unknown) => {
  console.error(error);
  byId("map").replaceChildren(h("p", { class: "empty big", role: "alert" }, `The dashboard could not start: ${String(error)}`));
});
