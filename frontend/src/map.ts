// The live map: the site's map file (GET /api/v1/sites/<id>/map/, docs/map-format.md) drawn on
// canvas with no base tiles, and the trucks drawn on the GPU by one WebGL layer over one vector
// source whose features are moved in place. Staleness is computed on the GPU too: each feature
// carries the page-clock second of its last update and the layer a `now` variable, so ageing
// trucks fade without touching a single feature.

import Feature from "ol/Feature";
import OlMap from "ol/Map";
import View from "ol/View";
import { ScaleLine, Zoom } from "ol/control";
import { type Extent, createEmpty, extend, isEmpty } from "ol/extent";
import GeoJSON from "ol/format/GeoJSON";
import type { Geometry } from "ol/geom";
import LineString from "ol/geom/LineString";
import Point from "ol/geom/Point";
import VectorLayer from "ol/layer/Vector";
import WebGLVectorLayer from "ol/layer/WebGLVector";
import { fromLonLat } from "ol/proj";
import VectorSource from "ol/source/Vector";
import { Circle as CircleStyle, Fill, RegularShape, Stroke, Style, Text } from "ol/style";
import type { FlatStyleLike } from "ol/style/flat";

import { STALE_AFTER_S, type Truck, ageS, formatAge, loadFraction } from "./fleet";
import { POLICY_COLOURS, TRUCK_STATES, dominantPolicy, policySummary, rgba, stateCode } from "./legend";

// --- the site --------------------------------------------------------------------------------

const BACKGROUND = "#1b2025";
const GROUND = "#252b31";
const ROAD = "#9aa7b1";
const ONE_LANE = "#4dd0e1";
const LABEL = "#e8eaed";
const HALO = "rgba(20, 24, 28, 0.9)";
const FONT = "600 12px system-ui, -apple-system, 'Segoe UI', sans-serif";
// Resolutions (metres per pixel) below which labels fit without covering the map.
const WAY_LABEL_RES = 3;
const ZONE_LABEL_RES = 4;
const TRUCK_LABEL_RES = 2.5;

function label(text: string, options: Partial<ConstructorParameters<typeof Text>[0]> = {}): Text {
  return new Text({
    text,
    font: FONT,
    fill: new Fill({ color: LABEL }),
    stroke: new Stroke({ color: HALO, width: 4 }),
    overflow: true,
    ...options,
  });
}

const boundaryStyle = new Style({
  stroke: new Stroke({ color: "#6d5c4d", width: 2, lineDash: [12, 6] }),
  fill: new Fill({ color: GROUND }),
});

function areaStyle(feature: Feature, resolution: number): Style {
  return new Style({
    stroke: new Stroke({ color: "#607d8b", width: 1.2 }),
    fill: new Fill({ color: "rgba(96, 125, 139, 0.18)" }),
    text: resolution < ZONE_LABEL_RES ? label(String(feature.get("name")), { font: "500 11px system-ui, sans-serif", fill: new Fill({ color: "#b0bec5" }) }) : undefined,
  });
}

const STATUS_DASH: Record<string, number[] | undefined> = { active: undefined, pending: [10, 6], pending_delete: [2, 6] };

function zoneStyle(feature: Feature, resolution: number): Style {
  const colour = POLICY_COLOURS[dominantPolicy(feature.get("policies"))] ?? "#d32f2f";
  const active = feature.get("status") === "active";
  return new Style({
    stroke: new Stroke({ color: colour, width: active ? 2 : 1.5, lineDash: STATUS_DASH[String(feature.get("status"))] }),
    fill: new Fill({ color: rgba(colour, active ? 0.2 : 0.08) }),
    text: resolution < ZONE_LABEL_RES ? label(String(feature.get("name")), { fill: new Fill({ color: colour }), font: "700 11px system-ui, sans-serif" }) : undefined,
  });
}

