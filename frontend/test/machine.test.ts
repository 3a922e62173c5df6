import { describe, expect, it } from "vitest";

import { CommandList, ModelOutputs, channelName, findTruck, commandStatus, commandTitle, duration, etaText, faultView, percent, trajectoryPath } from "../src/machine";
import type { Command, Prediction } from "../src/types";

const ID = "6f1c0000-0000-4000-8000-000000000001";

function prediction(model: string, windowEnd: string, outputs: Record<string, unknown> = {}, equipmentId = ID): Prediction {
  return { equipmentId, model, modelId: `${model}@1`, windowEnd, outputs };
}

function command(serial: number, status: Command["status"], body: Record<string, unknown> = { ModeAllStop: "Apply" }): Command {
  return {
    serial,
    command_id: `c${serial}`,
    equipment: ID,
    message_name: "MachineAllStopRequestV1",
    body,
    status,
    reason: "test",
    issued_by: "omar",
    issued_at: "2026-01-01T10:00:00Z",
    answered_at: null,
    answer: "",
  };
}

describe("model outputs", () => {
  it("keeps each head's newest prediction of this truck, whatever order they arrive in", () => {
    const outputs = new ModelOutputs(ID);
    expect(outputs.apply(prediction("fault", "2026-01-01T10:00:05Z"))).toBe(true);
    expect(outputs.apply(prediction("fault", "2026-01-01T10:00:01Z"))).toBe(false);
    expect(outputs.apply(prediction("eta", "2026-01-01T10:00:01Z"))).toBe(true);
    expect(outputs.apply(prediction("eta", "2026-01-01T10:00:09Z", {}, "other"))).toBe(false);
    expect(outputs.byHead.get("fault")!.windowEnd).toBe("2026-01-01T10:00:05Z");
    expect([...outputs.byHead.keys()]).toEqual(["fault", "eta"]);
  });

  it("lists the fault classes most likely first, with the contributing channel in words", () => {
    const view = faultView({
      probabilities: { normal: 0.1, overheating: 0.85, tyre_leak: 0.05 },
      top_channel: "coolant_temp_c",
      anomalous: true,
    });
    expect(view.classes.map((c) => c.name)).toEqual(["overheating", "normal", "tyre leak"]);
    expect(view.channel).toBe("coolant temperature");
    expect(view.anomalous).toBe(true);
    expect(faultView({ probabilities: {} }).channel).toBeNull();
  });

  it("names the channels in words", () => {
    expect(channelName("tyre_pressure_kpa_1.2")).toBe("tyre 1.2 pressure");
    expect(channelName("tyre_temp_c_3.1")).toBe("tyre 3.1 temperature");
    expect(channelName("strut_pressure_kpa_FL")).toBe("strut FL pressure");
    expect(channelName("brake_temp_rear_c")).toBe("rear brake temperature");
    expect(channelName("z_m")).toBe("z m");
  });

  it("says percentages and durations as a person reads them", () => {
    expect(percent(0.853)).toBe("85 %");
    expect(percent(0.004)).toBe("<1 %");
    expect(percent(0)).toBe("0 %");
    expect(duration(45.4)).toBe("45 s");
    expect(duration(65)).toBe("1 min 05 s");
    expect(duration(725)).toBe("12 min");
  });

  it("gives the ETA band, or nothing without a median", () => {
    expect(etaText({ p10_s: 50, p50_s: 65, p90_s: 90 })).toBe("1 min 05 s (80 % between 50 s and 1 min 30 s)");
    expect(etaText({ p50_s: 30 })).toBe("30 s");
    expect(etaText({})).toBeNull();
  });

  it("draws the trajectory from where the truck is through the predicted positions", () => {
    const outputs = { positions: [[-68.9, -22.3], [-68.8999, -22.3], ["x", 1]] };
    expect(trajectoryPath(outputs, [-68.9001, -22.3])).toEqual([
      [-68.9001, -22.3],
      [-68.9, -22.3],
      [-68.8999, -22.3],
    ]);
    expect(trajectoryPath(outputs, null)).toHaveLength(2);
    expect(trajectoryPath({}, [0, 0])).toEqual([]);
  });
});

describe("a machine's commands", () => {
  it("are newest first, their status changed live; an unknown one asks for a re-read", () => {
    const list = new CommandList(ID);
    list.load([command(1, "acknowledged"), command(3, "sent")]);
    expect(list.list().map((c) => c.serial)).toEqual([3, 1]);
    expect(list.applyChange({ commandId: "c3", equipmentId: ID, message: "MachineAllStopRequestV1", status: "acknowledged", reason: "", answer: "" })).toBe(true);
    expect(list.list()[0]!.status).toBe("acknowledged");
    expect(list.applyChange({ commandId: "c9", equipmentId: ID, message: "x", status: "sent", reason: "", answer: "" })).toBe(false);
    list.upsert(command(4, "issued"));
    expect(list.list().map((c) => c.serial)).toEqual([4, 3, 1]);
  });

  it("never go back to an earlier status: a late POST answer or a late 'sent' leaves 'acknowledged'", () => {
    const list = new CommandList(ID);
    list.load([command(5, "acknowledged")]);
    list.upsert(command(5, "issued"));
    expect(list.list()[0]!.status).toBe("acknowledged");
    expect(list.applyChange({ commandId: "c5", equipmentId: ID, message: "MachineAllStopRequestV1", status: "sent", reason: "", answer: "" })).toBe(true);
    expect(list.list()[0]!.status).toBe("acknowledged");
    list.load([command(5, "sent")]);
    expect(list.list()[0]!.status).toBe("acknowledged");
    list.upsert(command(6, "issued"));
    expect(list.applyChange({ commandId: "c6", equipmentId: ID, message: "MachineAllStopRequestV1", status: "rejected", reason: "", answer: "brakes hot" })).toBe(true);
    expect(list.list()[0]).toMatchObject({ status: "rejected", answer: "brakes hot" });
  });

  it("are said in words: stop and resume, the truck's reason for a refusal", () => {
    expect(commandTitle(command(1, "sent"))).toBe("Stop");
    expect(commandTitle(command(1, "sent", { ModeAllStop: "Remove" }))).toBe("Resume (stop removed)");
    expect(commandTitle({ message_name: "HaulTruckAssignmentV1", body: {} })).toBe("Assignment");
    expect(commandStatus({ status: "rejected", answer: "brakes not released" })).toBe("rejected: brakes not released");
    expect(commandStatus({ status: "sent", answer: "" })).toBe("sent, waiting for the truck");
  });
});

describe("finding a truck by name", () => {
  const trucks = [
    { id: "a", name: "HT-001" },
    { id: "b", name: "HT-007" },
    { id: "c", name: "HT-017" },
  ];

  it("takes the exact name in any case, else the only one it starts or is part of", () => {
    expect(findTruck(trucks, " ht-007 ")).toBe("b");
    expect(findTruck(trucks, "001")).toBe("a");
    expect(findTruck(trucks, "HT-01")).toBe("c");
  });

  it("finds nothing when the text is empty, unknown or fits several", () => {
    expect(findTruck(trucks, "")).toBeNull();
    expect(findTruck(trucks, "HT-9")).toBeNull();
    expect(findTruck(trucks, "7")).toBeNull();
    expect(findTruck(trucks, "HT-0")).toBeNull();
  });
});
