"""Live route inputs (fleet.learning.routes): the planned route, the per-segment table and
the road ahead from stored telemetry equal the training labels of the same simulated run."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest
from django.db import connection

from fleet.learning import features, routes, serving
from fleet.learning.features import LOADING, STATES
from fleet.learning.pipeline.baselines import SegmentMeanETA
from fleet.learning.pipeline.datasets import STOP_STATES, SiteRun, _eta_labels, _route_ahead
from fleet.learning.pipeline.sites import SITES, site_map, site_world
from fleet.mine.mapfile import import_site_map
from fleet.telemetry.partitions import ensure_history_partitions
from tests.factories import haul_truck
from tests.learning import test_serving as ts

SITE = SITES.index("D")


@pytest.fixture
def site_d(db):
    routes.clear_caches()
    document = site_map("D")
    for feature in document["features"]:  # the shovels' equipment is not this test's
        feature["properties"].pop("equipmentId", None)
    yield import_site_map(document).site
    routes.clear_caches()


@pytest.fixture(scope="module")
def run(small_data) -> SiteRun:
    return small_data.runs["D"]


def start_at(rows: int) -> datetime:
    """Row 0's time: a whole multiple of the table's sampling, the last row a second ago."""
    end = int(datetime.now(UTC).timestamp()) - 1
    first = (end - rows) // routes.SAMPLE_S * routes.SAMPLE_S
    return datetime.fromtimestamp(first, UTC)


def pick_row(run: SiteRun, k: int, far_m: float) -> int:
    """A row after the truck's first stop where it is on its way to a known next stop, at
    least ``far_m`` from it."""
    stops = np.flatnonzero(np.isin(run.state[k], STOP_STATES))
    rows = np.arange(run.rows)
    ahead = run.cum_dist[k, np.maximum(run.next_stop[k], 0)] - run.cum_dist[k]
    ok = (run.next_stop[k] >= 0) & run.gps_ok[k] & (rows > int(stops[0]) + 300)
    ok &= (ahead >= far_m) & (rows < run.rows - 600)
    found = np.flatnonzero(ok)
    return int(found[len(found) // 2])


def store(
    run: SiteRun, trucks: dict[int, object], t0: datetime, end_row: int, fixes_before: int = -1
) -> None:
    """Rows [0, end_row] of the run's trucks as stored telemetry: a production-state event
    at each change of state or way (with a position where it had a fix, before row
    ``fixes_before`` if given), a payload event at each change of the meter."""
    ensure_history_partitions()
    frame = site_world("D").frame
    x, y = run.channel("x_m").astype(np.float64), run.channel("y_m").astype(np.float64)
    way = run.channel("way_id")
    meter = run.channel("payload_t")
    positions, events = [], []
    for k, truck in trucks.items():
        lon, lat = frame.to_lonlat(x[k, : end_row + 1], y[k, : end_row + 1])
        state = run.state[k, : end_row + 1]
        ways = way[k, : end_row + 1]
        for r in range(end_row + 1):
            at = t0 + timedelta(seconds=r)
            if r == 0 or state[r] != state[r - 1] or ways[r] != ways[r - 1]:
                body = {
                    "AssignmentId": None,
                    "WayId": int(ways[r]) if ways[r] >= 0 else None,
                    "AutonomyMode": "Autonomous",
                    "ProductionState": STATES[int(state[r])],
                }
                events.append((truck.id, "HaulTruckProductionStateV2", at, body))
                if run.gps_ok[k, r] and (fixes_before < 0 or r < fixes_before):
                    positions.append((truck.id, at, float(lon[r]), float(lat[r])))
            if r == 0 or meter[k, r] != meter[k, r - 1]:
                body = {"PayloadWeight": round(float(meter[k, r])), "Accuracy": 1.5}
                events.append((truck.id, "HaulTruckPayloadV1", at, body))
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO telemetry_position (equipment_id, sent_at, received_at, location, "
            "elevation_m, heading_deg, speed_kmh, body_digest, late) VALUES (%s, %s, %s, "
            "ST_SetSRID(ST_MakePoint(%s, %s), 4326), 0, 0, 0, 0, false)",
            [(e, at, at, lo, la) for e, at, lo, la in positions],
        )
        cursor.executemany(
            "INSERT INTO telemetry_event (equipment_id, message_name, sent_at, received_at, "
            "body, sequence, body_digest, late) VALUES (%s, %s, %s, %s, %s, -1, 0, false)",
            [(e, name, at, at, orjson.dumps(body).decode()) for e, name, at, body in events],
        )


def last_fix(run: SiteRun, k: int, r: int) -> tuple[float, float, float]:
    """(lon, lat, heading) the truck reported at row ``r``."""
    lon, lat = site_world("D").frame.to_lonlat(
        float(run.channel("x_m")[k, r]), float(run.channel("y_m")[k, r])
    )
    return float(lon), float(lat), float(run.channel("heading_deg")[k, r])


def planned_truck(truck, site, until: datetime, fix: tuple[float, float, float]):
    """A standing truck's inputs at ``fix`` (lon, lat, heading) with the dispatcher's route
    step applied (``serving.add_routes``)."""
    built = serving.TruckInputs(
        truck, site, until, fix, np.zeros((25, 64)), np.zeros(55), np.zeros(4)
    )
    serving.add_routes([built], now=until)
    return built


@pytest.mark.parametrize(("k", "far_m"), [(0, 800.0), (2, 300.0), (5, 1500.0)])
def test_the_planned_route_matches_the_training_route_features(run, site_d, k, far_m):
    e = pick_row(run, k, far_m)
    truck = haul_truck(site_d)
    t0 = start_at(e)
    store(run, {k: truck}, t0, e)
    until = t0 + timedelta(seconds=e)
    world = routes.site_world(site_d.id)
    state = routes.truck_states([truck.id], until)[truck.id]
    outcome, route = routes.truck_route(world, state, *last_fix(run, k, e))
    assert outcome == "planned"
    labels = _eta_labels(run, np.array([k]), np.array([e]))
    assert route.dest == labels["dest"][0]
    want = labels["route"][0].astype(np.float64)
    assert want[0] >= far_m
    # distance, rise, climb, descent within ~1 m (GPS noise and the driven route's 1 Hz
    # samples apart), payload as the meter reported it (whole tonnes on the wire)
    np.testing.assert_allclose(route.route[:4], want[:4], atol=1.0)
    assert abs(route.route[4] - want[4]) <= 0.5
    assert route.route[5] == want[5]
    assert route.segment == int(run.channel("way_id")[k, e])  # live keys: site index 0
    # The road ahead: the planned route's geometry is the path training reads, within the
    # GPS noise of where the route starts (the fix projected onto the road) and its heading.
    want_ahead = _route_ahead(run, np.array([k]), np.array([e]))[0]
    assert route.ahead[-1] == want_ahead[-1] == 1.0  # a known route
    np.testing.assert_allclose(route.ahead[:12], want_ahead[:12], atol=3.0)  # points, m
    np.testing.assert_allclose(route.ahead[12:14], want_ahead[12:14], atol=0.5)  # rises, m
    np.testing.assert_allclose(route.ahead[14], want_ahead[14], atol=0.01)  # the stop: past
    assert abs(want_ahead[14] - features.STOP_CAP_M) < 0.01  # the cap (the route's samples)
    # The head's features: the route, then the site's table for that way and stop.
    table = routes.site_table(site_d.id, world, until)
    lon, lat, heading = last_fix(run, k, e)
    planned = routes.route_inputs({truck.id: (site_d.id, lon, lat, heading)}, until)[truck.id]
    assert planned.outcome == "planned"
    want_table = table.predict(np.array([route.segment]), np.array([route.stop]))[0]
    np.testing.assert_allclose(planned.eta, np.concatenate([route.route, want_table]), rtol=1e-5)
    np.testing.assert_array_equal(planned.ahead, route.ahead)
    built = planned_truck(truck.id, site_d.id, until, (lon, lat, heading))
    inputs = built.inputs("eta")
    assert inputs["features"].shape == (1, 9) and inputs["window"].shape == (1, 25, 64)
    np.testing.assert_allclose(inputs["features"][0], planned.eta)
    # The trajectory head's: the motion (a standing truck here), the road ahead, and where
    # the route is at speed x horizon (at the start, standing).
    trajectory = built.inputs("trajectory")["features"][0]
    assert trajectory.shape == (len(features.TRAJECTORY_INPUTS),)
    np.testing.assert_array_equal(trajectory[4:20], route.ahead)
    assert not trajectory[:4].any() and not trajectory[20:].any()


def test_the_live_table_is_the_training_table_of_the_same_history(run, site_d):
    trucks = {k: haul_truck(site_d, f"HT-{k:03d}") for k in range(run.trucks)}
    end_row = run.rows - 1
    t0 = start_at(end_row)
    store(run, trucks, t0, end_row)
    until = t0 + timedelta(seconds=end_row)
    world = routes.site_world(site_d.id)
    live = routes.fit_table(world, site_d.id, until)
    # Training's labels on the same samples: every SAMPLE_S s, where the stop is reached
    # within the stored history.
    k, e = np.meshgrid(np.arange(run.trucks), np.arange(0, end_row + 1, routes.SAMPLE_S))
    k, e = k.ravel(), e.ravel()
    labels = _eta_labels(run, k, e)
    ok = (run.next_stop[k, e] >= 0) & (run.next_stop[k, e] <= end_row)
    eta = np.where(ok, labels["eta_s"], np.nan)
    trained = SegmentMeanETA.fit(labels["segment"], labels["stop"], eta)
    rekeyed = {
        (seg - SITE * 1_000_000, stop - SITE * 1_000): v for (seg, stop), v in trained.table.items()
    }
    assert live.table.keys() == rekeyed.keys()
    assert len(live.table) > 5
    for key, value in live.table.items():
        np.testing.assert_allclose(value, rekeyed[key], atol=1.0)
    np.testing.assert_allclose(live.overall, trained.overall, atol=1.0)


def test_a_truck_without_a_known_next_stop_is_skipped_and_counted(run, site_d):
    k = 1
    stops = np.flatnonzero(run.state[k] == LOADING)
    first_stop = int(stops[0])
    before = int(
        np.flatnonzero(run.gps_ok[k, :first_stop] & (run.next_stop[k, :first_stop] >= 0))[-1]
    )
    truck = haul_truck(site_d)
    t0 = start_at(before)
    store(run, {k: truck}, t0, before)
    until = t0 + timedelta(seconds=before)
    lon, lat, heading = last_fix(run, k, before)
    found = routes.route_inputs({truck.id: (site_d.id, lon, lat, heading)}, until)[truck.id]
    assert (found.outcome, found.eta) == ("no_stop", None)
    # No route known: the road ahead is all zeros, its flag 0 (training's value for a truck
    # not on its way to a stop).
    np.testing.assert_array_equal(found.ahead, np.zeros(len(found.ahead)))
    # Through the dispatcher's send step: counted, nothing sent.
    built = planned_truck(truck.id, site_d.id, until, (lon, lat, heading))
    report: Counter[str] = Counter()
    serving._send_all([built], ["eta"], {"eta": {"queue": "unused"}}, None, report)
    assert report == Counter({"eta:no_stop": 1})


queues = ts.queues  # this module's tests use test_serving's broker queues


def test_a_due_truck_on_its_way_gets_an_eta_request(run, site_d, queues):
    k, e = ts.TRUCK_IN_RUN, ts.END_ROW
    assert run.next_stop[k, e] >= 0 and np.isin(run.state[k, :e], STOP_STATES).any()
    truck = haul_truck(site_d)
    end_at = ts.recent_end()
    ts.store_history(run, truck, end_at)
    first = e - (serving.HISTORY_S + 30) + 1  # store_history's positions start there
    store(run, {k: truck}, end_at - timedelta(seconds=e), e, fixes_before=first)
    heads = {"eta": {"queue": queues("eta")}}

    report = serving.dispatch({truck.id: site_d.id}, routes=heads)

    assert report == {f"{head}:no_route": 1 for head in serving.HEADS if head != "eta"} | {
        "eta:sent": 1
    }
    deployment, inputs, _ = ts.read_one(heads["eta"]["queue"]).payload[0]
    assert deployment == "eta" and set(inputs) == {"window", "features"}
