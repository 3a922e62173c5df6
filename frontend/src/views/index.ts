// The views beside the live one, wired to the header's nav (router.ts). main.ts calls
// startViews once it knows the site and the user.

import { byId } from "../dom";
import type { Me, Site } from "../types";
import { PoolView } from "./pool";
import { ProductionView } from "./production";
import { ReplayView } from "./replay";
import { Router, type View, type ViewName } from "./router";

export function startViews(site: Site, me: Me): Router {
  const dialog = byId<HTMLDialogElement>("confirm");
  const sections: Record<ViewName, HTMLElement> = {
    live: byId("view-live"),
    production: byId("view-production"),
    pool: byId("view-pool"),
    replay: byId("view-replay"),
  };
  const router = new Router(byId("views-nav"), sections, (name, root): View | null => {
    switch (name) {
      case "production":
        return new ProductionView(root, site.id);
      case "pool":
        return new PoolView(root, dialog, me);
      case "replay":
        return new ReplayView(root, site.id);
      default:
        return null; // the live view is main.ts's Dashboard, always running
    }
  });
  router.start();
  (window as unknown as { haulmindViews: Router }).haulmindViews = router;
  return router;
}
