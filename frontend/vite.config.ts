/// <reference types="vitest/config" />
// The dashboard's build: TypeScript checked by `tsc --noEmit` first (package.json), then bundled
// by Vite into dist/, which Django serves: index.html at / (fleet/dashboard.py), the assets as
// static files under /static/dashboard/ (STATICFILES_DIRS in fleet/settings.py).
import { defineConfig } from "vite";

// `npm run dev` serves the page itself and hands everything else to Django on :8000
// (HAULMIND_URL to change it). The Host header is kept (no changeOrigin) so Django's CSRF
// check sees the page's own origin on POSTs.
const django = process.env.HAULMIND_URL ?? "http://127.0.0.1:8000";
const toDjango = { target: django, changeOrigin: false };

export default defineConfig(({ command }) => ({
  base: command === "build" ? "/static/dashboard/" : "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // No source maps in the shipped build: they would double what the control room downloads.
    sourcemap: false,
    chunkSizeWarningLimit: 700,
  },
  server: {
    port: 5173,
    proxy: {
      "/api": toDjango,
      "/login": toDjango,
      "/logout": toDjango,
      "/admin": toDjango,
      "/static": toDjango,
      "/ws": { ...toDjango, ws: true },
    },
  },
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
  },
}));
