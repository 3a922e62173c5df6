"""The machine detail in a real Chromium against the real ASGI server, websocket, broker, ingest
and outbox, with simulated trucks (tests/control/conftest.py's LiveMine): a click on a truck
opens it; its charts fill from the history and grow live; its model outputs show (the newest
predictions at open, a live trajectory drawn on the map); a Stop from the panel reaches the
simulated truck, which stops and acknowledges, and a Resume moves it again; a Reassign sends it
to a loading unit; Escape closes it; another truck's opens by its name in the fleet panel.

As in test_dashboard.py, database rows are made before the browser starts and read after it
stops; what must happen in the middle (a live prediction) runs in a thread of its own.
"""

from __future__ import annotations

import math
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from fleet.control.models import Assignment, Command
from fleet.learning.models import Prediction
from fleet.learning.tasks import live_event
from fleet.live.broadcast import broadcast_now
from tests.browser.test_admin_map import PageWatch, chromium
from tests.browser.test_dashboard import ARTIFACTS, confirm, dashboard, live_mine, log_in  # noqa: F401
from tests.conftest import wait_until

pytestmark = pytest.mark.browser

TRAJECTORY_RGB = (0xE0, 0x40, 0xFB)  # frontend/src/map.ts: the predicted trajectory


def predict(truck, head: str, outputs: dict, age_s: float = 2.0) -> Prediction:
    return Prediction.objects.create(
        equipment=truck,
        model_name=head,
        model_id=f"{head}@1",
        window_end=timezone.now() - timedelta(seconds=age_s),
        outputs=outputs,
        queue_ms=1.0,
        compute_ms=3.0,
    )


def send_trajectory(truck, lon: float, lat: float, heading: float, speed_kmh: float) -> None:
    """A trajectory head's answer as the inference callback stores and pushes it: 1, 3 and 5 s
    ahead of where the page has the truck now, along its heading (made and sent from a thread
    of its own)."""
    metres_per_s = max(speed_kmh / 3.6, 3.0)
    east, north = math.sin(math.radians(heading)), math.cos(math.radians(heading))
    ahead = [
        [
            lon + east * metres_per_s * s / (111_320 * math.cos(math.radians(lat))),
            lat + north * metres_per_s * s / 111_320,
        ]
        for s in (1, 3, 5)
    ]

    def run() -> None:
        prediction = predict(truck, "trajectory", {"horizons_s": [1, 3, 5], "positions": ahead})
        broadcast_now(truck.site_id, "prediction", live_event(prediction))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)


def detail_counts(page) -> list[int]:
    return page.evaluate("() => window.haulmindDashboard.detail.counts()")


def click_truck(page, name: str) -> None:
    """Click where the GPU layer drew the truck (it may move between two reports: retried)."""
    box = page.locator("#map").bounding_box()
    for _ in range(5):
        x, y = page.evaluate(
            "(name) => { const d = window.haulmindDashboard; "
            "return d.map.pixelOf(d.fleet.byName(name).id); }",
            name,
        )
        page.mouse.click(box["x"] + x, box["y"] + y)
        try:
            page.wait_for_selector("#machine-detail", timeout=1_500)
            return
        except Exception:  # noqa: S112 (moved under the pointer: try again)
            continue
    raise AssertionError(f"clicking {name} opened no detail")


def wait_for_command(page, title: str, status: str) -> None:
    page.wait_for_function(
        """([title, status]) => [...document.querySelectorAll('#detail-commands li.command')]
            .some((li) => li.querySelector('strong').textContent === title
                && li.dataset.status === status)""",
        arg=[title, status],
        timeout=30_000,
    )


