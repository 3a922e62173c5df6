// Colours and codes of the map, in one place: the trucks' production states (drawn on the GPU
// by number, so each state has a code) and the zones' policies (the admin's site map uses the
// same colours: fleet/static/fleet/site-map.js).

/** ISO 23725 ProductionState values, plus the autonomy modes that override them on the map. */
export const TRUCK_STATES = [
  { key: "Hauling", label: "Hauling (loaded)", colour: "#2e7d32" },
  { key: "Driving", label: "Driving (empty)", colour: "#1565c0" },
  { key: "Queued", label: "Queued", colour: "#f9a825" },
  { key: "Spotting", label: "Spotting", colour: "#00897b" },
  { key: "Loading", label: "Loading", colour: "#7cb342" },
  { key: "Dumping", label: "Dumping", colour: "#8d6e63" },
  { key: "Stopped", label: "Stopped", colour: "#ff7043" },
  { key: "AllStop", label: "Held by all-stop / e-stop", colour: "#ff1744" },
  { key: "Parked", label: "Parked", colour: "#78909c" },
  { key: "Off", label: "Off", colour: "#455a64" },
  { key: "Unknown", label: "Not reported", colour: "#9e9e9e" },
] as const;

export type TruckStateKey = (typeof TRUCK_STATES)[number]["key"];

const UNKNOWN = TRUCK_STATES.length - 1;

/** What the map colours a truck by: its production state, unless it is held by an all-stop
 * (it acknowledged the one in force, or its autonomy mode says so) or an emergency stop, which
 * matters more in the control room. */
export function stateKey(productionState: string, autonomyMode = "", allStopped = false): TruckStateKey {
  if (allStopped || autonomyMode === "AllStop" || autonomyMode === "EmergencyStop") return "AllStop";
  const found = TRUCK_STATES.find((s) => s.key === productionState);
  return found ? found.key : "Unknown";
}

/** The state's code: an index into TRUCK_STATES, the number the GPU layer matches on. */
export function stateCode(productionState: string, autonomyMode = "", allStopped = false): number {
  const key = stateKey(productionState, autonomyMode, allStopped);
  const index = TRUCK_STATES.findIndex((s) => s.key === key);
  return index < 0 ? UNKNOWN : index;
}

export const POLICY_COLOURS: Record<string, string> = {
  exclusion: "#d32f2f",
  speedLimit: "#f59e0b",
  controlledAccess: "#1e63c6",
  trafficPermission: "#7b3fb5",
  lowTraction: "#8d5a2b",
  roughRoad: "#8d5a2b",
};

export const POLICY_LABELS: Record<string, string> = {
  exclusion: "Exclusion (no entry)",
  speedLimit: "Speed limit",
  controlledAccess: "Controlled access",
  trafficPermission: "Traffic permission",
  lowTraction: "Low traction / rough road",
};

/** A zone with several policies is drawn in the colour of the one that restricts most. */
const POLICY_PRIORITY = [
  "exclusion",
  "trafficPermission",
  "controlledAccess",
  "speedLimit",
  "lowTraction",
  "roughRoad",
];

export function dominantPolicy(policies: Record<string, unknown> | null | undefined): string {
  return POLICY_PRIORITY.find((name) => policies && name in policies) ?? "exclusion";
}

export function policySummary(policies: Record<string, Record<string, unknown>>): string {
  return Object.entries(policies ?? {})
    .map(([name, body]) => {
      if (name === "speedLimit") {
        const value = Number(body["value"]);
        return body["type"] === "percent"
          ? `speed ≤ ${value} % of mapped`
          : `speed ≤ ${Math.round(value * 3.6)} km/h`;
      }
      if (name === "trafficPermission") return `traffic permission (${body["capacity"] ?? 1} at a time)`;
      if (name === "controlledAccess") return "controlled access";
      if (name === "lowTraction") return "low traction";
      if (name === "roughRoad") return "rough road";
      return name;
    })
    .join(", ");
}

export function rgba(hex: string, alpha: number): string {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}
