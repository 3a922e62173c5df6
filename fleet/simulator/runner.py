"""Setting the simulator up from the database (Django side): which trucks, their broker
credentials, the site's world. The ``simulate`` command and the benchmarks start fleets here.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

from fleet.mine.models import Site
from fleet.simulator.engine import Engine, TruckSpec
from fleet.simulator.link import LinkOptions, SimulatedFleet, TruckIdentity
from fleet.simulator.world import world_for_site
from fleet.vehicles.credentials import issue_credentials
from fleet.vehicles.models import Credential, Equipment
from fleet.vehicles.passwords import check_mosquitto_hash


class SimulatorSetupError(Exception):
    """The simulator cannot start: the message says what to run first."""


def credentials_path() -> Path:
    return Path(settings.VAR_DIR) / "simulator" / "credentials.json"


def haul_trucks(site: Site, count: int, offset: int = 0) -> list[Equipment]:
    """The site's autonomous haul trucks by fleet number, ``count`` of them after the first
    ``offset`` (so several simulator processes can share a large fleet)."""
    trucks = list(
        Equipment.objects.filter(site=site, kind=Equipment.Kind.HAUL_TRUCK, autonomous=True)
        .exclude(status=Equipment.Status.RETIRED)
        .order_by("name")[offset : offset + count]
    )
    if len(trucks) < count:
        needed = offset + count
        raise SimulatorSetupError(
            f"site {site.slug} has {offset + len(trucks)} autonomous haul truck(s), {needed} "
            f"needed; run `python manage.py create_demo_mine --trucks {needed}`"
        )
    return trucks


def ensure_credentials(
    trucks: Sequence[Equipment], path: Path | None = None
) -> list[TruckIdentity]:
    """Broker identities for ``trucks``: the MQTT secrets kept in ``path`` (mode 0600) where
    they still match the live credential, new ones issued otherwise (each reaches the broker as
    it commits)."""
    path = path or credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Several simulator processes may share the file: one at a time reads, issues, writes.
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_credentials(trucks, path)


def _ensure_credentials(trucks: Sequence[Equipment], path: Path) -> list[TruckIdentity]:
    stored: dict[str, dict] = json.loads(path.read_text()) if path.exists() else {}
    live = {
        str(c.equipment_id): c.secret_hash
        for c in Credential.objects.filter(
            equipment__in=trucks, kind=Credential.Kind.MQTT, revoked_at__isnull=True
        )
    }
    issued = 0
    for truck in trucks:
        eid = str(truck.id)
        secret = (stored.get(eid) or {}).get("mqtt_password")
        if secret is None or eid not in live or not check_mosquitto_hash(secret, live[eid]):
            credentials = issue_credentials(truck)
            stored[eid] = {"name": truck.name, "mqtt_password": credentials.mqtt_password}
            issued += 1
    if issued:
        _write_secret_file(path, stored)
    return [
        TruckIdentity(
            str(t.id), t.name, stored[str(t.id)]["mqtt_password"], t.payload_capacity_t or 90.0
        )
        for t in trucks
    ]


def _write_secret_file(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1)
    os.replace(tmp, path)


def link_options(site: Site, **overrides: object) -> LinkOptions:
    """Broker address and topic root from the settings (MQTT_URL, MQTT_TOPIC_ROOT)."""
    url = urlsplit(settings.MQTT_URL)
    values: dict = {
        "host": url.hostname or "127.0.0.1",
        "port": url.port or (8883 if url.scheme == "mqtts" else 1883),
        "site": site.slug,
        "topic_root": settings.MQTT_TOPIC_ROOT,
        "tls": url.scheme == "mqtts",
    }
    values.update(overrides)
    return LinkOptions(**values)


def build_fleet(
    site: Site,
    count: int,
    *,
    hz: float = 10.0,
    seed: int = 0,
    fault_rate: float = 0.0,
    permission_timeout_s: float | None = None,
    offset: int = 0,
    spread: bool = False,
    **options: object,
) -> SimulatedFleet:
    """A fleet of ``count`` of the site's trucks, not yet connected (the load generator for
    benchmarks: ``fleet.connect(); fleet.run(seconds); fleet.shutdown(); fleet.sent``);
    ``spread``: starting mid-shift, spread round their haul cycles, not at the park."""
    identities = ensure_credentials(haul_trucks(site, count, offset))
    specs = [TruckSpec(t.equipment_id, t.name, t.capacity_t) for t in identities]
    engine = Engine(
        world_for_site(site),
        specs,
        hz=hz,
        seed=seed,
        fault_rate=fault_rate,
        permission_timeout_s=permission_timeout_s,
        spread=spread,
    )
    return SimulatedFleet(engine, identities, link_options(site, **options))
