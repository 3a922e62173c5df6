"""``manage.py bench dashboard --trucks 1000 --json``: one operator dashboard in headless Chromium
(Playwright) against the real ASGI server, the real channel layer and the real database.

Two sources, reported apart, because this machine cannot carry 1,000 trucks at 5 Hz through
the whole stack (ingest stores about 2,300 msg/s flat out, docs/benchmarks.md):

- **synthetic** (the top-level keys): ``--trucks`` trucks at ``--truck-hz`` pushed into the
  broadcast module exactly as ingest's ``LiveFeed`` hands them over: every
  ``LIVE_POSITION_INTERVAL_MS`` one ``positions`` event with each truck due since the last, its
  timestamp the time it was due. From there on it is the product's path: channel layer, the
  socket's coalescing (``fleet/live/frames.py``), the page.
- **socket only** (``socket_only``): the same synthetic feed read by a plain websocket client
  in this process instead of the page, before the browser starts: the server's share (channel
  layer, coalescing, JSON) without the browser's.
- **real** (``real``, ``real_trucks``, ``real_rate``): load-generator trucks (their own MQTT
  logins) through the broker and a real ``manage.py ingest`` replica, at each rate of
  ``--real-rates`` in turn until one does not hold (stored < 99 % of sent, or sent < 80 % of
  offered).

Per source, over ``--seconds`` after a warm-up: websocket frames and their bytes as Chromium
received them (Playwright's websocket events), the truck positions they carry, and from the page
(``window.haulmindDashboard.probe``, frontend/src/probe.ts) each map render's main-thread time
with the updates applied before it and each drawn position's age since the truck's timestamp.

The bench keeps to its own site (``BENCH_SLUG``), trucks (``BD-0001``...) and viewer user.
Playwright's sync API runs an event loop in this thread, where Django refuses ORM calls, so
database work during the browser session runs in a thread of its own (``_orm``).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import connection, connections

from fleet.accounts.roles import VIEWER
from fleet.live.broadcast import broadcast_now
from fleet.live.groups import site_group
from fleet.mine.mapfile import import_site_map
from fleet.mine.models import Site
from fleet.protocol import topics, wire
from fleet.telemetry import loadgen, replicas
from fleet.telemetry.bench import LAT0, LON0, _bench_map, bench_trucks, free_port, wait_for_metrics
from fleet.telemetry.models import Position
from fleet.vehicles.credentials import issue_credentials
from fleet.vehicles.logins import BrokerAdminError, reconcile_logins
from fleet.vehicles.models import Equipment
from fleet.vehicles.mqtt import broker_address

BENCH_SLUG = "bench-dashboard"
USERNAME = "bench-dashboard"
CHROMIUM = "/usr/bin/chromium"
WARM_UP_S = 3.0
SPREAD_DEG = 0.003  # the synthetic trucks stand on a grid of +-300 m around the site's centre
Log = Callable[[str], None]


# --- set-up ------------------------------------------------------------------------------------


def provision_site(trucks: int) -> tuple[Site, list[Equipment]]:
    """The bench's own site (the ingest bench's square pit under another slug) and trucks."""
    collection = _bench_map()
    collection["haulmind"]["site"] = {
        "name": "Dashboard benchmark",
        "slug": BENCH_SLUG,
        "utmSrid": 32719,
    }
    import_site_map(collection)
    site = Site.objects.get(slug=BENCH_SLUG)
    fleet = bench_trucks(site, trucks, prefix="BD", key="bench-dashboard")
    return site, fleet


def viewer_login(site: Site) -> tuple[str, str]:
    """The bench's viewer, a member of its site only, with a fresh password for this run."""
    user, _ = User.objects.get_or_create(username=USERNAME)
    password = secrets.token_urlsafe(18)
    user.set_password(password)
    user.is_active = True
    user.save()
    user.groups.add(Group.objects.get(name=VIEWER))
    user.sites.set([site])
    return USERNAME, password


