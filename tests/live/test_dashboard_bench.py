"""``bench dashboard``'s synthetic source at a tiny scale, in a real Chromium against the real ASGI
server: the figures are there, the socket keeps to its frame budget and every truck's newest
position reaches the page (behaviour, not timing)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group

from fleet.accounts.roles import VIEWER, sync_roles
from fleet.live.dashboard_bench import open_dashboard, provision_site, run_synthetic, viewer_login
from tests.browser.test_admin_map import chromium

pytestmark = pytest.mark.browser

BUILD = Path(__file__).resolve().parents[2] / "frontend" / "dist" / "index.html"
KEYS = {"frames_per_s", "bytes_per_frame", "updates_per_s", "lag_p95_ms", "draw_p95_ms"}


def test_every_trucks_update_reaches_the_page_in_at_most_ten_frames_a_second(asgi_server):
    assert BUILD.exists(), "the dashboard is not built: scripts/bootstrap.sh (npm run build)"
    if not Group.objects.filter(name=VIEWER).exists():  # transactional tests flush the roles
        sync_roles(django_apps)
    site, trucks = provision_site(20)
    login = viewer_login(site)
    with chromium() as browser:
        page, watch = open_dashboard(browser, asgi_server, site, login)
        figures = run_synthetic(page, watch, None, site, trucks, {"truck_hz": 5.0, "seconds": 4.0})
        page.close()
    assert figures.keys() >= KEYS
    # At most LIVE_MAX_FRAMES_PER_S: one frame more at the window's edge, no more.
    assert 0 < figures["frames_per_s"] * figures["seconds"] <= 10 * figures["seconds"] + 1
    assert figures["reconnections"] == 0
    assert figures["trucks_in_frames"] == 20
    assert figures["trucks_missed"] == 0  # each truck's newest position is on the page
    assert figures["updates_per_s"] > 0 and figures["lag_p95_ms"] is not None
    assert figures["draw_p95_ms"] is not None
