import { describe, expect, it } from "vitest";

import { HeldRenders } from "../src/dom";

// An element that contains the nodes listed (the DOM's contains(), without a DOM).
function element(...inside: object[]) {
  return { contains: (node: unknown) => inside.includes(node as object) };
}

describe("renders held while a pointer is pressed", () => {
  it("hold a panel's re-render while the press is inside it, and run only its last at the release", () => {
    const renders = new HeldRenders();
    const button = {};
    const panel = element(button);
    const other = element();
    const done: string[] = [];
    renders.press(button as Node);
    renders.run(panel, () => done.push("panel 1"));
    renders.run(panel, () => done.push("panel 2"));
    renders.run(other, () => done.push("other"));
    expect(done).toEqual(["other"]);
    renders.release();
    expect(done).toEqual(["other", "panel 2"]);
    renders.run(panel, () => done.push("panel 3"));
    expect(done).toEqual(["other", "panel 2", "panel 3"]);
  });

  it("render at once when nothing is pressed", () => {
    const renders = new HeldRenders();
    let ran = false;
    renders.run(element({}), () => (ran = true));
    expect(ran).toBe(true);
  });
});
