"""The operator dashboard in a real Chromium against the real ASGI server and websocket, with
simulated trucks on the test's own broker feeding a real ingest replica and answering through
the real outbox (tests/control/conftest.py's LiveMine): trucks move on the map as they report,
an all-stop applied from the page reaches them and their acknowledgements show, a viewer's is
refused by the server, a critical alert's banner stays until someone acknowledges it.

Database rows are made before the browser starts and read after it stops (Playwright's sync API
runs an event loop in this thread, and Django refuses ORM calls while one runs); what must
happen in the middle of a browser session runs in a thread of its own.
"""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fleet.control import alerts
from fleet.control.models import Alert, AllStop
from fleet.mine.demo import create_demo_mine
from fleet.mine.models import Site
from fleet.vehicles.models import Equipment
from tests.browser.test_admin_map import PASSWORD, PageWatch, chromium
from tests.control.conftest import LiveMine, autonomous_trucks

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BUILD = Path(__file__).resolve().parents[2] / "frontend" / "dist" / "index.html"


@pytest.fixture
def dashboard(request, monkeypatch, isolated_redis_keys, transactional_db) -> str:
    """The ASGI server, reading the latest truck states under this test's Redis prefix (the
    register the page loads first is read from there). Transactional, named here: the server
    sees only committed rows, and a fixture asked for by name inside another is not known to
    pytest-django when it chooses how ``db`` wraps the test."""
    assert BUILD.exists(), "the dashboard is not built: scripts/bootstrap.sh (npm run build)"
    monkeypatch.setenv("REDIS_KEY_PREFIX", isolated_redis_keys)
    return request.getfixturevalue("asgi_server")


@pytest.fixture
def live_mine(mqtt_broker, site, tmp_path) -> Iterator[LiveMine]:
    mine = LiveMine(mqtt_broker, site, autonomous_trucks(site, 3), tmp_path / "credentials.json")
    mine.start()
    yield mine
    mine.stop()


def log_in(page, base: str, username: str) -> None:
    """The way a person comes in: the dashboard sends them to its login and back."""
    page.goto(f"{base}/")
    page.wait_for_url(f"{base}/login/?next=/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    page.wait_for_function(
        "() => document.querySelector('#link-state').dataset.state === 'live'", timeout=20_000
    )


def truck_positions(page) -> dict[str, list[float]]:
    return page.evaluate(
        """() => Object.fromEntries([...window.haulmindDashboard.fleet.trucks.values()]
            .filter((t) => t.lon !== null).map((t) => [t.name, [t.lon, t.lat]]))"""
    )


def confirm(page, reason: str) -> None:
    page.wait_for_selector("#confirm[open]")
    page.fill("#confirm input[name=answer]", reason)
    page.click("#confirm button[type=submit]")


ALL_STOP_RGB = (0xFF, 0x17, 0x44)  # frontend/src/legend.ts: AllStop
NOT_REPORTED_RGB = (0x9E, 0x9E, 0x9E)  # ... and the fallback colour, Unknown


def map_pixels(page) -> np.ndarray:
    """The map as it shows now: rows x columns x RGB."""
    image = Image.open(io.BytesIO(page.locator("#map").screenshot())).convert("RGB")
    return np.asarray(image).astype(int)


def hover_truck(page, name: str) -> str:
    """Point at a truck where the GPU layer drew it; the tooltip names what is there. A live
    truck's reported position wanders by a few pixels between two reports (GPS noise), so the
    pointer follows it a few times before giving up."""
    tooltip = page.locator(".map-tooltip")
    box = page.locator("#map").bounding_box()
    text = ""
    for _ in range(5):
        pixel = page.evaluate(
            """(name) => { const d = window.haulmindDashboard;
                return d.map.pixelOf(d.fleet.byName(name).id); }""",
            name,
        )
        page.mouse.move(box["x"] + pixel[0], box["y"] + pixel[1])
        page.wait_for_timeout(150)
        text = tooltip.inner_text() if tooltip.is_visible() else ""
        if text.startswith(name):
            break
        page.mouse.move(box["x"] + 5, box["y"] + box["height"] - 5)
    return text