function wayStyle(feature: Feature, resolution: number): Style[] {
  const oneLane = Boolean(feature.get("oneLane"));
  const styles = [
    new Style({ stroke: new Stroke({ color: "#14181c", width: oneLane ? 6 : 8 }) }),
    new Style({ stroke: new Stroke({ color: oneLane ? ONE_LANE : ROAD, width: oneLane ? 2.5 : 4, lineDash: oneLane ? [10, 6] : undefined }) }),
  ];
  if (resolution < WAY_LABEL_RES) {
    styles.push(new Style({ text: label(`W${feature.get("wayId")}`, { offsetY: -12, font: "500 10px system-ui, sans-serif", fill: new Fill({ color: "#b0bec5" }) }) }));
  }
  return styles;
}

const DESTINATIONS: Record<string, { points: number; radius: number; angle: number; colour: string }> = {
  crusher: { points: 4, radius: 10, angle: 0, colour: "#eceff1" },
  waste_dump: { points: 4, radius: 9, angle: Math.PI / 4, colour: "#a1887f" },
  stockpile: { points: 4, radius: 9, angle: Math.PI / 4, colour: "#c0ca33" },
};

// Loading units are round, so no destination can be taken for a truck (trucks are arrows).
const loadingUnitImage = new CircleStyle({ radius: 8, fill: new Fill({ color: "#43a047" }), stroke: new Stroke({ color: "#eceff1", width: 2 }) });

function destinationStyle(feature: Feature): Style {
  const label_ = label(String(feature.get("name")), { offsetY: 20, font: "700 12px system-ui, sans-serif" });
  if (feature.get("featureType") === "loadingUnit") return new Style({ image: loadingUnitImage, text: label_ });
  const symbol = DESTINATIONS[String(feature.get("kind"))] ?? DESTINATIONS["stockpile"]!;
  return new Style({
    image: new RegularShape({
      points: symbol.points,
      radius: symbol.radius,
      angle: symbol.angle,
      fill: new Fill({ color: symbol.colour }),
      stroke: new Stroke({ color: BACKGROUND, width: 2 }),
    }),
    text: label_,
  });
}

interface MapFile {
  type: "FeatureCollection";
  features: Array<{ type: "Feature"; id?: string; featureType?: string; status?: string; geometry: unknown; properties: Record<string, unknown> | null }>;
}

/** The map file's zones keep featureType and status beside `properties` (the ISO 23725 form);
 * OpenLayers reads only `properties`, so copy them in. Ids are dropped: WayIds and nodeIds may
 * coincide, and a source skips repeated ids. */
export function normalise(collection: MapFile): MapFile {
  return {
    type: "FeatureCollection",
    features: collection.features.map((feature) => {
      const properties: Record<string, unknown> = { ...feature.properties };
      if (feature.featureType) {
        properties["featureType"] = feature.featureType;
        properties["status"] = feature.status;
        properties["zoneId"] = feature.id;
      }
      return { type: "Feature", geometry: feature.geometry, properties };
    }),
  };
}

type SiteStyle = (feature: Feature, resolution: number) => Style | Style[];

const SITE_LAYERS: Array<{ name: string; types: string[]; style: SiteStyle; declutter: boolean }> = [
  { name: "boundary", types: ["siteBoundary"], style: () => boundaryStyle, declutter: false },
  { name: "areas", types: ["area"], style: areaStyle, declutter: false },
  { name: "zones", types: ["policyZone"], style: zoneStyle, declutter: true },
  { name: "ways", types: ["way"], style: wayStyle, declutter: true },
  { name: "destinations", types: ["loadingUnit", "dumpPoint"], style: destinationStyle, declutter: true },
];

// --- the trucks ------------------------------------------------------------------------------

/** The trucks' GPU style: an arrow along the heading in the state's colour, a dark dot inside
 * it sized by the payload (none when empty), both faded once the link is stale. */
