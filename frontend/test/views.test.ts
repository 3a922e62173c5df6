import { describe, expect, it } from "vitest";

import { viewFromHash } from "../src/views/router";
import {
  type Availability,
  type Production,
  type Utilisation,
  alignSeries,
  availabilityColumns,
  cycleBreakdown,
  deploymentColumns,
  formatDuration,
  modelFigures,
  type PoolNode,
  type PoolReplica,
  type PoolSlice,
  rangeFor,
  shiftStart,
  sliceColumns,
  tphColumns,
} from "../src/views/series";

describe("the view in the URL's hash", () => {
  it("names a view, whatever follows it", () => {
    expect(viewFromHash("#pool")).toBe("pool");
    expect(viewFromHash("#Replay?from=x")).toBe("replay");
    expect(viewFromHash("#production/")).toBe("production");
  });

  it("is Live for nothing or an unknown name", () => {
    expect(viewFromHash("")).toBe("live");
    expect(viewFromHash("#")).toBe("live");
    expect(viewFromHash("#admin")).toBe("live");
  });
});

describe("time ranges", () => {
  it("finds the shift running now: day shift from 06:00, night shift from 18:00", () => {
    expect(shiftStart(new Date(2026, 11, 5, 9, 30)).getTime()).toBe(new Date(2026, 11, 5, 6, 0).getTime());
    expect(shiftStart(new Date(2026, 11, 5, 18, 0)).getTime()).toBe(new Date(2026, 11, 5, 18, 0).getTime());
    expect(shiftStart(new Date(2026, 11, 5, 23, 10)).getTime()).toBe(new Date(2026, 11, 5, 18, 0).getTime());
    // after midnight, the night shift began the evening before
    expect(shiftStart(new Date(2026, 11, 6, 3, 0)).getTime()).toBe(new Date(2026, 11, 5, 18, 0).getTime());
  });

  it("sizes the buckets to the range", () => {
    const now = new Date(2026, 11, 5, 9, 30);
    expect(rangeFor("hour", now)).toMatchObject({ bucketS: 300 });
    expect(rangeFor("hour", now).from.getTime()).toBe(now.getTime() - 3_600_000);
    expect(rangeFor("12h", now).bucketS).toBe(1800);
    const shift = rangeFor("shift", now);
    expect(shift.from.getHours()).toBe(6);
    expect(shift.bucketS).toBe(900); // 3.5 h so far
  });

  it("gives a shift that began seconds ago a minute (the server's least bucket)", () => {
    const now = new Date(2026, 11, 5, 6, 0, 10);
    const range = rangeFor("shift", now);
    expect(range.to.getTime() - range.from.getTime()).toBe(60_000);
  });
});

const production: Production = {
  from: "2026-12-05T06:00:00Z",
  to: "2026-12-05T08:00:00Z",
  bucket_s: 3600,
  cycles: 3,
  tonnes: 178,
  tph: 89,
  cycle_time_s: { queue_s: 60, spot_s: 30, load_s: 120, haul_s: 400, dump_s: 60, return_s: null },
  tph_series: [
    { at: "2026-12-05T06:00:00Z", cycles: 2, tonnes: 178, tph: 178 },
    { at: "2026-12-05T07:00:00Z", cycles: 1, tonnes: 0, tph: 0 },
  ],
  loading_units: [],
};

