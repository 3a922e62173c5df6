"""The dashboard's other views in a real Chromium against the real ASGI server: Production from a
shift's history stored through the real ingest path (states, positions, payloads; cycles derived
by the periodic job), the accelerator pool from heartbeats written through the pool's own store
(drained from the page: refused for an operator, done for a supervisor), and Replay playing a
recorded stretch back on its own map with the alert of that time.

As in test_dashboard.py, database rows are made before the browser starts and read after it
stops (Playwright's sync API runs an event loop in this thread)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleet.control import alerts
from fleet.pool import services as pool_services
from fleet.pool.models import DrainChange, UtilisationSample
from fleet.telemetry.cycles import derive_haul_cycles
from fleet.telemetry.intake import Inbound
from fleet.telemetry.services import EquipmentDirectory, ingest_batch
from tests.browser.test_admin_map import PageWatch, chromium
from tests.browser.test_dashboard import ARTIFACTS, confirm, dashboard, log_in  # noqa: F401
from tests.control.test_replay import store_positions
from tests.factories import haul_truck, truck_message
from tests.pool.conftest import busy_pool, pool  # noqa: F401

pytestmark = pytest.mark.browser

# One cycle of a truck: each state and how long it lasts (minutes).
CYCLE = [
    ("Queued", 1.5),
    ("Spotting", 0.5),
    ("Loading", 2.5),
    ("Hauling", 7.0),
    ("Dumping", 1.0),
    ("Driving", 5.5),
]


def message(truck, name: str, at: datetime, body: dict | None = None, **position) -> Inbound:
    return Inbound(
        "mqtt",
        truck_message(truck.id, name, body, at=at, **position),
        at + timedelta(milliseconds=30),
        topic=f"iso23725/v1/{truck.site.slug}/{truck.id}/up/{name}",
    )


def state(truck, name: str, at: datetime) -> Inbound:
    body = {
        "AssignmentId": None,
        "WayId": 10,
        "AutonomyMode": "Autonomous",
        "ProductionState": name,
    }
    return message(truck, "HaulTruckProductionStateV2", at, body)


def shift_history(site, trucks, now: datetime) -> None:
    """The last hour of three trucks cycling between the shovel and the crusher, as they would
    have reported it, stored by ingest; then the haul cycles derived as the periodic job does."""
    shovel, crusher = site.loading_units.get(), site.dump_points.get()
    inbound = []
    for k, truck in enumerate(trucks):
        at = now - timedelta(minutes=62 - 4 * k)
        while at < now - timedelta(minutes=3):
            for name, minutes in CYCLE:
                inbound.append(state(truck, name, at))
                where = crusher.location if name in {"Dumping", "Driving"} else shovel.location
                inbound.append(message(truck, "MachinePositionV1", at, lon=where.x, lat=where.y))
                if name == "Hauling":
                    load = {"PayloadWeight": 88 + k, "Accuracy": 1.5}
                    inbound.append(message(truck, "HaulTruckPayloadV1", at, load))
                at += timedelta(minutes=minutes)
    result = ingest_batch(inbound, EquipmentDirectory())
    assert result.stored == len(inbound), result.refused
    assert derive_haul_cycles(lookback=timedelta(hours=2)) >= 6


def test_the_production_view_plots_a_shifts_history(dashboard, site, viewer):  # noqa: F811
    trucks = [haul_truck(site, f"HT-00{i}") for i in (1, 2, 3)]
    shift_history(site, trucks, datetime.now(UTC))
    shovel = site.loading_units.get().name
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        watch = PageWatch(page)
        log_in(page, dashboard, viewer.username)
        page.click("#views-nav a[data-view=production]")
        page.wait_for_url(f"{dashboard}/#production")
        assert page.locator("#view-live").is_hidden()
        page.click("button[data-range=hour]")
        page.wait_for_selector(".view-status[data-range=hour]")  # the hour's answer drawn
        plotted = page.evaluate("() => window.haulmindViews.view('production').plotted()")
        # Last hour in 5-minute buckets: 12 (13 when the hour does not start on a bucket).
        assert plotted["tph"] >= 12 and plotted["availability"] == plotted["tph"]
        assert int(page.locator("#kpi-cycles .kpi-value").inner_text()) >= 6
        assert float(page.locator("#kpi-tonnes .kpi-value").inner_text().replace(",", "")) > 500
        # The trucks reported all hour: operating most of it, none down.
        assert page.locator("#kpi-availability .kpi-value").inner_text() == "100.0 %"
        haul = page.locator("#cycle-breakdown tr[data-phase=haul_s]").inner_text()
        assert "7 min 00 s" in haul, haul
        unit = page.locator("#loading-units tr[data-unit]").first.inner_text()
        assert shovel in unit and "1 min 30 s" in unit
        # uPlot drew on its canvases.
        assert page.locator("#plot-tph canvas").count() >= 1
        page.wait_for_timeout(300)
        page.screenshot(path=ARTIFACTS / "dashboard-production.png")
        # The view is kept in the URL: a reload opens it again.
        page.reload()
        page.wait_for_selector("#view-production:not([hidden]) #production-kpis .kpi")
        assert page.locator("#views-nav a.active").inner_text() == "Production"
        # Back to Live: its map takes the whole space again.
        page.click("#views-nav a[data-view=live]")
        page.wait_for_function("() => document.querySelector('#map canvas')?.clientWidth > 500")
        page.close()
    assert watch.errors == [] and watch.outside_requests() == []


def earlier_samples(now: datetime) -> None:
    """The 40 minutes before this test, as the minute sampler would have stored them: a busy
    spell on node-a/cpu/0 and the fault model's batches and latency growing with it."""
    rows = []
    for minute in range(40, 0, -1):
        at = now - timedelta(minutes=minute)
        load = 0.3 + 0.6 * max(0.0, 1 - abs(minute - 20) / 12)
        rows += [
            UtilisationSample(
                at=at,
                node="node-a",
                slice_name="cpu/0",
                device="cpu",
                busy=load,
                deployment="fault",
                model_id="fault@3",
                served_per_s=20 * load,
                mean_batch_rows=4 + 20 * load,
                latency_p50_ms=8 + 10 * load,
                latency_p99_ms=20 + 40 * load,
                queue_requests=0,
            ),
            UtilisationSample(
                at=at,
                node="node-a",
                slice_name="cpu/1",
                device="cpu",
                busy=0.2 + 0.05 * (minute % 3),
                deployment="eta",
                model_id="eta@3",
                served_per_s=2.0,
                mean_batch_rows=2.0,
                latency_p50_ms=5.0,
                latency_p99_ms=11.0,
                queue_requests=0,
            ),
        ]
    UtilisationSample.objects.bulk_create(rows)