function truckStyle(): FlatStyleLike {
  // Rounded before matching: the state reaches the fragment shader interpolated across the
  // symbol's vertices, and SwiftShader (headless Chromium's software GL) was seen to hand some
  // fragments 6.9999 for 7, drawing half an arrow in the fallback colour.
  const colour = ["match", ["round", ["get", "state"]], ...TRUCK_STATES.flatMap((s, i) => [i, s.colour]), "#9e9e9e"];
  const age = ["-", ["var", "now"], ["get", "seen"]];
  const opacity = ["case", [">", age, ["var", "staleAfter"]], 0.35, 1];
  return [
    {
      style: {
        "shape-points": 3,
        "shape-radius": 12,
        "shape-scale": [0.8, 1.15],
        "shape-fill-color": colour,
        "shape-stroke-color": "#101418",
        "shape-stroke-width": 1.5,
        "shape-rotation": ["get", "heading"],
        "shape-rotate-with-view": true,
        "shape-opacity": opacity,
      },
    },
    {
      style: {
        "circle-radius": ["*", 4, ["get", "load"]],
        "circle-fill-color": "#101418",
        "circle-opacity": opacity,
      },
    },
  ] as FlatStyleLike;
}

export interface TruckPick {
  id: string;
}

// The machine detail's predicted trajectory: a line from the truck through its predicted
// positions, a dot at each.
const trajectoryStyle = [
  new Style({ stroke: new Stroke({ color: "#101418", width: 6 }) }),
  new Style({ stroke: new Stroke({ color: "#e040fb", width: 3, lineDash: [6, 4] }) }),
];
const selectedStyle = new Style({ image: new CircleStyle({ radius: 17, stroke: new Stroke({ color: "#ffffff", width: 2, lineDash: [4, 3] }) }) });
const trajectoryPointStyle = new Style({ image: new CircleStyle({ radius: 3.5, fill: new Fill({ color: "#e040fb" }), stroke: new Stroke({ color: "#101418", width: 1.5 }) }) });

export class LiveMap {
  readonly map: OlMap;
  private readonly siteSources = new Map<string, VectorSource>();
  private readonly truckSource = new VectorSource<Feature<Point>>();
  private readonly truckLayer: WebGLVectorLayer<VectorSource<Feature<Point>>>;
  private readonly labelLayer: VectorLayer<VectorSource<Feature<Point>>>;
  private readonly trajectorySource = new VectorSource();
  /** A ring around the truck whose detail is open; it follows the truck. */
  private readonly selection = new Feature<Point>();
  private selectedId: string | null = null;
  private siteExtent: Extent | null = null;
  private readonly epoch = performance.now();
  /** Latest truck records by id, for the labels and the tooltip. */
  private readonly trucks = new Map<string, Truck>();

  constructor(target: HTMLElement) {
    const siteLayers = SITE_LAYERS.map((spec) => {
      const source = new VectorSource();
      this.siteSources.set(spec.name, source);
      return new VectorLayer({ source, style: (feature, resolution) => spec.style(feature as Feature, resolution), declutter: spec.declutter, properties: { name: spec.name } });
    });
    this.truckLayer = new WebGLVectorLayer({
      source: this.truckSource,
      style: truckStyle(),
      variables: { now: 0, staleAfter: STALE_AFTER_S },
      properties: { name: "trucks" },
    });
    this.labelLayer = new VectorLayer({
      source: this.truckSource,
      style: (feature, resolution) => this.truckLabel(feature as Feature<Point>, resolution),
      declutter: "truck-labels",
      properties: { name: "truck-labels" },
    });
    this.selection.setStyle(selectedStyle);
    const trajectoryLayer = new VectorLayer({ source: this.trajectorySource, properties: { name: "trajectory" } });
    const selectionLayer = new VectorLayer({ source: new VectorSource({ features: [this.selection] }), properties: { name: "selection" } });
    this.map = new OlMap({
      target,
      layers: [...siteLayers, trajectoryLayer, selectionLayer, this.truckLayer, this.labelLayer],
      view: new View({ center: [0, 0], zoom: 2, maxZoom: 21 }),
      controls: [new Zoom(), new ScaleLine()],
    });
    target.style.background = BACKGROUND;
  }

  /** Seconds on the page's clock: small numbers, exact in the GPU's 32-bit floats. */
  private seconds(pageMs: number): number {
    return (pageMs - this.epoch) / 1000;
  }