def mqtt_identities(trucks: list[Equipment], site: Site) -> list[tuple[str, str, str]]:
    """Fresh MQTT logins for the trucks that publish through the broker."""
    identities = []
    for truck in trucks:
        issued = issue_credentials(truck)
        topic = topics.up_topic(site.slug, str(truck.id), "MachinePositionV1")
        identities.append((str(truck.id), issued.mqtt_password, topic))
    try:
        missing = reconcile_logins().missing
    except BrokerAdminError as exc:
        raise RuntimeError(f"the broker's logins cannot be managed: {exc}") from exc
    if missing:
        raise RuntimeError(f"the broker lacks the logins of {len(missing)} bench truck(s)")
    return identities


def forget_old_sockets(site: Site) -> None:
    """Empty the bench site's channel-layer group: a socket whose server was killed (an earlier
    run stopped short) stays a member for a day (channels_redis' group expiry), and every
    broadcast would still be written out for it."""
    import redis

    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5).delete(
        f"{prefix}:group:{site_group(site.id)}"
    )


def _orm(function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function`` in a thread with no event loop, then close that thread's connection."""

    def call() -> Any:
        try:
            return function(*args)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


class Server:
    """uvicorn serving fleet.asgi:application (as ``manage.py serve`` does) on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        log_path = Path(settings.VAR_DIR) / "bench-dashboard-server.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(  # noqa: S603 - our own server
            [
                sys.executable,
                "-m",
                "uvicorn",
                "fleet.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--lifespan",
                "off",
                "--log-level",
                "warning",
            ],
            cwd=settings.BASE_DIR,
            stdout=log_path.open("w"),
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait()

    def _wait(self, limit_s: float = 60.0) -> None:
        import socket

        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the ASGI server exited; see var/bench-dashboard-server.log")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise RuntimeError("the ASGI server did not start within a minute")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the sources -------------------------------------------------------------------------------


class SyntheticFeed(threading.Thread):
    """Positions of ``trucks`` at ``hz`` each, handed to ``broadcast_now`` every
    ``LIVE_POSITION_INTERVAL_MS`` as ingest's ``LiveFeed.flush`` does: one ``positions`` event
    holding each truck due since the last flush (its newest), stamped with when it was due.
    Each truck circles its own point of a grid, so every update moves it."""

    def __init__(self, site_id: uuid.UUID, truck_ids: list[str], hz: float) -> None:
        super().__init__(daemon=True)
        self.site_id, self.truck_ids, self.period = site_id, truck_ids, 1.0 / hz
        self.interval = settings.LIVE_POSITION_INTERVAL_MS / 1000
        self.stop_event = threading.Event()
        self.sent = 0  # truck positions handed over
        self.newest: dict[str, str] = {}  # equipmentId -> the newest "at" handed over
        side = math.ceil(math.sqrt(len(truck_ids)))
        step = 2 * SPREAD_DEG / max(1, side - 1)
        self.home = [
            (LON0 - SPREAD_DEG + (i % side) * step, LAT0 - SPREAD_DEG + (i // side) * step)
            for i in range(len(truck_ids))
        ]

    def run(self) -> None:
        started = time.time()
        # Trucks report out of step with each other: truck i's first report is i/N of a period in.
        due = [started + i / len(self.truck_ids) * self.period for i in range(len(self.truck_ids))]
        tick = started
        while not self.stop_event.is_set():
            tick += self.interval
            time.sleep(max(0.0, tick - time.time()))
            now = time.time()
            items = {}
            for i, truck_id in enumerate(self.truck_ids):
                while due[i] <= now:
                    items[truck_id] = self._position(i, due[i])
                    due[i] += self.period
            if items:
                broadcast_now(self.site_id, "positions", {"trucks": list(items.values())})
                self.sent += len(items)
                self.newest.update({k: v["at"] for k, v in items.items()})

    def _position(self, i: int, at: float) -> dict[str, Any]:
        angle = (at / 20.0 + i) % (2 * math.pi)  # once round a 20 m circle every ~2 minutes
        lon, lat = self.home[i]
        return {
            "equipmentId": self.truck_ids[i],
            "lon": lon + 0.0002 * math.cos(angle),
            "lat": lat + 0.0002 * math.sin(angle),
            "elevation": 3000.0,
            "heading": int(math.degrees(angle + math.pi / 2)) % 360,
            "speedKmh": 30.0,
            "at": wire.format_timestamp(datetime.fromtimestamp(round(at, 3), UTC)),
            "roadRevision": None,
        }

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


class LoadgenFeed:
    """Load-generator trucks publishing through the broker (``loadgen.publish_positions``, the
    ingest bench's publishers) until stopped."""

    def __init__(self, identities: list[tuple[str, str, str]], rate: float, processes: int):
        address = broker_address()
        context = multiprocessing.get_context("spawn")
        self.sent, self.stop_event = context.Value("q", 0), context.Event()
        processes = max(1, min(processes, len(identities)))
        # Each MQTT connection is a password check at the broker: give them time to connect.
        self.start_at = time.time() + 3.0 + 0.03 * len(identities) / processes
        self.workers = [
            context.Process(
                target=loadgen.publish_positions,
                args=(
                    identities[i::processes],
                    address.host,
                    address.port,
                    3600.0,
                    rate / processes,
                    self.sent,
                    self.start_at,
                    1,
                    True,
                    self.stop_event,
                ),
            )
            for i in range(processes)
        ]
        for worker in self.workers:
            worker.start()

    def stop(self) -> int:
        """Stop publishing; the positions the broker acknowledged."""
        self.stop_event.set()
        self.stopped_at = time.time()
        for worker in self.workers:
            worker.join(60)
        return int(self.sent.value)


# --- the page ----------------------------------------------------------------------------------


class FrameWatch:
    """The dashboard socket's frames as Chromium received them: count, bytes, truck positions."""

    def __init__(self, page: Any) -> None:
        self.recording = False
        self.frames = 0
        self.bytes = 0
        self.positions = 0
        self.trucks: set[str] = set()
        self.sockets = 0  # opened by the page: more than one means the link was lost
        page.on("websocket", self._socket)

    def _socket(self, socket: Any) -> None:
        self.sockets += 1
        socket.on("framereceived", self._frame)

    def _frame(self, payload: str | bytes) -> None:
        if not self.recording:
            return
        self.frames += 1
        self.bytes += len(payload.encode() if isinstance(payload, str) else payload)
        items = _positions(json.loads(payload))
        self.positions += len(items)
        self.trucks.update(item["equipmentId"] for item in items)

    def start(self) -> None:
        self.frames = self.bytes = self.positions = 0
        self.trucks = set()
        self.recording = True


PROBE = "window.haulmindDashboard.probe"


def open_dashboard(
    browser: Any, base: str, site: Site, login: tuple[str, str]
) -> tuple[Any, FrameWatch]:
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    watch = FrameWatch(page)
    page.goto(f"{base}/login/?next=/%3Fsite%3D{site.id}")
    page.fill("#id_username", login[0])
    page.fill("#id_password", login[1])
    page.click("button[type=submit]")
    page.wait_for_function(
        "() => document.querySelector('#link-state')?.dataset.state === 'live'", timeout=60_000
    )
    return page, watch


def _renderer(page: Any) -> str:
    return page.evaluate(
        """() => { const gl = document.createElement('canvas').getContext('webgl2')
            || document.createElement('canvas').getContext('webgl');
          if (!gl) return 'no WebGL';
          const info = gl.getExtension('WEBGL_debug_renderer_info');
          return info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL)
                      : gl.getParameter(gl.RENDERER); }"""
    )


def measure(page: Any, watch: FrameWatch, seconds: float, server: Server | None) -> dict[str, Any]:
    """The page and its socket over ``seconds`` from now (and ``server``'s CPU, if ours)."""
    server_cpu_s = server.cpu_s() if server else 0.0
    samples: dict[str, list[float]] = {"drawMs": [], "lagMs": [], "longFramesMs": []}
    positions_before = page.evaluate("() => window.haulmindDashboard.stats.positions")
    page.evaluate(f"() => {PROBE}.start()")
    watch.start()
    sockets_before = watch.sockets
    started = time.monotonic()
    while (left := seconds - (time.monotonic() - started)) > 0:
        page.wait_for_timeout(min(5.0, left) * 1000)
        for key, values in page.evaluate(f"() => {PROBE}.take()").items():
            samples[key].extend(values)
    watch.recording = False
    elapsed = time.monotonic() - started
    page.evaluate(f"() => {PROBE}.stop()")
    page_positions = page.evaluate("() => window.haulmindDashboard.stats.positions")
    return {
        "seconds": round(elapsed, 1),
        # The ASGI server's share of one core over the window (socket coalescing, JSON, deflate).
        "server_cpu_pct": (
            round((server.cpu_s() - server_cpu_s) / elapsed * 100) if server else None
        ),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "frames_per_s": round(watch.frames / elapsed, 2),
        "bytes_per_frame": round(watch.bytes / max(1, watch.frames)),
        "updates_per_s": round(watch.positions / elapsed),
        "page_updates_per_s": round((page_positions - positions_before) / elapsed),
        "trucks_in_frames": len(watch.trucks),
        "lag_p50_ms": _percentile(samples["lagMs"], 50),
        "lag_p95_ms": _percentile(samples["lagMs"], 95),
        "draw_p50_ms": _percentile(samples["drawMs"], 50),
        "draw_p95_ms": _percentile(samples["drawMs"], 95),
        "renders_per_s": round(len(samples["drawMs"]) / elapsed, 1),
        "long_frames": len(samples["longFramesMs"]),
        "long_frame_p95_ms": _percentile(samples["longFramesMs"], 95),
        "reconnections": watch.sockets - sockets_before,
    }


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def trucks_missed(page: Any, newest: dict[str, str]) -> int:
    """Trucks whose newest handed-over position the page does not hold (none may be dropped)."""
    return page.evaluate(
        """(newest) => { const trucks = window.haulmindDashboard.fleet.trucks;
            return Object.entries(newest).filter(([id, at]) =>
                !trucks.has(id) || trucks.get(id).at < Date.parse(at)).length; }""",
        newest,
    )


# --- the runs ----------------------------------------------------------------------------------


def run_socket_only(server: Server, site: Site, trucks: list[Equipment], options) -> dict:
    """The synthetic feed into a plain websocket client instead of the page: the server's part
    (channel layer, coalescing, JSON) without the browser's."""
    import asyncio

    from django.test import Client

    client = Client()
    client.force_login(User.objects.get(username=USERNAME))
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    connection.close()
    feed = SyntheticFeed(site.id, [str(t.id) for t in trucks], options["truck_hz"])
    frames: list[tuple[int, int]] = []  # (bytes, positions)
    lags: list[float] = []
    feed.start()
    try:
        elapsed = asyncio.run(_read_socket(server, site, cookie, options["seconds"], frames, lags))
    finally:
        feed.stop()
    return {
        "frames_per_s": round(len(frames) / elapsed, 2),
        "bytes_per_frame": round(sum(b for b, _ in frames) / max(1, len(frames))),
        "updates_per_s": round(sum(n for _, n in frames) / elapsed),
        "lag_p50_ms": _percentile(lags, 50),
        "lag_p95_ms": _percentile(lags, 95),
    }


async def _read_socket(server, site, cookie, seconds, frames, lags) -> float:
    import asyncio

    import websockets

    url = server.url.replace("http://", "ws://") + f"/ws/sites/{site.id}/"
    headers = {"Cookie": cookie}
    async with websockets.connect(
        url, additional_headers=headers, origin=server.url, max_size=None
    ) as socket:
        await asyncio.sleep(WARM_UP_S)
        while True:  # what queued up during the warm-up is not this window's
            try:
                await asyncio.wait_for(socket.recv(), 0.05)
            except TimeoutError:
                break
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            text = await asyncio.wait_for(socket.recv(), 10)
            now_ms = time.time() * 1000
            items = _positions(json.loads(text))
            frames.append((len(text.encode()), len(items)))
            lags.extend(now_ms - _epoch_ms(item["at"]) for item in items)
        return time.monotonic() - started


def _positions(message: dict) -> list[dict]:
    events = message["data"] if message.get("event") == "batch" else [message]
    return [item for e in events if e.get("event") == "positions" for item in e["data"]["trucks"]]


def _epoch_ms(at: str) -> float:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() * 1000


def run_synthetic(page, watch, server: Server | None, site: Site, trucks: list[Equipment], options):
    hz, seconds = options["truck_hz"], options["seconds"]
    feed = SyntheticFeed(site.id, [str(t.id) for t in trucks], hz)
    feed.start()
    try:
        page.wait_for_function(
            "(n) => window.haulmindDashboard.map.truckCount() >= n", arg=len(trucks), timeout=60_000
        )
        page.wait_for_timeout(WARM_UP_S * 1000)
        sent_before = feed.sent
        figures = measure(page, watch, seconds, server)
        offered = (feed.sent - sent_before) / figures["seconds"]
    finally:
        feed.stop()
    drain_s = wait_for_quiet(page)
    return {
        "trucks": len(trucks),
        "hz": hz,
        "offered_per_s": round(offered),
        **figures,
        "drain_s": drain_s,
        "trucks_missed": trucks_missed(page, feed.newest),
    }


def wait_for_quiet(page: Any, quiet_s: float = 2.0, limit_s: float = 60.0) -> float:
    """Seconds until the page has received no position for ``quiet_s`` (what was still queued
    for it when the source stopped has arrived)."""
    started = last_change = time.monotonic()
    last = -1
    while time.monotonic() - started < limit_s:
        count = page.evaluate("() => window.haulmindDashboard.stats.positions")
        if count != last:
            last, last_change = count, time.monotonic()
        elif time.monotonic() - last_change >= quiet_s:
            break
        page.wait_for_timeout(200)
    return round(last_change - started, 1)


def run_real(
    page, watch, server: Server, site, identities, options, log: Log
) -> list[dict[str, Any]]:
    """Each rate of ``--real-rates`` through the broker and one ingest replica, upwards, until
    one does not hold."""
    hz = options["truck_hz"]
    rates = [float(r) for r in str(options["real_rates"]).split(",") if r.strip()]
    metrics_port = free_port()
    name = f"bench-dashboard-{os.getpid()}"
    argv = ["ingest", "--replica", name, "--share-group", f"benchdash{os.getpid()}"]
    argv += ["--session-expiry", "60", "--metrics-port", str(metrics_port)]
    replica = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "manage.py", *argv],
        cwd=settings.BASE_DIR,
        stdout=(Path(settings.VAR_DIR) / "bench-dashboard-ingest.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    steps = []
    try:
        wait_for_metrics(metrics_port, replica)
        for rate in rates:
            count = min(len(identities), max(1, round(rate / hz)))
            log(f"dashboard: real path, {count} trucks at {hz:g} Hz through broker and ingest")
            step = _real_step(page, watch, server, identities[:count], count * hz, options)
            steps.append(step)
            log(f"dashboard: real {step}")
            if not step["held"]:
                break
    finally:
        replica.terminate()
        replica.wait(30)
        _orm(replicas.forget, name)
    return steps


def _real_step(page, watch, server: Server, identities, rate: float, options) -> dict[str, Any]:
    ids = [uuid.UUID(username) for username, _, _ in identities]
    since = datetime.now(UTC)
    feed = LoadgenFeed(identities, rate, options["publishers"])
    try:
        page.wait_for_timeout(max(0.0, feed.start_at - time.time() + WARM_UP_S) * 1000)
        figures = measure(page, watch, options["seconds"], server)
    finally:
        sent = feed.stop()
        published_s = feed.stopped_at - feed.start_at
    stored = _orm(_stored_when_quiet, ids, since, sent)
    return {
        "trucks": len(identities),
        "rate": round(rate),
        "sent": sent,
        "stored": stored,
        "sent_per_s": round(sent / max(1e-6, published_s)),
        # Held: the publishers offered the rate (each connection is a password check at the
        # broker: the first second may be short) and everything they sent was stored.
        "held": stored >= 0.99 * sent and sent >= 0.8 * rate * published_s,
        **figures,
    }


def _stored_when_quiet(ids: list[uuid.UUID], since: datetime, sent: int) -> int:
    """Positions stored since ``since``, once the count reaches ``sent`` or stops growing."""
    stored = Position.objects.filter(equipment_id__in=ids, sent_at__gte=since)
    last, last_change, deadline = -1, time.monotonic(), time.monotonic() + 60
    while time.monotonic() < deadline:
        now = stored.count()
        if now >= sent:
            return now
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > 10.0:  # a loaded replica pauses for seconds
            break
        time.sleep(0.2)
    return stored.count()


# --- the benchmark -----------------------------------------------------------------------------


def run(options: dict, log: Log) -> dict:
    from playwright import sync_api

    trucks = options["trucks"]
    rates = [float(r) for r in str(options["real_rates"]).split(",") if r.strip()]
    log(f"dashboard: provisioning {trucks} bench trucks")
    site, fleet = provision_site(trucks)
    real_count = min(trucks, round(max(rates, default=0) / options["truck_hz"]))
    identities = mqtt_identities(fleet[:real_count], site) if real_count else []
    login = viewer_login(site)
    forget_old_sockets(site)
    connection.close()
    server = Server()
    try:
        # Before the browser: Playwright's sync API holds an event loop in this thread.
        log(f"dashboard: synthetic into a plain websocket client, {trucks} trucks")
        socket_only = run_socket_only(server, site, fleet, options)
        log(f"dashboard: socket only {socket_only}")
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            )
            try:
                page, watch = open_dashboard(browser, server.url, site, login)
                renderer = _renderer(page)
                log(f"dashboard: synthetic, {trucks} trucks at {options['truck_hz']:g} Hz")
                synthetic = run_synthetic(page, watch, server, site, fleet, options)
                log(f"dashboard: synthetic {synthetic}")
                real = (
                    run_real(page, watch, server, site, identities, options, log)
                    if identities
                    else []
                )
                version = browser.version
            finally:
                browser.close()
    finally:
        server.stop()
    return _figures(synthetic, socket_only, real, renderer, version)


def _figures(synthetic: dict, socket_only: dict, real: list, renderer: str, version: str) -> dict:
    held = [step for step in real if step["held"]]
    best = held[-1] if held else None
    return {
        **{k: synthetic[k] for k in ("trucks", "hz")},
        **{
            k: synthetic[k]
            for k in (
                "frames_per_s",
                "bytes_per_frame",
                "updates_per_s",
                "lag_p95_ms",
                "draw_p95_ms",
            )
        },
        "synthetic": synthetic,
        "socket_only": socket_only,
        "real_trucks": best["trucks"] if best else 0,
        "real_rate": best["rate"] if best else 0,
        "real": best,
        "real_steps": real,
        "browser": f"Chromium {version} (headless, --disable-gpu)",
        "renderer": renderer,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
