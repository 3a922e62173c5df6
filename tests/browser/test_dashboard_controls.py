"""The dashboard's zone and traffic-permission controls in a real Chromium against the real ASGI
server (tests/browser/test_dashboard.py's fixtures): an operator draws a zone on the map, it is
put in force and reaches the simulated trucks over the real broker, their answers show, it is
deactivated and deleted; a viewer's attempts are refused by the server and the page says so; a
supervisor revokes a traffic permission by hand and a grant that would conflict is refused.

Database rows are made before the browser starts and read after it stops; what must happen on
the database in the middle of a browser session runs in a thread of its own (Playwright's sync
API runs an event loop in this thread, and Django refuses ORM calls while one runs).
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from fleet.control import zones
from fleet.control.models import TrafficPermission
from fleet.mine.mapfile import import_site_map
from fleet.mine.models import PolicyZone, ZoneResponse
from tests.browser.test_admin_map import PageWatch, chromium
from tests.browser.test_dashboard import ARTIFACTS, confirm, dashboard, live_mine, log_in
from tests.control.test_traffic_services import ZONE_ID, ask, permission_of
from tests.factories import LAT0, LON0, D, haul_truck, small_site_map, zone_feature

pytestmark = pytest.mark.browser
__all__ = ["dashboard", "live_mine"]  # fixtures, used by name below

ZONE_NAME = "Loose rock, rim road"


def draw_square(page, half: int = 60) -> None:
    """Drive OpenLayers' Draw with the mouse: four corners round the map's centre, then a click
    on the first corner to close the polygon."""
    box = page.locator("#map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    corners = [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half)]
    corners += [(cx - half, cy + half), corners[0]]
    for x, y in corners:
        page.mouse.click(x, y)
        page.wait_for_timeout(150)


def fill_zone_dialog(page, name: str, speed_kmh: str, reason: str) -> None:
    page.wait_for_selector("#confirm[open]")
    page.fill("#confirm input[name=name]", name)
    page.select_option("#confirm select[name=policy]", "speedLimit")
    page.fill("#confirm input[name=speedKmh]", speed_kmh)
    page.fill("#confirm input[name=reason]", reason)
    page.click("#confirm button[type=submit]")


def in_a_thread(work) -> None:
    done = threading.Thread(target=work)
    done.start()
    done.join(30)


def test_an_operator_draws_a_zone_that_reaches_the_trucks_then_deactivates_it(
    dashboard, live_mine, site, operator, viewer
):
    ARTIFACTS.mkdir(exist_ok=True)
    names = sorted(truck.name for truck in live_mine.trucks)
    zone_item = f"#zones-panel li.zone[data-zone-name='{ZONE_NAME}']"
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        watch = PageWatch(page)
        log_in(page, dashboard, operator.username)
        page.wait_for_function(
            "(n) => window.haulmindDashboard.map.truckCount() === n", arg=len(names)
        )

        # A polygon that crosses itself is refused on the page, before anything is sent.
        page.click("#zone-draw")
        box = page.locator("#map").bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        for x, y in [(cx - 50, cy - 50), (cx + 50, cy + 50), (cx + 50, cy - 50)]:
            page.mouse.click(x, y)
            page.wait_for_timeout(150)
        page.mouse.click(cx - 50, cy + 50)
        page.wait_for_timeout(150)
        page.mouse.click(cx - 50, cy - 50)
        page.wait_for_selector("#zones-notice:has-text('crosses itself')")
        # ... and its outline leaves the map.
        page.wait_for_function(
            """() => window.haulmindDashboard.map.map.getLayers().getArray()
                .find((l) => l.get('name') === 'zone-sketch').getSource().getFeatures()
                .length === 0"""
        )

        # Drawn, confirmed with a name, a speed limit and a reason: it is active at once...
        page.click("#zone-draw")
        page.wait_for_selector("#zone-draw-hint")
        draw_square(page)
        fill_zone_dialog(page, ZONE_NAME, "20", "loose rock on the rim road")
        page.wait_for_selector(f"{zone_item} .zone-status:has-text('Active')")
        # ... and every connected truck accepts it: their answers arrive on the panel.
        page.wait_for_selector(
            f"{zone_item} .progress:has-text('{len(names)} of {len(names)} accepted it')",
            timeout=30_000,
        )
        assert page.locator(f"{zone_item} .chips.ok li").all_inner_texts() == names
        assert "speed ≤ 20 km/h" in page.locator(zone_item).inner_text()
        # The site map is read again: the zone is drawn on the map (pending, then active).
        page.wait_for_function(
            """(name) => window.haulmindDashboard.map.map.getLayers().getArray()
                .find((l) => l.get('name') === 'zones').getSource().getFeatures()
                .some((f) => f.get('name') === name && f.get('status') === 'active')""",
            arg=ZONE_NAME,
        )
        page.mouse.move(5, 5)
        page.wait_for_timeout(300)
        page.screenshot(path=ARTIFACTS / "dashboard-zone-active.png")

        # A viewer may neither draw a zone nor deactivate one: the server refuses, the page
        # says so in the server's words.
        viewer_page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
        viewer_watch = PageWatch(viewer_page)
        log_in(viewer_page, dashboard, viewer.username)
        assert "needs the operator role" in viewer_page.locator("#zones-panel").inner_text()
        viewer_page.click(f"{zone_item} button[data-action=deactivate]")
        confirm(viewer_page, "I am only a viewer")
        notice = viewer_page.locator("#zones-notice")
        notice.wait_for()
        assert notice.inner_text().startswith("Refused by the server (403)")
        viewer_page.click("#zone-draw")
        draw_square(viewer_page, half=40)
        fill_zone_dialog(viewer_page, "Viewer's zone", "10", "trying")
        viewer_page.wait_for_selector("#zones-notice:has-text('Refused by the server (403)')")
        viewer_page.screenshot(path=ARTIFACTS / "dashboard-zone-viewer-refused.png")
        viewer_page.close()

        # Deactivated with a reason: each truck drops it, then it is deleted.
        page.click(f"{zone_item} button[data-action=deactivate]")
        confirm(page, "rock cleared")
        page.wait_for_selector(f"{zone_item} .zone-status:has-text('Being deleted')")
        page.wait_for_selector(
            f"{zone_item} .progress:has-text('{len(names)} of {len(names)} dropped it')",
            timeout=30_000,
        )
        # The deletion sweep (Celery beat every 10 s in production) completes it.
        in_a_thread(lambda: zones.complete_zone_deletions(timeout=timedelta(minutes=5)))
        page.wait_for_selector(f"{zone_item} .zone-status:has-text('Deleted')", timeout=10_000)
        page.screenshot(path=ARTIFACTS / "dashboard-zone-deleted.png")
        page.close()

    assert watch.errors == [] and watch.outside_requests() == []
    # The viewer's two refused POSTs are the only errors its page saw.
    assert [e for e in viewer_watch.errors if "/zones/" not in e] == []
    assert sum("HTTP 403" in e for e in viewer_watch.errors) == 2
    assert not PolicyZone.objects.filter(name="Viewer's zone").exists()
    zone = PolicyZone.objects.get(name=ZONE_NAME)
    assert (zone.name, zone.status, zone.created_by) == (ZONE_NAME, "deleted", operator)
    assert (zone.reason, zone.delete_reason) == ("loose rock on the rim road", "rock cleared")
    assert zone.policies == {"speedLimit": {"type": "absolute", "value": pytest.approx(5.556)}}
    answers = ZoneResponse.objects.filter(zone=zone, accepted=True)
    assert answers.filter(request="activate").count() == len(names)
    assert answers.filter(request="deactivate").count() == len(names)


@pytest.fixture
def one_lane_site(transactional_db):
    zone = zone_feature(
        "Ramp, one lane",
        {"trafficPermission": {}},
        cx=LON0 + D / 4,
        cy=LAT0 + D / 4,
        zone_id=ZONE_ID,
    )
    return import_site_map(small_site_map(slug="onelane", zones=[zone])).site


def test_a_supervisor_revokes_a_traffic_permission_by_hand_and_a_conflicting_grant_is_refused(
    dashboard, one_lane_site, supervisor, operator
):
    first, second = haul_truck(one_lane_site, "HT-001"), haul_truck(one_lane_site, "HT-002")
    ask(one_lane_site, first)
    ask(one_lane_site, second)  # waits: occupied by HT-001
    item = "#permissions-panel .permit-list:not(.closed) li.permit[data-truck='{}']"
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        watch = PageWatch(page)
        log_in(page, dashboard, supervisor.username)
        page.wait_for_selector(f"{item.format('HT-001')} .permit-status:has-text('Granted')")
        assert "occupied by HT-001" in page.locator(item.format("HT-002")).inner_text()

        # Granting the waiting truck beside the grant in force: refused in the server's words.
        page.click(f"{item.format('HT-002')} button[data-action=grant]")
        confirm(page, "in a hurry")
        page.wait_for_selector(
            "#permissions-notice:has-text('Not possible now (409)'):has-text('occupied by HT-001')"
        )

        # Revoking the grant passes the section to the next in line, live.
        page.click(f"{item.format('HT-001')} button[data-action=revoke]")
        confirm(page, "rock fall on the ramp")
        page.wait_for_selector("#permissions-notice:has-text('HT-001, Ramp, one lane: revoked')")
        page.wait_for_selector(f"{item.format('HT-002')} .permit-status:has-text('Granted')")
        assert (
            "rock fall on the ramp"
            in page.locator(
                "#permissions-panel .permit-list.closed li[data-truck='HT-001']"
            ).inner_text()
        )
        page.locator("#permissions-panel").scroll_into_view_if_needed()
        page.screenshot(path=ARTIFACTS / "dashboard-traffic-permissions.png")

        # An operator's revoke is refused by the server.
        operator_page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
        log_in(operator_page, dashboard, operator.username)
        assert (
            "needs the supervisor role" in operator_page.locator("#permissions-panel").inner_text()
        )
        operator_page.click(f"{item.format('HT-002')} button[data-action=revoke]")
        confirm(operator_page, "not mine to decide")
        operator_page.wait_for_selector(
            "#permissions-notice:has-text('Refused by the server (403)')"
        )
        operator_page.close()
        page.close()

    # The 409 is the one error the supervisor's page saw.
    assert [e for e in watch.errors if "/grant/" not in e] == []
    revoked = permission_of(first)
    assert revoked.status == TrafficPermission.Status.REVOKED
    assert list(revoked.events.order_by("at", "id").values_list("status", "actor"))[-1] == (
        "revoked",
        supervisor.username,
    )
    assert permission_of(second).status == TrafficPermission.Status.GRANTED