@pytest.fixture
def pool_dashboard(request, settings, monkeypatch, transactional_db) -> str:
    """The dashboard's server reading this test's pool (its key prefix passed to the server
    process), with 40 minutes of history and a sample taken now. Transactional, named here (as ``dashboard``): the
    server sees only committed rows."""
    request.getfixturevalue("busy_pool")
    monkeypatch.setenv("HAULMIND_POOL_PREFIX", settings.POOL_PREFIX)
    earlier_samples(datetime.now(UTC).replace(second=0, microsecond=0))
    pool_services.sample_utilisation()
    return request.getfixturevalue("dashboard")


def test_the_pool_view_lists_nodes_and_slices_and_a_supervisor_drains_one(
    pool_dashboard, site, operator, supervisor
):
    with chromium() as browser:
        page = browser.new_context(viewport={"width": 1440, "height": 1100}).new_page()
        watch = PageWatch(page)
        log_in(page, pool_dashboard, operator.username)
        page.goto(f"{pool_dashboard}/#pool")
        node = page.locator("[data-node=node-a]")
        node.wait_for()
        slices = node.locator("tr[data-slice]").all_inner_texts()
        assert len(slices) == 2 and "fault@3" in slices[0] and "eta@3" in slices[1]
        assert "40 ms" in slices[0] and "batch 16.0" in slices[0]
        assert "not beating (3 restarts)" in page.locator("[data-node=node-b]").inner_text()
        model = page.locator("#pool-model-table tr[data-model=fault]").inner_text()
        assert "node-a/cpu/0" in model and "40 ms / 200 ms" in model
        page.wait_for_function("() => document.querySelector('#plot-slices').dataset.points >= 1")
        # An operator may not drain: the server refuses, in its own words.
        assert "needs the supervisor role" in node.inner_text()
        node.locator("button[data-action=drain]").click()
        confirm(page, "trying")
        page.wait_for_selector("#pool-notice .notice.error")
        assert page.locator("#pool-notice").inner_text().startswith("Refused by the server (403)")

        theirs = browser.new_context(viewport={"width": 1440, "height": 1100}).new_page()
        log_in(theirs, pool_dashboard, supervisor.username)
        theirs.goto(f"{pool_dashboard}/#pool")
        theirs.locator("[data-node=node-a] button[data-action=drain]").click()
        confirm(theirs, "driver update on node-a")
        theirs.wait_for_selector("[data-node=node-a].draining")
        assert "draining (sofia-supervisor" in theirs.locator("[data-node=node-a]").inner_text()
        assert theirs.locator("[data-node=node-a] button[data-action=undrain]").is_visible()
        theirs.wait_for_timeout(300)
        theirs.screenshot(path=ARTIFACTS / "dashboard-pool.png", full_page=True)
        page.close()
        theirs.close()
    assert [e for e in watch.errors if "/drain/" not in e] == []
    assert list(DrainChange.objects.values_list("node", "draining", "by_name", "reason")) == [
        ("node-a", True, supervisor.username, "driver update on node-a")
    ]