  showSite(collection: MapFile, fit: boolean): void {
    const features = new GeoJSON().readFeatures(normalise(collection), {
      dataProjection: "EPSG:4326",
      featureProjection: "EPSG:3857",
    }) as Feature<Geometry>[];
    for (const spec of SITE_LAYERS) {
      const source = this.siteSources.get(spec.name)!;
      source.clear(true);
      source.addFeatures(features.filter((f) => spec.types.includes(String(f.get("featureType")))));
    }
    // Fit to where the work is (roads, loading units, dumps, zones): a site's boundary is often
    // drawn far wider than the pit, which would leave the trucks a few pixels each.
    const working = createEmpty();
    for (const name of ["ways", "destinations", "zones"]) {
      const extent = this.siteSources.get(name)!.getExtent();
      if (extent && !isEmpty(extent)) extend(working, extent);
    }
    const boundary = this.siteSources.get("boundary")!.getExtent();
    this.siteExtent = !isEmpty(working) ? working : boundary && !isEmpty(boundary) ? boundary : null;
    if (fit) this.fitSite();
  }

  fitSite(): void {
    if (this.siteExtent) this.map.getView().fit(this.siteExtent, { padding: [50, 50, 50, 50] });
  }

  /** Move, recolour or add the trucks that changed; one feature per truck, changed in place. */
  updateTrucks(changed: Truck[]): void {
    const added: Feature<Point>[] = [];
    for (const truck of changed) {
      this.trucks.set(truck.id, truck);
      if (truck.lon === null || truck.lat === null) continue;
      const coordinates = fromLonLat([truck.lon, truck.lat]);
      const properties = {
        state: stateCode(truck.state, truck.autonomyMode, truck.allStopped),
        heading: (truck.heading * Math.PI) / 180,
        load: loadFraction(truck),
        seen: truck.seenAt === null ? -1e6 : this.seconds(truck.seenAt),
      };
      if (truck.id === this.selectedId) this.selection.setGeometry(new Point(coordinates));
      const feature = this.truckSource.getFeatureById(truck.id) as Feature<Point> | null;
      if (feature) {
        feature.setProperties(properties, true); // silent: the one change event below
        feature.getGeometry()!.setCoordinates(coordinates);
      } else {
        const created = new Feature<Point>({ geometry: new Point(coordinates), ...properties });
        created.setId(truck.id);
        added.push(created);
      }
    }
    if (added.length) this.truckSource.addFeatures(added);
  }

  removeAllTrucks(): void {
    this.truckSource.clear();
    this.trucks.clear();
  }

  /** Advance the GPU's clock (fades stale trucks) and redraw the age labels. */
  tick(nowMs: number): void {
    this.truckLayer.updateStyleVariables({ now: this.seconds(nowMs), staleAfter: STALE_AFTER_S });
    this.labelLayer.changed();
  }

  private truckLabel(feature: Feature<Point>, resolution: number): Style | undefined {
    const truck = this.trucks.get(String(feature.getId()));
    if (!truck) return undefined;
    const age = ageS(truck, performance.now());
    const stale = age > STALE_AFTER_S;
    // Zoomed out, only the stale links are labelled: the ones that need the operator's eye.
    if (!stale && resolution >= TRUCK_LABEL_RES) return undefined;
    // Tonnes only when carrying: "HT-001 · 0 t" on every empty truck would be noise.
    const payload = truck.payloadT ? ` · ${truck.payloadT} t` : "";
    return new Style({
      text: label(stale ? `${truck.name} · ${formatAge(age)} ago` : `${truck.name}${payload}`, {
        offsetY: -18,
        font: stale ? "600 11px system-ui, sans-serif" : FONT,
        fill: new Fill({ color: stale ? "#ffb74d" : LABEL }),
      }),
    });
  }

  /** What is under the pointer: a truck first, then the site's features. */
  describeAt(pixel: number[]): string[] | null {
    const found = this.map.forEachFeatureAtPixel(
      pixel,
      (feature) => {
        const id = feature.getId();
        const truck = id === undefined ? undefined : this.trucks.get(String(id));
        return (truck ? describeTruck(truck) : describeSiteFeature(feature as Feature)) ?? undefined;
      },
      { hitTolerance: 4, layerFilter: (layer) => !["boundary", "truck-labels"].includes(String(layer.get("name"))) },
    );
    return found ?? null;
  }

