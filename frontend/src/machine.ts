// The machine detail's state apart from its charts: the truck's newest model outputs (fault
// probabilities, ETA band, predicted trajectory), its commands with their acknowledgement and
// the words to show for each. Pure: no DOM, no map.

import type { Command, CommandChange, CommandStatus, Prediction } from "./types";

// --- model outputs -----------------------------------------------------------------------------

/** Each head's newest prediction (by the end of its input window): the live events may arrive
 * before or after the REST read at open, and neither may replace a newer one. */
export class ModelOutputs {
  readonly byHead = new Map<string, Prediction>();

  constructor(readonly equipmentId: string) {}

  apply(prediction: Prediction): boolean {
    if (prediction.equipmentId !== this.equipmentId) return false;
    const held = this.byHead.get(prediction.model);
    if (held && Date.parse(held.windowEnd) > Date.parse(prediction.windowEnd)) return false;
    this.byHead.set(prediction.model, prediction);
    return true;
  }
}

export interface FaultView {
  /** Fault classes, most likely first, "normal" included (its probability is the reassurance). */
  classes: Array<{ name: string; probability: number }>;
  /** The channel the network leaned on most, in words; null when the version does not say. */
  channel: string | null;
  anomalous: boolean;
}

export function faultView(outputs: Record<string, unknown>): FaultView {
  const probabilities = (outputs["probabilities"] ?? {}) as Record<string, number>;
  const classes = Object.entries(probabilities)
    .map(([name, probability]) => ({ name: name.replace(/_/g, " "), probability }))
    .sort((a, b) => b.probability - a.probability);
  const top = outputs["top_channel"];
  return { classes, channel: typeof top === "string" ? channelName(top) : null, anomalous: Boolean(outputs["anomalous"]) };
}

/** The training pipeline's channel names (fleet/learning/datasets.py RAW_CHANNELS) in words. */
export function channelName(channel: string): string {
  const tyre = /^tyre_(pressure|temp)_(?:kpa|c)_(.+)$/.exec(channel);
  if (tyre) return `tyre ${tyre[2]} ${tyre[1] === "pressure" ? "pressure" : "temperature"}`;
  const strut = /^strut_pressure_kpa_(.+)$/.exec(channel);
  if (strut) return `strut ${strut[1]} pressure`;
  const named: Record<string, string> = {
    coolant_temp_c: "coolant temperature",
    brake_temp_front_c: "front brake temperature",
    brake_temp_rear_c: "rear brake temperature",
    fuel_pct: "fuel level",
    speed_kmh: "speed",
  };
  return named[channel] ?? channel.replace(/_/g, " ");
}

export function percent(probability: number): string {
  const value = probability * 100;
  if (value > 0 && value < 1) return "<1 %";
  return `${Math.round(value)} %`;
}

/** "45 s", "1 min 05 s", "12 min". */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.floor(s / 60);
  if (minutes >= 10) return `${Math.round(s / 60)} min`;
  return `${minutes} min ${String(s % 60).padStart(2, "0")} s`;
}

/** The ETA head's band to the truck's next stop: the median and the 10 %-90 % range. */
export function etaText(outputs: Record<string, unknown>): string | null {
  const [p10, p50, p90] = ["p10_s", "p50_s", "p90_s"].map((key) => outputs[key]);
  if (typeof p50 !== "number") return null;
  const band = typeof p10 === "number" && typeof p90 === "number" ? ` (80 % between ${duration(p10)} and ${duration(p90)})` : "";
  return `${duration(p50)}${band}`;
}

/** How long a predicted trajectory stays on the map after it reached the page. It looks 5 s
 * ahead and the server predicts every 10 s (INFERENCE_INTERVAL_S): one missed prediction is
 * tolerated, an older path would only be behind the truck. */
export const TRAJECTORY_SHOWN_S = 20;

/** The predicted path as [lon, lat] points: from where the truck is now (when known) through
 * the trajectory head's positions 1, 3 and 5 s ahead. */