def test_replay_plays_the_fleet_back_with_the_alert_of_that_time(dashboard, site, viewer):  # noqa: F811
    one, two = haul_truck(site, "HT-001"), haul_truck(site, "HT-002")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=100)
    store_positions(one, start, 80)
    store_positions(two, start + timedelta(seconds=20), 60)
    reports = [state(one, "Hauling", start), state(two, "Driving", start + timedelta(seconds=20))]
    ingest_batch(reports, EquipmentDirectory())
    finding = alerts.Finding(
        kind="exclusion", severity="critical", source="rule", reason="inside 'Old bench'"
    )
    alerts.raise_alert(one, finding)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        watch = PageWatch(page)
        log_in(page, dashboard, viewer.username)
        # A link to a replay opens the view with the range loaded.
        page.goto(f"{dashboard}/#replay?from={start.isoformat().replace('+00:00', 'Z')}&minutes=5")
        page.wait_for_selector("#replay-play:not([disabled])")
        assert page.locator("#replay-resolution").inner_text() == "as recorded"
        assert page.locator("#replay-events").inner_text() == "Nothing yet at this time."
        page.wait_for_function("() => window.haulmindViews.view('replay').map.truckCount() === 1")
        before = page.evaluate("() => window.haulmindViews.view('replay').pixelOf('HT-001')")

        page.click("#replay-play")
        page.click("button[data-speed='20']")
        # 100 s of replay at 20x: about 5 s. The slider advances, both trucks are drawn and
        # move, the alert shows once the clock passes its time.
        page.wait_for_selector("#replay-events .replay-event[data-kind=alert]", timeout=20_000)
        assert "inside 'Old bench'" in page.locator("#replay-events").inner_text()
        assert int(page.locator("#replay-slider").input_value()) >= 95_000
        assert page.evaluate("() => window.haulmindViews.view('replay').map.truckCount()") == 2
        # Drawn in the states they reported (the status history), as on the live map.
        states = page.evaluate(
            """() => { const v = window.haulmindViews.view('replay');
                return Object.fromEntries(v.track.at(v.clock.t).map((t) => [t.name, t.state])); }"""
        )
        assert states == {"HT-001": "Hauling", "HT-002": "Driving"}
        after = page.evaluate("() => window.haulmindViews.view('replay').pixelOf('HT-001')")
        assert after[0] - before[0] > 5, (before, after)  # it drove east
        page.click("#replay-play")  # pause
        page.wait_for_timeout(300)
        page.screenshot(path=ARTIFACTS / "dashboard-replay.png")

        # Scrubbed back to the start, the alert has not happened yet.
        page.locator("#replay-slider").fill("0")
        page.wait_for_selector("#replay-events .replay-event", state="detached")
        page.close()
    assert watch.errors == [] and watch.outside_requests() == []
