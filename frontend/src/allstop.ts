// The site all-stop as the control room sees it: in force or not, who applied it and why, and
// each machine's answer. The server's GET /api/v1/sites/<id>/all-stop/ is the truth; live
// events only say when to read it again.

import type { AllStopStatus, LiveMessage } from "./types";

export const ALL_STOP_MESSAGE = "MachineAllStopRequestV1";

/** Whether a live event can change what the all-stop panel shows. */
export function touchesAllStop(message: LiveMessage): boolean {
  if (message.event === "allstop.changed") return true;
  if (message.event === "command.changed" || message.event === "commands.answered") {
    const data = message.data as { message?: string } | null;
    return data?.message === ALL_STOP_MESSAGE;
  }
  return false;
}

export interface AllStopSummary {
  inForce: boolean;
  /** One line for the panel's head. */
  headline: string;
  /** "3 of 5 acknowledged", or "" when nothing was sent. */
  progress: string;
  complete: boolean;
  acknowledged: string[];
  waiting: string[];
  failed: string[];
}

export function summarise(status: AllStopStatus | null): AllStopSummary {
  const empty = { acknowledged: [], waiting: [], failed: [] };
  if (!status || !status.last) {
    return { inForce: false, headline: "No all-stop on record", progress: "", complete: true, ...empty };
  }
  const { last } = status;
  const total = status.acknowledged.length + status.waiting.length + status.failed.length;
  const verb = last.mode === "Apply" ? "applied" : "removed";
  const headline = status.in_force
    ? `ALL-STOP IN FORCE: ${last.reason} (${verb} by ${last.actor})`
    : `No all-stop in force (last ${verb} by ${last.actor}: ${last.reason})`;
  return {
    inForce: status.in_force,
    headline,
    progress: total ? `${status.acknowledged.length} of ${total} acknowledged` : "",
    complete: status.waiting.length === 0,
    acknowledged: status.acknowledged,
    waiting: status.waiting,
    failed: status.failed,
  };
}
