// The REST API with the user's session: JSON in and out, Django's CSRF token on every write,
// a refusal turned into an error whose message the page can show as it is.

/** Django's CSRF cookie (set on the dashboard's page by ensure_csrf_cookie). */
export function csrfToken(cookies: string): string {
  for (const part of cookies.split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === "csrftoken") return decodeURIComponent(value.join("="));
  }
  return "";
}

/** What the server said when it refused, in words: DRF's `{"detail": ...}` or its per-field
 * messages (`{"reason": ["This field is required."]}`). */
export function refusalMessage(status: number, body: unknown): string {
  let detail = "";
  if (body && typeof body === "object") {
    const record = body as Record<string, unknown>;
    if (typeof record["detail"] === "string") {
      detail = record["detail"];
    } else if (Array.isArray(record["detail"])) {
      detail = record["detail"].join(" ");
    } else {
      detail = Object.entries(record)
        .map(([field, messages]) => `${field}: ${Array.isArray(messages) ? messages.join(" ") : String(messages)}`)
        .join("; ");
    }
  } else if (typeof body === "string") {
    detail = body.slice(0, 200);
  }
  const what = status === 403 ? "Refused by the server" : status === 409 ? "Not possible now" : "The server answered";
  return `${what} (${status})${detail ? `: ${detail}` : ""}`;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    super(refusalMessage(status, body));
    this.name = "ApiError";
  }
}

/** Where a request that finds no session goes: the login page, then back here. */
export function loginUrl(location: { pathname: string; search: string; hash: string }): string {
  return `/login/?next=${encodeURIComponent(location.pathname + location.search + location.hash)}`;
}

export async function api<T>(path: string, init: { method?: string; body?: unknown } = {}): Promise<T> {
  const method = init.method ?? "GET";
  const headers: Record<string, string> = { Accept: "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    headers["X-CSRFToken"] = csrfToken(document.cookie);
  }
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON (a proxy's error page): keep the text for the message
  }
  if (response.status === 401) {
    // The session ended (logged out elsewhere, expired): log in again and come back.
    window.location.assign(loginUrl(window.location));
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body as T;
}
