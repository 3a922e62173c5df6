// A few lines of DOM building instead of a framework: the panels are small lists, re-rendered
// whole when their data changes (a handful of times a second at most); the trucks never touch
// the DOM (they live on the map's GPU layer).

type Child = Node | string | null | undefined | false;
type Attributes = Record<string, string | number | boolean | ((event: Event) => void) | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attributes: Attributes = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") {
      element.addEventListener(name.replace(/^on/, ""), value);
    } else if (name === "class") {
      element.className = String(value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child);
  }
  return element;
}

/** Re-renders held while a pointer is pressed inside the element they would replace. A browser
 * fires a click only when the press and the release land on the same element, so a panel that
 * its socket re-drew between the two swallowed the click (seen: an operator's Revoke that
 * opened nothing). Each element's last held render runs once the click has been handled. */
export class HeldRenders {
  private pressed: Node | null = null;
  private readonly held = new Map<Element, () => void>();

  press(target: Node | null): void {
    this.pressed = target;
  }

  release(): void {
    this.pressed = null;
    const renders = [...this.held.values()];
    this.held.clear();
    for (const render of renders) render();
  }

  /** Render now, or at the release when the press is inside ``element``. */
  run(element: Pick<Element, "contains">, render: () => void): void {
    if (this.pressed && element.contains(this.pressed)) this.held.set(element as Element, render);
    else render();
  }
}

const renders = new HeldRenders();
if (typeof document !== "undefined") {
  document.addEventListener("pointerdown", (event) => renders.press(event.target as Node | null), true);
  // After the click: the browser dispatches pointerup, mouseup and click in one go.
  const release = () => window.setTimeout(() => renders.release(), 0);
  document.addEventListener("pointerup", release, true);
  document.addEventListener("pointercancel", release, true);
  window.addEventListener("blur", release);
}

/** Replace an element's children, skipping the absent ones (null, undefined, false); held while
 * a pointer is pressed inside it (HeldRenders). */
export function fill(element: HTMLElement, ...children: Child[]): void {
  const nodes = children.filter((c): c is Node | string => c !== null && c !== undefined && c !== false);
  renders.run(element, () => element.replaceChildren(...nodes));
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from index.html`);
  return element as T;
}

/** "12 s ago", "3 min ago" from an ISO time, against the browser's clock (coarse on purpose:
 * alert times come from the server, whose clock may differ by a little). */
export function since(iso: string, now = Date.now()): string {
  const seconds = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.floor(seconds)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export interface ConfirmOptions {
  title: string;
  body: string;
  confirmLabel: string;
  danger?: boolean;
  /** Ask for a text (a reason, a user name); the dialog answers with it, or null if cancelled. */
  input?: { label: string; value?: string; required?: boolean };
}

/** A modal confirmation on the page's one <dialog>: resolves with the text typed (or "" when
 * no input was asked for), or null when cancelled. */
export function confirmDialog(dialog: HTMLDialogElement, options: ConfirmOptions): Promise<string | null> {
  return new Promise((resolve) => {
    const input = options.input
      ? h("input", { type: "text", name: "answer", value: options.input.value ?? "", required: options.input.required ?? false, autocomplete: "off" })
      : null;
    const form = h(
      "form",
      { method: "dialog" },
      h("h2", {}, options.title),
      h("p", {}, options.body),
      input ? h("label", {}, options.input!.label, input) : null,
      h(
        "div",
        { class: "dialog-buttons" },
        h("button", { type: "button", class: "secondary", value: "cancel", onclick: () => dialog.close("cancel") }, "Cancel"),
        h("button", { type: "submit", class: options.danger ? "danger" : "primary", value: "ok" }, options.confirmLabel),
      ),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (input && options.input?.required && !input.value.trim()) {
        input.focus();
        return;
      }
      dialog.close("ok");
    });
    dialog.replaceChildren(form);
    dialog.onclose = () => {
      dialog.onclose = null;
      resolve(dialog.returnValue === "ok" ? (input ? input.value.trim() : "") : null);
    };
    dialog.returnValue = "";
    dialog.showModal();
    (input ?? form.querySelector<HTMLButtonElement>("button.secondary"))?.focus();
  });
}
