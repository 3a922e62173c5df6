// The dashboard's views (Live, Production, Pool, Replay), chosen from the header's nav and kept
// in the URL's hash (#production), so a reload or a shared link opens the same view. Each view
// other than Live is built the first time it is shown and told when it is shown and hidden (a
// hidden view stops its timers and animation).

export const VIEWS = ["live", "production", "pool", "replay"] as const;
export type ViewName = (typeof VIEWS)[number];

export const VIEW_LABELS: Record<ViewName, string> = {
  live: "Live",
  production: "Production",
  pool: "Pool",
  replay: "Replay",
};

/** The view a hash names ("#pool", "#replay?x" both work); Live for anything else. */
export function viewFromHash(hash: string): ViewName {
  const name = hash.replace(/^#/, "").split(/[?&/]/)[0]!.toLowerCase();
  return (VIEWS as readonly string[]).includes(name) ? (name as ViewName) : "live";
}

export interface View {
  show(): void;
  hide(): void;
}

export class Router {
  private readonly built = new Map<ViewName, View>();
  private current: ViewName | null = null;

  constructor(
    private readonly nav: HTMLElement,
    private readonly sections: Record<ViewName, HTMLElement>,
    private readonly build: (name: ViewName, root: HTMLElement) => View | null,
  ) {}

  start(): void {
    this.nav.replaceChildren(
      ...VIEWS.map((name) => {
        const link = document.createElement("a");
        link.href = `#${name}`;
        link.textContent = VIEW_LABELS[name];
        link.dataset["view"] = name;
        return link;
      }),
    );
    window.addEventListener("hashchange", () => this.go(viewFromHash(window.location.hash)));
    this.go(viewFromHash(window.location.hash));
  }

  go(name: ViewName): void {
    if (name === this.current) return;
    if (this.current) this.built.get(this.current)?.hide();
    for (const view of VIEWS) this.sections[view].hidden = view !== name;
    for (const link of this.nav.querySelectorAll<HTMLAnchorElement>("a")) {
      link.classList.toggle("active", link.dataset["view"] === name);
      if (link.dataset["view"] === name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    this.current = name;
    let view = this.built.get(name);
    if (!view) {
      view = this.build(name, this.sections[name]) ?? undefined;
      if (view) this.built.set(name, view);
    }
    view?.show();
  }

  view(name: ViewName): View | undefined {
    return this.built.get(name);
  }
}
