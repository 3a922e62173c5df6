// The site's websocket (/ws/sites/<id>/, fleet/live/consumers.py): authenticated by the
// session cookie, reconnected with backoff when the link drops, and honest about its state.

import type { LiveMessage } from "./types";

// The consumer's application close codes (4000-4999, RFC 6455).
export const CLOSE_UNAUTHENTICATED = 4401;
export const CLOSE_FORBIDDEN = 4403;
export const CLOSE_NOT_FOUND = 4404;

/** Wait before reconnect attempt `attempt` (1, 2, ...): doubling from 0.5 s to at most 10 s,
 * with jitter so a hundred dashboards do not all knock at once after a server restart. */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(10_000, 500 * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.75 + 0.5 * random()));
}

/** What to do when the socket closes with `code`. */
export function onClose(code: number): "login" | "give-up" | "retry" {
  if (code === CLOSE_UNAUTHENTICATED) return "login";
  if (code === CLOSE_FORBIDDEN || code === CLOSE_NOT_FOUND) return "give-up";
  return "retry";
}

/** The events of one frame, in order. The server gathers what happens between two frames
 * (at most 10 a second per socket, fleet/live/frames.py) and sends several as one `batch`. */
export function unbatch(frame: LiveMessage): LiveMessage[] {
  if (frame.event === "batch" && Array.isArray(frame.data)) return frame.data as LiveMessage[];
  return [frame];
}

export function socketUrl(location: { protocol: string; host: string }, siteId: string): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws/sites/${siteId}/`;
}

export type LinkState = "connecting" | "live" | "reconnecting" | "refused";

export interface LiveHandlers {
  /** Each event, in order; `frame` is called once per websocket frame, before its events. */
  message(message: LiveMessage): void;
  frame?(events: number): void;
  /** The ms a frame took to parse and handle, all its events included. */
  handled?(ms: number): void;
  state(state: LinkState, detail?: string): void;
  /** Called on every (re)connection, after `hello`: what was missed must be read again. */
  resync(): void;
  login(): void;
}

export class LiveLink {
  private socket: WebSocket | null = null;
  private attempt = 0;
  private timer: number | undefined;
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly handlers: LiveHandlers,
  ) {}

  open(): void {
    this.closed = false;
    this.handlers.state(this.attempt ? "reconnecting" : "connecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onmessage = (event: MessageEvent<string>) => {
      const started = performance.now();
      this.receive(event.data);
      this.handlers.handled?.(performance.now() - started);
    };
    socket.onclose = (event: CloseEvent) => {
      if (this.closed || socket !== this.socket) return;
      const next = onClose(event.code);
      if (next === "login") {
        this.handlers.login();
      } else if (next === "give-up") {
        this.handlers.state("refused", event.code === CLOSE_FORBIDDEN ? "no access to this site" : "no such site");
      } else {
        this.attempt += 1;
        const wait = backoffMs(this.attempt);
        this.handlers.state("reconnecting", `retrying in ${Math.ceil(wait / 1000)} s`);
        this.timer = window.setTimeout(() => this.open(), wait);
      }
    };
  }

  private receive(data: string): void {
    let message: LiveMessage;
    try {
      message = JSON.parse(data) as LiveMessage;
    } catch {
      return;
    }
    if (message.event === "hello") {
      this.attempt = 0;
      this.handlers.state("live");
      this.handlers.resync();
      return;
    }
    const events = unbatch(message);
    this.handlers.frame?.(events.length);
    for (const event of events) this.handlers.message(event);
  }

  /** Tell the server something about this page (the trucks it watches); dropped while the
   * socket is not open: the page says it again on every (re)connection (`resync`). */
  send(message: Record<string, unknown>): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  close(): void {
    this.closed = true;
    window.clearTimeout(this.timer);
    this.socket?.close();
    this.socket = null;
  }
}

/**
 * Runs `task` at most once per `intervalMs`, the last request always honoured: a burst of
 * events asking for a re-read (a hundred acknowledgements) becomes one request now and one
 * at the end of the burst.
 */
export class Throttle {
  private last = -Infinity;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly task: () => void,
    private readonly intervalMs: number,
    private readonly clock: () => number = () => Date.now(),
  ) {}

  request(): void {
    if (this.timer !== undefined) return;
    const wait = this.last + this.intervalMs - this.clock();
    if (wait <= 0) {
      this.run();
    } else {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.run();
      }, wait);
    }
  }

  private run(): void {
    this.last = this.clock();
    this.task();
  }

  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
