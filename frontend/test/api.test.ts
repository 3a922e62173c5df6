import { describe, expect, it, vi } from "vitest";

import { csrfToken, loginUrl, refusalMessage } from "../src/api";
import { Throttle, backoffMs, onClose, socketUrl, unbatch } from "../src/live";

describe("talking to the server", () => {
  it("reads Django's CSRF cookie", () => {
    expect(csrfToken("sessionid=abc; csrftoken=T0k%3Den; other=1")).toBe("T0k=en");
    expect(csrfToken("sessionid=abc")).toBe("");
  });

  it("shows a refusal in the server's own words", () => {
    expect(refusalMessage(403, { detail: "You do not have permission to perform this action." })).toBe(
      "Refused by the server (403): You do not have permission to perform this action.",
    );
    expect(refusalMessage(400, { reason: ["This field may not be blank."] })).toBe(
      "The server answered (400): reason: This field may not be blank.",
    );
    expect(refusalMessage(409, { detail: "No all-stop is in force" })).toBe("Not possible now (409): No all-stop is in force");
  });

  it("sends a user without a session to the login page and back", () => {
    expect(loginUrl({ pathname: "/", search: "?site=abc", hash: "" })).toBe("/login/?next=%2F%3Fsite%3Dabc");
  });
});

describe("the live link", () => {
  it("backs off from half a second to at most ten, with jitter", () => {
    expect(backoffMs(1, () => 0.5)).toBe(500);
    expect(backoffMs(3, () => 0.5)).toBe(2000);
    expect(backoffMs(20, () => 0.5)).toBe(10_000);
    expect(backoffMs(1, () => 0)).toBe(375);
  });

  it("logs in again on 4401, gives up on 4403/4404, retries otherwise", () => {
    expect(onClose(4401)).toBe("login");
    expect(onClose(4403)).toBe("give-up");
    expect(onClose(4404)).toBe("give-up");
    expect(onClose(1006)).toBe("retry");
  });

  it("unpacks a frame of several events, in order, and passes a single event through", () => {
    const positions = { event: "positions", data: { trucks: [] } };
    const alert = { event: "alert", data: { id: 1 } };
    expect(unbatch({ event: "batch", data: [positions, alert] })).toEqual([positions, alert]);
    expect(unbatch(alert)).toEqual([alert]);
  });

  it("builds the socket's address from the page's", () => {
    expect(socketUrl({ protocol: "https:", host: "fms.example:8443" }, "s1")).toBe("wss://fms.example:8443/ws/sites/s1/");
    expect(socketUrl({ protocol: "http:", host: "127.0.0.1:8000" }, "s1")).toBe("ws://127.0.0.1:8000/ws/sites/s1/");
  });

  it("turns a burst of re-read requests into one now and one at the end", () => {
    vi.useFakeTimers();
    let now = 0;
    let runs = 0;
    const throttle = new Throttle(() => runs++, 500, () => now);
    throttle.request();
    for (let i = 0; i < 50; i++) throttle.request();
    expect(runs).toBe(1);
    now = 500;
    vi.advanceTimersByTime(500);
    expect(runs).toBe(2);
    vi.useRealTimers();
  });
});

describe("the site list", () => {
  it("reads the sites from the API's GeoJSON, by name", async () => {
    const { parseSites } = await import("../src/types");
    expect(
      parseSites({
        type: "FeatureCollection",
        features: [
          { id: "b", properties: { name: "Pit B", slug: "b" } },
          { id: "a", properties: { name: "Pit A", slug: "a" } },
        ],
      }),
    ).toEqual([
      { id: "a", name: "Pit A", slug: "a" },
      { id: "b", name: "Pit B", slug: "b" },
    ]);
  });
});