def test_trucks_move_live_and_an_operators_all_stop_reaches_them_and_is_acknowledged(
    dashboard, live_mine, site, operator, viewer
):
    ARTIFACTS.mkdir(exist_ok=True)
    names = sorted(truck.name for truck in live_mine.trucks)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        watch = PageWatch(page)
        log_in(page, dashboard, operator.username)
        assert page.locator("#site-name").inner_text() == site.name

        # Every truck placed, then moving: positions come through the broker, ingest and the
        # websocket, not from the page's first read of the register alone.
        page.wait_for_function(
            "(n) => window.haulmindDashboard.map.truckCount() === n", arg=len(names)
        )
        first = truck_positions(page)
        page.wait_for_function(
            """(first) => [...window.haulmindDashboard.fleet.trucks.values()].some(
                (t) => first[t.name] && (t.lon !== first[t.name][0] || t.lat !== first[t.name][1]))""",
            arg=first,
            timeout=30_000,
        )
        assert page.evaluate("() => window.haulmindDashboard.stats.positions") > 0
        page.screenshot(path=ARTIFACTS / "dashboard-moving.png")

        # The all-stop, confirmed with a reason, reaches every truck; each acknowledgement shows.
        page.click("#allstop-apply")
        confirm(page, "person on the haul road")
        page.wait_for_selector("#allstop-headline:has-text('ALL-STOP IN FORCE')")
        page.wait_for_selector(
            f"#allstop-progress:has-text('{len(names)} of {len(names)} acknowledged')",
            timeout=30_000,
        )
        assert page.locator("#allstop-panel .chips.ok li").all_inner_texts() == names
        # ... and on the map each is drawn as held by it.
        page.wait_for_function(
            "() => [...window.haulmindDashboard.fleet.trucks.values()].every((t) => t.allStopped)"
        )
        # An operator may not lift it: the page says so, and the server would refuse.
        assert "needs the supervisor role" in page.locator("#allstop-panel").inner_text()
        # The GPU layer draws them in the all-stop's colour, whole (a shader that matched the
        # state as a float drew parts of the arrows in the fallback grey under SwiftShader).
        page.mouse.move(5, 5)
        page.wait_for_timeout(300)
        pixels = map_pixels(page)
        for name in names:
            x, y = page.evaluate(
                "(name) => { const d = window.haulmindDashboard; "
                "return d.map.pixelOf(d.fleet.byName(name).id).map(Math.round); }",
                name,
            )
            around = Counter(map(tuple, pixels[y - 14 : y + 15, x - 14 : x + 15].reshape(-1, 3)))
            assert around[ALL_STOP_RGB] >= 20, (name, around.most_common(6))
        assert not (pixels == NOT_REPORTED_RGB).all(axis=2).any()
        # The stopped trucks are where the GPU layer drew them.
        page.wait_for_function(
            "(name) => window.haulmindDashboard.fleet.byName(name).speedKmh < 1", arg=names[0]
        )
        assert "held by the all-stop" in hover_truck(page, names[0])
        page.screenshot(path=ARTIFACTS / "dashboard-all-stop.png")

        # A viewer's all-stop is refused by the server, and the page says so.
        viewer_page = browser.new_context().new_page()
        viewer_watch = PageWatch(viewer_page)
        log_in(viewer_page, dashboard, viewer.username)
        assert "may not apply an all-stop" in viewer_page.locator("#allstop-panel").inner_text()
        viewer_page.click("#allstop-apply")
        confirm(viewer_page, "I am only a viewer")
        notice = viewer_page.locator("#allstop-notice")
        notice.wait_for()
        assert notice.inner_text().startswith("Refused by the server (403)")
        viewer_page.screenshot(path=ARTIFACTS / "dashboard-viewer-refused.png")
        page.close()
        viewer_page.close()

    assert watch.errors == [] and watch.outside_requests() == []
    # The viewer's refused POST is the one error its page saw.
    assert [e for e in viewer_watch.errors if "/all-stop/" not in e] == []
    assert any("HTTP 403" in e and "/all-stop/" in e for e in viewer_watch.errors)
    assert list(AllStop.objects.values_list("mode", "actor")) == [("Apply", operator.username)]
    assert all(live_mine.fleet.engine.stopped[: len(names)])