def test_a_trucks_detail_opens_on_click_fills_live_and_stops_and_resumes_it(
    dashboard,  # noqa: F811
    live_mine,  # noqa: F811
    operator,
):
    ARTIFACTS.mkdir(exist_ok=True)
    truck = live_mine.trucks[0]
    predict(
        truck,
        "fault",
        {
            "probabilities": {
                "normal": 0.12,
                "overheating": 0.81,
                "tyre_leak": 0.04,
                "brake_fade": 0.02,
                "stuck_sensor": 0.01,
            },
            "top_channel": "coolant_temp_c",
            "anomalous": True,
        },
    )
    predict(truck, "eta", {"p10_s": 48.0, "p50_s": 63.0, "p90_s": 95.0})
    engine = live_mine.fleet.engine
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1500, "height": 1150})
        watch = PageWatch(page)
        log_in(page, dashboard, operator.username)
        page.wait_for_function(
            "(n) => window.haulmindDashboard.map.truckCount() === n", arg=len(live_mine.trucks)
        )
        page.wait_for_timeout(3_000)  # a few seconds of history for the charts to start from

        click_truck(page, truck.name)
        assert page.locator("#detail-name").inner_text() == truck.name
        # The charts fill (the history, then live) and grow as the truck reports.
        page.wait_for_function(
            "() => window.haulmindDashboard.detail.counts().every((n) => n > 0)", timeout=15_000
        )
        first = detail_counts(page)
        page.wait_for_function(
            "(first) => window.haulmindDashboard.detail.counts().every((n, i) => n > first[i])",
            arg=first,
            timeout=15_000,
        )
        assert page.locator("#machine-detail .chart canvas").count() == 3
        # The newest predictions, read at open.
        fault = page.locator("#detail-fault").inner_text()
        assert "overheating" in fault and "81 %" in fault
        assert "Contributing channel: coolant temperature" in fault
        assert (
            "1 min 03 s (80 % between 48 s and 1 min 35 s)"
            in page.locator("#detail-eta").inner_text()
        )
        # A live trajectory prediction is drawn on the map.
        now = page.evaluate(
            "(id) => { const t = window.haulmindDashboard.fleet.trucks.get(id); "
            "return [t.lon, t.lat, t.heading, t.speedKmh ?? 0]; }",
            str(truck.id),
        )
        send_trajectory(truck, *now)
        page.wait_for_function(
            "() => window.haulmindDashboard.map.trajectorySource.getFeatures().length === 4",
            timeout=10_000,
        )
        page.mouse.move(5, 5)
        page.wait_for_timeout(300)
        page.screenshot(path=ARTIFACTS / "dashboard-machine-detail.png")

        # Stop, with a reason: the simulated truck stops and acknowledges; the panel shows it.
        index = live_mine.trucks.index(truck)
        page.click("#detail-stop")
        confirm(page, "checking the coolant alarm")
        page.wait_for_selector("#detail-notice.ok")
        wait_for_command(page, "Stop", "acknowledged")
        wait_until(lambda: bool(engine.stopped[index]), 15, "the simulated truck stopped")
        page.wait_for_function(
            "(id) => window.haulmindDashboard.fleet.trucks.get(id).speedKmh < 1",
            arg=str(truck.id),
            timeout=30_000,
        )
        page.screenshot(path=ARTIFACTS / "dashboard-machine-detail-stopped.png")

        # Resume: the stop is removed and the truck moves again.
        page.click("#detail-resume")
        confirm(page, "coolant checked, all fine")
        wait_for_command(page, "Resume (stop removed)", "acknowledged")
        wait_until(lambda: not engine.stopped[index], 15, "the simulated truck released")
        page.wait_for_function(
            "(id) => window.haulmindDashboard.fleet.trucks.get(id).speedKmh > 1",
            arg=str(truck.id),
            timeout=60_000,
        )
        # A second resume has nothing to do: the server's refusal is shown in its words.
        page.click("#detail-resume")
        confirm(page, "once more")
        page.wait_for_selector("#detail-notice.error")
        assert page.locator("#detail-notice").inner_text() == (
            "Not possible now (409): nothing to resume"
        )

        # Reassign to a loading unit chosen from the site's: the dispatcher's command follows.
        unit = page.locator("#detail-unit option").first.inner_text()
        page.click("#detail-reassign")
        confirm(page, "shovel SH-01 has no queue")
        page.wait_for_selector(f"#detail-notice.ok:has-text('{truck.name} sent to {unit}.')")
        assert f"assigned to {unit} (by hand)" in page.locator(".detail-facts").inner_text()

        # The trajectory leaves the map once it is older than TRAJECTORY_SHOWN_S (20 s).
        page.wait_for_function(
            "() => window.haulmindDashboard.map.trajectorySource.getFeatures().length === 0",
            timeout=30_000,
        )
        assert "not drawn" in page.locator("#detail-trajectory").inner_text()

        # Escape closes the detail.
        page.keyboard.press("Escape")
        page.wait_for_selector("#machine-detail", state="detached")
        assert page.evaluate("() => window.haulmindDashboard.detail") is None
        # ... and the ring around the truck with it.
        assert page.evaluate("() => window.haulmindDashboard.map.selection.getGeometry()") is None

        # Another truck's detail, by its name in the fleet panel's finder.
        other = live_mine.trucks[1].name
        page.fill("#fleet-finder input", other.lower())
        page.press("#fleet-finder input", "Enter")
        page.wait_for_selector(f"#detail-name:has-text('{other}')")
        page.wait_for_function(
            "() => window.haulmindDashboard.detail.counts()[0] > 0", timeout=15_000
        )
        page.close()

    # The one error the page saw is the refused second resume.
    assert [e for e in watch.errors if "/resume/" not in e] == []
    assert watch.outside_requests() == []
    # The audit trail: the stop and the resume with their reasons, the assignment by hand.
    reasons = Command.objects.filter(equipment=truck, message_name="MachineAllStopRequestV1")
    assert sorted(reasons.values_list("reason", "issued_by__username")) == [
        ("checking the coolant alarm", operator.username),
        ("coolant checked, all fine", operator.username),
    ]
    assignment = Assignment.objects.filter(equipment=truck, manual=True).get()
    assert (assignment.loading_unit.name, assignment.actor) == (unit, operator.username)