export function trajectoryPath(outputs: Record<string, unknown>, from: [number, number] | null): Array<[number, number]> {
  const positions = outputs["positions"];
  if (!Array.isArray(positions)) return [];
  const points = positions.filter((p): p is [number, number] => Array.isArray(p) && p.length === 2 && p.every(Number.isFinite));
  if (!points.length) return [];
  return from ? [from, ...points] : points;
}

// --- finding a truck by name -------------------------------------------------------------------

/** The truck a typed name means: its exact name (any case), else the only one whose name starts
 * with it or contains it ("7" finds HT-007 when no other name holds a 7). */
export function findTruck(trucks: Iterable<{ id: string; name: string }>, typed: string): string | null {
  const wanted = typed.trim().toLowerCase();
  if (!wanted) return null;
  const all = [...trucks];
  const exact = all.find((t) => t.name.toLowerCase() === wanted);
  if (exact) return exact.id;
  for (const matches of [(n: string) => n.startsWith(wanted), (n: string) => n.includes(wanted)]) {
    const found = all.filter((t) => matches(t.name.toLowerCase()));
    if (found.length === 1) return found[0]!.id;
    if (found.length > 1) return null;
  }
  return null;
}

// --- commands ----------------------------------------------------------------------------------


/** The truck's recent commands, newest first, their status kept up to date by `command.changed`. */
// How far on a command is: issued, then sent, then one of the ends.
const STATUS_RANK: Record<CommandStatus, number> = {
  issued: 0,
  sent: 1,
  acknowledged: 2,
  rejected: 2,
  expired: 2,
  superseded: 2,
};

export class CommandList {
  private commands: Command[] = [];

  constructor(readonly equipmentId: string) {}

  /** The list as read from the server; a command's status held from a live change stays where
   * it is further on than the read's (a read can start before the change and end after it). */
  load(commands: Command[]): void {
    this.commands = commands.map((c) => this.furthest(c)).sort((a, b) => b.serial - a.serial);
  }

  list(): Command[] {
    return this.commands;
  }

  /** Apply a live change; false when it names a command not held (a new one: read the list).
   * An older status never replaces a newer one: "sent" (from the outbox's process) and
   * "acknowledged" (from ingest's) can arrive in either order. */
  applyChange(change: CommandChange): boolean {
    if (change.equipmentId !== this.equipmentId) return true;
    const held = this.commands.find((c) => c.command_id === change.commandId);
    if (!held) return false;
    if (STATUS_RANK[change.status] >= STATUS_RANK[held.status]) {
      held.status = change.status;
      held.answer = change.answer ?? held.answer;
    }
    return true;
  }

  /** Add a command or replace the one held, keeping the held status where it is further on:
   * the answer to a POST can reach the page after the truck's acknowledgement did. */
  upsert(command: Command): void {
    const kept = this.furthest(command);
    this.commands = [kept, ...this.commands.filter((c) => c.command_id !== command.command_id)].sort((a, b) => b.serial - a.serial);
  }

  private furthest(command: Command): Command {
    const held = this.commands.find((c) => c.command_id === command.command_id);
    if (!held || STATUS_RANK[held.status] <= STATUS_RANK[command.status]) return command;
    return { ...command, status: held.status, answer: held.answer, answered_at: held.answered_at };
  }
}

/** What a command asked, in words. */
export function commandTitle(command: Pick<Command, "message_name" | "body">): string {
  if (command.message_name === "MachineAllStopRequestV1") {
    return command.body["ModeAllStop"] === "Remove" ? "Resume (stop removed)" : "Stop";
  }
  return command.message_name
    .replace(/V\d+$/, "")
    .replace(/([a-z])([A-Z])/g, "$1 $2")
    .replace(/^Machine |^Haul Truck /, "");
}

const STATUS_WORDS: Record<CommandStatus, string> = {
  issued: "waiting to be sent",
  sent: "sent, waiting for the truck",
  acknowledged: "acknowledged",
  rejected: "rejected",
  expired: "expired: no answer",
  superseded: "superseded by a newer one",
};

export function commandStatus(command: Pick<Command, "status" | "answer">): string {
  const words = STATUS_WORDS[command.status] ?? command.status;
  return command.answer && command.status === "rejected" ? `${words}: ${command.answer}` : words;
}