def raise_critical_alert(truck: Equipment) -> None:
    """A rule's finding, raised from a thread of its own while the browser runs."""
    finding = alerts.Finding(
        kind="exclusion",
        severity="critical",
        source="compliance.exclusion",
        reason="inside exclusion zone 'Old bench' at 18 km/h",
    )
    done = threading.Thread(target=alerts.raise_alert, args=(truck, finding))
    done.start()
    done.join(10)


def test_a_critical_alert_stays_on_every_dashboard_until_one_operator_acknowledges_it(
    dashboard, site, operator, supervisor
):
    truck = autonomous_trucks(site, 1)[0]
    with chromium() as browser:
        pages = []
        for user in (operator, supervisor):
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            log_in(page, dashboard, user.username)
            pages.append(page)
        mine, theirs = pages
        raise_critical_alert(truck)
        for page in pages:
            banner = page.locator("#critical-banner")
            banner.wait_for(state="visible", timeout=10_000)
            assert "CRITICAL · HT-001" in banner.inner_text()
            assert "Old bench" in page.locator("#alerts-panel").inner_text()
        mine.wait_for_timeout(1_500)  # it stays: nothing but an acknowledgement clears it
        assert mine.locator("#critical-banner").is_visible()
        mine.screenshot(path=ARTIFACTS / "dashboard-critical-alert.png")

        mine.click("#critical-banner button")
        for page in pages:
            page.locator("#critical-banner").wait_for(state="hidden", timeout=10_000)
            page.wait_for_selector("#alerts-panel li.alert.acknowledged")
        # Resolved on the other dashboard, it leaves both lists.
        theirs.click("#alerts-panel li.alert button[data-action=resolve]")
        confirm(theirs, "zone checked, truck moved out")
        for page in pages:
            page.wait_for_selector("#alerts-panel li.alert", state="detached", timeout=10_000)
        for page in pages:
            page.close()
    alert = Alert.objects.get()
    assert alert.status == Alert.Status.RESOLVED
    assert list(alert.events.order_by("at").values_list("action", "actor")) == [
        ("opened", "compliance.exclusion"),
        ("acknowledged", operator.username),
        ("resolved", supervisor.username),
    ]


def test_the_demo_mine_live_on_the_dashboard(dashboard, mqtt_broker, admin_user, tmp_path):
    """Cerro Rojo with twenty trucks at work: its screenshot is docs/images/dashboard.png."""
    create_demo_mine(trucks=20)
    site = Site.objects.get(slug="cerro-rojo")
    trucks = list(Equipment.objects.filter(site=site, kind="haul_truck").order_by("name"))
    mine = LiveMine(mqtt_broker, site, trucks, tmp_path / "credentials.json", speedup=8.0)
    mine.start()
    try:
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            watch = PageWatch(page)
            log_in(page, dashboard, admin_user.username)
            page.wait_for_function(
                "(n) => window.haulmindDashboard.map.truckCount() === n", arg=len(trucks)
            )
            # Long enough for the trucks to leave the park, spread over the pit and load.
            page.wait_for_function(
                """() => { const trucks = [...window.haulmindDashboard.fleet.trucks.values()];
                    return trucks.filter((t) => t.state !== 'Parked').length >= 15
                        && trucks.some((t) => t.state === 'Hauling'); }""",
                timeout=120_000,
            )
            page.wait_for_timeout(4_000)
            page.screenshot(path=ARTIFACTS / "dashboard-demo-mine.png")
            page.close()
    finally:
        mine.stop()
    assert watch.errors == [] and watch.outside_requests() == []
