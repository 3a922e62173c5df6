"""The admin maps in a real Chromium against the real ASGI server: OpenLayers draws, nothing is
fetched from outside 127.0.0.1 (control rooms may have no internet), and a zone drawn on the
offline widget is created Pending.

Database rows are made before the browser starts and read after it stops: Playwright's sync API
runs an event loop in this thread, and Django refuses ORM calls while one runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.gis.geos import Polygon
from playwright import sync_api

from fleet.mine import services
from fleet.mine.demo import create_demo_mine
from fleet.mine.mapfile import import_site_map
from fleet.mine.models import PolicyZone, Site
from tests.factories import (
    LAT0,
    LON0,
    PASSWORD,
    D,
    small_site_map,
    square,
    user_with_password,
    zone_feature,
)

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def demo_zones() -> list[dict]:
    """One zone of each policy colour the map legend names, and a pending one."""
    shovel_id = str(uuid.uuid4())
    ramp = zone_feature(
        "Ramp 30 km/h",
        {"speedLimit": {"type": "absolute", "value": 8.3}},
        cx=LON0 + D / 4,
        cy=LAT0 + D / 4,
    )
    closed = zone_feature(
        "Old bench: no entry", {"exclusion": {}}, cx=LON0 + D / 2, cy=LAT0 - D / 2, half=0.0008
    )
    junction = zone_feature(
        "Junction 2", {"trafficPermission": {"capacity": 1}}, cx=LON0, cy=LAT0, half=0.0003
    )
    loading = zone_feature(
        "SH-01 loading area",
        {"controlledAccess": {"ownerId": shovel_id}},
        cx=LON0 + D / 2,
        cy=LAT0 + D / 2,
        half=0.0006,
    )
    wet = zone_feature(
        "Wet rim road", {"lowTraction": {}}, cx=LON0 - D / 4, cy=LAT0 + 0.0004, half=0.0003
    )
    wet["status"] = "pending"
    return [ramp, closed, junction, loading, wet]


@pytest.fixture
def mine(transactional_db, django_user_model) -> Site:
    site = import_site_map(small_site_map(slug="browserpit", zones=demo_zones())).site
    # A zone on its way out, to show the Pending delete style.
    rough = services.create_zone(
        site=site,
        name="Rough patch (retiring)",
        geometry=_square_polygon(LON0 - D / 2, LAT0 + D / 2, 0.0004),
        policies={"roughRoad": {}},
    )
    services.request_zone_deletion(services.activate_zone(rough))
    user_with_password("ctrl-admin", superuser=True, email="ctrl@example.invalid")
    return site


def _square_polygon(cx: float, cy: float, half: float) -> Polygon:
    return Polygon(square(cx, cy, half), srid=4326)


class PageWatch:
    """Every request a page makes and every error it logs."""

    def __init__(self, page) -> None:
        self.urls: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.urls.append(request.url))
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on(
            "response",
            lambda response: (
                self.errors.append(f"HTTP {response.status}: {response.url}")
                if response.status >= 400
                else None
            ),
        )
        page.on(
            "console",
            lambda message: (
                self.errors.append(f"console: {message.text} ({message.location['url']})")
                if message.type == "error"
                else None
            ),
        )

    def outside_requests(self) -> list[str]:
        outside = []
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme in {"data", "blob"}:
                continue  # generated in the page, not fetched
            if (
                parts.scheme not in {"http", "https", "ws", "wss"}
                or parts.hostname not in LOCAL_HOSTS
            ):
                outside.append(url)
        return outside


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium (no browser downloads here). Used as a block, not a fixture, so the test
    can read the database once the browser, and Playwright's event loop, are gone."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            browser.close()


def log_in(page, base_url: str) -> None:
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", "ctrl-admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")


def painted_pixels(page) -> int:
    """Non-transparent pixels over all the map's canvases: zero means OpenLayers drew nothing."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('.ol-viewport canvas')).reduce((sum, c) => {
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < data.length; i += 4) { if (data[i] > 0) n++; }
            return sum + n;
        }, 0)"""
    )


def assert_map_rendered(page, selector: str) -> None:
    page.wait_for_selector(f"{selector} .ol-viewport canvas", state="attached")
    box = page.locator(f"{selector} .ol-viewport canvas").first.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 300
    page.wait_for_function(
        """(sel) => Array.from(document.querySelectorAll(sel + ' .ol-viewport canvas'))
            .some((c) => c.width > 0 && c.height > 0)""",
        arg=selector,
    )
    page.wait_for_timeout(300)  # the first frame is drawn on the next animation frame
    assert painted_pixels(page) > 5_000


def pixel_of(page, lon: float, lat: float) -> dict[str, float]:
    """Page coordinates of a WGS84 position on the site map."""
    x, y = page.evaluate(
        "([lon, lat]) => window.haulmindSiteMap.getPixelFromCoordinate(ol.proj.fromLonLat([lon, lat]))",
        [lon, lat],
    )
    box = page.locator("#site-map").bounding_box()
    return {"x": box["x"] + x, "y": box["y"] + y}


def test_the_site_map_and_zone_widget_render_offline(asgi_server, mine):
    ARTIFACTS.mkdir(exist_ok=True)
    ramp_zone = mine.zones.get(name="Ramp 30 km/h").pk
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 960})
        watch = PageWatch(page)
        visit_site_map(page, asgi_server, mine.pk)
        draw_a_zone(page, asgi_server, mine.pk)
        view_a_zone(page, asgi_server, ramp_zone)
        page.close()
    assert watch.errors == []
    assert watch.outside_requests() == []
    assert any("/static/vendor/ol/ol.js" in url for url in watch.urls)
    zone = PolicyZone.objects.get(name="Drawn in the browser")
    assert zone.status == PolicyZone.Status.PENDING and zone.area_m2 > 1_000


def visit_site_map(page, base: str, site_id) -> None:
    log_in(page, base)
    page.goto(f"{base}/admin/mine/site/{site_id}/map/")
    assert_map_rendered(page, "#site-map")
    assert page.locator("#site-map-legend li").count() >= 12
    assert page.locator("#site-map-zones li").count() == 6
    page.screenshot(path=ARTIFACTS / "admin-site-map.png", full_page=True)

    # Hovering the one-lane ramp names it: WayId, length, grade.
    point = pixel_of(page, LON0 + D / 8, LAT0 + D / 8)
    page.mouse.move(point["x"], point["y"])
    tooltip = page.locator("#site-map-tooltip")
    tooltip.wait_for(state="visible")
    text = tooltip.inner_text()
    assert "Way 11" in text and "one lane" in text and "40 km/h (site default)" in text
    page.screenshot(path=ARTIFACTS / "admin-site-map-hover.png", full_page=True)

    # Zoomed in, the labels (WayIds, names, node numbers) appear.
    page.evaluate(
        "window.haulmindSiteMap.getView().setZoom(window.haulmindSiteMap.getView().getZoom() + 1.5)"
    )
    page.wait_for_timeout(500)
    page.screenshot(path=ARTIFACTS / "admin-site-map-zoomed.png", full_page=True)


def draw_a_zone(page, base: str, site_id) -> None:
    """A new zone drawn on the offline widget, submitted through the admin form."""
    page.goto(f"{base}/admin/mine/policyzone/add/?site={site_id}")
    assert_map_rendered(page, "#id_geometry_div_map")
    page.screenshot(path=ARTIFACTS / "admin-zone-add.png", full_page=True)
    draw_square(page, "#id_geometry_map", half=50)
    assert page.input_value("#id_geometry").startswith('{"type":"Polygon"')
    page.fill("#id_name", "Drawn in the browser")
    page.select_option("#id_site", str(site_id))
    page.fill("#id_policies", '{"speedLimit": {"type": "percent", "value": 50}}')
    page.screenshot(path=ARTIFACTS / "admin-zone-add-drawn.png", full_page=True)
    page.click("input[name=_save]")
    page.wait_for_url(f"{base}/admin/mine/policyzone/")
    assert "was added successfully" in page.inner_text(".messagelist")


def draw_square(page, map_selector: str, half: int) -> None:
    """Click the corners of a square around the map's centre, then close it on the first."""
    box = page.locator(map_selector).bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2 + 60
    corners = [(-half, -half), (half, -half), (half, half), (-half, half), (-half, -half)]
    for dx, dy in corners:
        page.mouse.click(cx + dx, cy + dy)
        page.wait_for_timeout(150)


def view_a_zone(page, base: str, zone_id) -> None:
    """An existing zone is shown read-only, on the same offline map."""
    page.goto(f"{base}/admin/mine/policyzone/{zone_id}/change/")
    assert_map_rendered(page, "#id_zone_map_div_map")
    assert page.locator("input[name=_save]").count() == 0
    page.screenshot(path=ARTIFACTS / "admin-zone-view.png", full_page=True)


def test_the_demo_mine_map_is_readable_offline(asgi_server, transactional_db, django_user_model):
    """Cerro Rojo, the demo pit: its screenshot is docs/images/admin-site-map.png."""
    create_demo_mine(trucks=0)
    site_id = Site.objects.get(slug="cerro-rojo").pk
    user_with_password("ctrl-admin", superuser=True, email="ctrl@example.invalid")
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        watch = PageWatch(page)
        log_in(page, asgi_server)
        page.goto(f"{asgi_server}/admin/mine/site/{site_id}/map/")
        assert_map_rendered(page, "#site-map")
        page.screenshot(path=ARTIFACTS / "admin-site-map-demo.png", full_page=True)
        page.close()
    assert watch.errors == []
    assert watch.outside_requests() == []
