import { describe, expect, it } from "vitest";

import { DrawProbe, MAX_SAMPLES } from "../src/probe";

describe("the dashboard benchmark's probe", () => {
  it("keeps nothing until started", () => {
    const probe = new DrawProbe();
    probe.updated(3, [1_000]);
    probe.rendered(5, 1_200);
    probe.longFrame(80);
    expect(probe.take()).toEqual({ drawMs: [], lagMs: [], longFramesMs: [] });
  });

  it("adds the frames handled and updates applied since the last render to the render that follows them", () => {
    const probe = new DrawProbe();
    probe.start();
    probe.handled(1);
    probe.updated(1, [1_000, 1_050]);
    probe.updated(1, [1_100]);
    probe.rendered(5, 1_300);
    probe.rendered(4, 1_400); // a render with no update in between: its own time only
    expect(probe.take()).toEqual({ drawMs: [8, 4], lagMs: [300, 250, 200], longFramesMs: [] });
  });

  it("starts over on take and stops on stop", () => {
    const probe = new DrawProbe();
    probe.start();
    probe.updated(2, [1_000]);
    probe.longFrame(70);
    expect(probe.take().longFramesMs).toEqual([70]);
    probe.rendered(5, 1_300); // the update before take() is not this render's
    expect(probe.take()).toEqual({ drawMs: [5], lagMs: [], longFramesMs: [] });
    probe.stop();
    probe.rendered(5, 1_300);
    expect(probe.take().drawMs).toEqual([]);
  });

  it("keeps at most MAX_SAMPLES between two reads", () => {
    const probe = new DrawProbe();
    probe.start();
    for (let i = 0; i < MAX_SAMPLES + 10; i += 1) probe.rendered(1, 0);
    expect(probe.take().drawMs.length).toBe(MAX_SAMPLES);
  });
});