describe("production series", () => {
  it("puts tonnes per hour on seconds since the epoch", () => {
    expect(tphColumns(production)).toEqual([[Date.parse("2026-12-05T06:00:00Z") / 1000, Date.parse("2026-12-05T07:00:00Z") / 1000], [178, 0]]);
  });

  it("splits the mean cycle into its phases, a missing one as 0 s", () => {
    const { totalS, phases } = cycleBreakdown(production.cycle_time_s);
    expect(totalS).toBe(670);
    expect(phases.map((p) => p.label)).toEqual(["Queue", "Spot", "Load", "Haul", "Dump", "Return"]);
    expect(phases[3]!.share).toBeCloseTo(400 / 670);
    expect(phases[5]!.seconds).toBe(0);
    expect(cycleBreakdown({ queue_s: null, spot_s: null, load_s: null, haul_s: null, dump_s: null, return_s: null }).phases[0]!.share).toBe(0);
  });

  it("gives availability and utilisation in per cent, an empty bucket as a gap", () => {
    const use = (availability: number | null, utilisation: number | null) => ({ seconds: { operating: 0, standby: 0, offline: 0, down: 0 }, availability, utilisation });
    const answer: Availability = {
      from: "",
      to: "",
      fleet: use(1, 1),
      machines: [],
      series: [
        { at: "2026-12-05T06:00:00Z", ...use(0.875, 0.4321) },
        { at: "2026-12-05T07:00:00Z", ...use(null, null) },
      ],
    };
    // one column per series: availability, then utilisation
    expect(availabilityColumns(answer).slice(1)).toEqual([
      [87.5, null],
      [43.2, null],
    ]);
  });

  it("says durations as the control room reads them", () => {
    expect(formatDuration(45.4)).toBe("45 s");
    expect(formatDuration(425)).toBe("7 min 05 s");
    expect(formatDuration(3 * 3600 + 120)).toBe("3 h 02 min");
    expect(formatDuration(null)).toBe("–");
  });
});

describe("pool series", () => {
  it("aligns series on the union of their times, with gaps", () => {
    const { names, columns } = alignSeries({ b: [[2, 20]], a: [[1, 1], [3, 3]] });
    expect(names).toEqual(["a", "b"]);
    expect(columns).toEqual([[1, 2, 3], [1, null, 3], [null, 20, null]]);
  });

  const utilisation: Utilisation = {
    from: "",
    to: "",
    slices: {
      "node-a/cpu/1": [["2026-12-05T06:01:00Z", 0.25]],
      "node-a/cpu/0": [["2026-12-05T06:00:00Z", 0.8], ["2026-12-05T06:01:00Z", null]],
    },
    deployments: {
      fault: [{ at: "2026-12-05T06:00:00Z", replicas: 1, served_per_s: 9.5, mean_batch_rows: 16, latency_p50_ms: 12, latency_p99_ms: 40, queue_requests: 0 }],
    },
  };

  it("gives each slice's busy share in per cent", () => {
    const { names, columns } = sliceColumns(utilisation);
    expect(names).toEqual(["node-a/cpu/0", "node-a/cpu/1"]);
    expect(columns.slice(1)).toEqual([[80, null], [null, 25]]);
  });

  it("picks one figure of every deployment", () => {
    expect(deploymentColumns(utilisation, "latency_p99_ms").columns[1]).toEqual([40]);
    expect(deploymentColumns(utilisation, "mean_batch_rows").columns[1]).toEqual([16]);
  });
});

describe("each model's figures now", () => {
  it("sums the rate and takes the worst p99 over its replicas on every slice", () => {
    const replica = (deployment: string, p50: number, p99: number, batch: number | null): PoolReplica => ({
      deployment,
      model_id: `${deployment}@3`,
      engine: "onnxruntime",
      consuming: true,
      served_per_s: 9.5,
      mean_batch_rows: batch,
      latency_ms: { p50, p99, mean: p50 },
      queue_requests: 0,
      rejected_total: 0,
    });
    const slice = (key: string, replicas: PoolReplica[]): PoolSlice => ({
      key, name: key.split("/").slice(1).join("/"), device: "cpu", kind: "cpu", live: true, restarts: 0, compute_share: 0.5, memory_bytes: null, busy: 0.5, serving: [], assigned: [], share: null, replicas,
    });
    const node = (name: string, slices: PoolSlice[]): PoolNode => ({ name, up: true, host: "", heartbeat_at: null, draining: false, drained_by: null, drained_at: null, devices: [], slices });
    const figures = modelFigures([
      node("node-a", [slice("node-a/cpu/0", [replica("fault", 10, 40, 16)]), slice("node-a/cpu/1", [replica("eta", 5, 9, null)])]),
      node("node-b", [slice("node-b/cpu/0", [replica("fault", 20, 90, 8)])]),
    ]);
    expect(figures.get("fault")).toEqual({ slices: ["node-a/cpu/0", "node-b/cpu/0"], servedPerS: 19, latencyP99Ms: 90, latencyP50Ms: 15, meanBatchRows: 12 });
    expect(figures.get("eta")!.meanBatchRows).toBeNull();
  });
});
