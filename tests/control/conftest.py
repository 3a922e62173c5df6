"""A live mine for control's end-to-end tests: simulated trucks on the test's own broker, the
outbox's delivery and an ingest replica, all real, in threads of the test process."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from fleet.control.delivery import OutboxDelivery
from fleet.control.models import TruckState
from fleet.simulator.engine import Engine, TruckSpec
from fleet.simulator.link import LinkOptions, SimulatedFleet
from fleet.simulator.runner import ensure_credentials
from fleet.simulator.world import world_for_site
from fleet.telemetry.ingest import IngestOptions, IngestRunner
from fleet.vehicles.models import Equipment
from tests.conftest import wait_until


class LiveMine:
    """``trucks`` simulated on ``site``; ``stop()`` ends everything."""

    def __init__(
        self, broker, site, trucks: list[Equipment], credentials_path, speedup=2.0, **link
    ) -> None:
        self.site, self.trucks = site, trucks
        identities = ensure_credentials(trucks, credentials_path)
        engine = Engine(
            world_for_site(site),
            [TruckSpec(i.equipment_id, i.name) for i in identities],
            hz=5,
            seed=3,
        )
        options = LinkOptions(
            host="127.0.0.1", port=broker.port, site=site.slug, speedup=speedup, **link
        )
        self.fleet = SimulatedFleet(engine, identities, options)
        self.delivery = OutboxDelivery("outbox-live-mine")
        self.ingest = IngestRunner(IngestOptions(client_id="ingest-live-mine", batch_delay_s=0.02))
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self.delivery.run, daemon=True),
            threading.Thread(target=self.ingest.run, daemon=True),
        ]

    def start(self) -> LiveMine:
        for thread in self._threads:
            thread.start()
        assert self.ingest.connected.wait(10) and self.delivery.connected.wait(10)
        self.fleet.connect()
        simulator = threading.Thread(
            target=self.fleet.run, kwargs={"should_stop": self._stopping.is_set}, daemon=True
        )
        simulator.start()
        self._threads.append(simulator)
        wait_until(
            lambda: (
                TruckState.objects.filter(equipment__in=self.trucks, connection="Online").count()
                == len(self.trucks)
            ),
            30,
            "every simulated truck connected",
        )
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._threads[-1].join(10)
        self.fleet.shutdown()
        self.delivery.stop()
        self.ingest.stop()
        for thread in self._threads[:-1]:
            thread.join(15)


def autonomous_trucks(site, count: int) -> list[Equipment]:
    return [
        Equipment.objects.create(
            site=site,
            kind="haul_truck",
            name=f"HT-{n:03d}",
            payload_capacity_t=90,
            autonomous=True,
        )
        for n in range(1, count + 1)
    ]


@pytest.fixture
def live_mine(mqtt_broker, site, tmp_path) -> Iterator[LiveMine]:
    mine = LiveMine(mqtt_broker, site, autonomous_trucks(site, 3), tmp_path / "credentials.json")
    mine.start()
    yield mine
    mine.stop()