  /** The truck under a pixel (the WebGL layer's hit detection), for the click that opens its
   * detail. */
  truckAt(pixel: number[]): string | null {
    const found = this.map.forEachFeatureAtPixel(pixel, (feature) => feature.getId(), {
      hitTolerance: 8,
      layerFilter: (layer) => layer === this.truckLayer,
    });
    return found === undefined ? null : String(found);
  }

  /** Ring the truck whose detail is open (null: none). */
  select(id: string | null): void {
    this.selectedId = id;
    const coordinates = id === null ? undefined : (this.truckSource.getFeatureById(id) as Feature<Point> | null)?.getGeometry()?.getCoordinates();
    this.selection.setGeometry(coordinates ? new Point(coordinates) : undefined);
  }

  /** Draw a predicted trajectory ([lon, lat] points); an empty list clears it. */
  showTrajectory(path: Array<[number, number]>): void {
    this.trajectorySource.clear(true);
    if (path.length < 2) {
      this.trajectorySource.changed();
      return;
    }
    const points = path.map((p) => fromLonLat(p));
    const line = new Feature(new LineString(points));
    line.setStyle(trajectoryStyle);
    const dots = points.slice(1).map((p) => {
      const dot = new Feature(new Point(p));
      dot.setStyle(trajectoryPointStyle);
      return dot;
    });
    this.trajectorySource.addFeatures([line, ...dots]);
  }

  truckCount(): number {
    return this.truckSource.getFeatures().length;
  }

  /** Page pixel of a truck (tests and the fleet list's "show on map"). */
  pixelOf(id: string): number[] | null {
    const feature = this.truckSource.getFeatureById(id) as Feature<Point> | null;
    const coordinates = feature?.getGeometry()?.getCoordinates();
    return coordinates ? this.map.getPixelFromCoordinate(coordinates) : null;
  }

  /** Pan to a truck; with `rightInsetPx`, to the middle of what a drawer of that width over the
   * map's right edge leaves visible. */
  centreOn(id: string, rightInsetPx = 0): void {
    const feature = this.truckSource.getFeatureById(id) as Feature<Point> | null;
    const coordinates = feature?.getGeometry()?.getCoordinates();
    if (!coordinates) return;
    const shift = (rightInsetPx / 2) * (this.map.getView().getResolution() ?? 0);
    this.map.getView().animate({ center: [coordinates[0]! + shift, coordinates[1]!], duration: 300 });
  }
}

export function describeTruck(truck: Truck): string[] {
  const age = ageS(truck, performance.now());
  return [
    truck.name,
    `${truck.state}${truck.autonomyMode && truck.autonomyMode !== "Autonomous" ? ` (${truck.autonomyMode})` : ""}${truck.allStopped ? ", held by the all-stop" : ""}`,
    `${truck.speedKmh === null ? "?" : Math.round(truck.speedKmh)} km/h, heading ${truck.heading}°`,
    `payload ${truck.payloadT === null ? "not reported" : `${truck.payloadT} t`}${truck.capacityT ? ` of ${truck.capacityT} t` : ""}`,
    age > STALE_AFTER_S ? `link stale: last update ${formatAge(age)} ago` : `updated ${formatAge(age)} ago`,
  ];
}

function describeSiteFeature(feature: Feature): string[] | null {
  const p = feature.getProperties();
  switch (p["featureType"]) {
    case "way":
      return [`Way ${p["wayId"]}${p["name"] ? ` — ${p["name"]}` : ""}`, `${Math.round(Number(p["lengthM"]))} m, grade ${p["gradePct"]} %${p["oneLane"] ? ", one lane" : ""}`];
    case "policyZone":
      return [String(p["name"]), policySummary(p["policies"] as Record<string, Record<string, unknown>>), String(p["status"]).replace("_", " ")];
    case "loadingUnit":
      return [`Loading unit ${p["name"]}`, `${p["material"]}, ${p["loadingRateTph"]} t/h`];
    case "dumpPoint":
      return [String(p["name"]), `${String(p["kind"]).replace("_", " ")}, ${p["capacityTph"]} t/h`];
    case "area":
      return [String(p["name"]), String(p["kind"])];
    default:
      return null;
  }
}
