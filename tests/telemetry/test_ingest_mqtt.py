"""Ingest through the real broker: per-truck credentials, the shared subscription, acks after
commit, and a replica killed with SIGKILL losing nothing and storing nothing twice."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fleet.telemetry.ingest import IngestOptions, IngestRunner
from fleet.telemetry.models import Position, Rejection
from fleet.vehicles.credentials import issue_credentials
from tests.conftest import ChildProcess, wait_until
from tests.factories import haul_truck, truck_message

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def link(mqtt_broker, site):
    """A provisioned truck on the test's own broker (the settings point the FMS at it)."""
    truck = haul_truck(site)
    secrets = issue_credentials(truck)
    return truck, secrets, mqtt_broker


def truck_client(secrets, port: int) -> paho.Client:
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=secrets.mqtt_username,  # a machine's login is bound to its EquipmentId
        protocol=paho.MQTTv5,
    )
    client.username_pw_set(secrets.mqtt_username, secrets.mqtt_password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def up(site, truck, name="MachinePositionV1") -> str:
    return f"iso23725/v1/{site.slug}/{truck.id}/up/{name}"


def publish_all(
    client: paho.Client, topic: str, payloads: list[bytes], *, pace_s: float = 0
) -> None:
    infos = []
    for payload in payloads:
        infos.append(client.publish(topic, payload, qos=1))
        if pace_s:
            time.sleep(pace_s)
    for info in infos:
        info.wait_for_publish(timeout=30)


def positions(count: int, truck) -> list[bytes]:
    """Different positions whose Timestamps come in pairs, the second of a pair without a
    HeaderId (a truck batching fixes): only their bodies (speed i/100 km/h) tell those apart."""
    start = datetime.now(UTC) - timedelta(seconds=60)
    return [
        truck_message(
            truck.id,
            at=start + timedelta(milliseconds=i // 2),
            sequence=None if i % 2 else i,
            speed=i / 100,
        )
        for i in range(count)
    ]


def test_ingest_stores_what_a_truck_publishes_and_quarantines_the_malformed(link, site):
    truck, secrets, broker = link
    runner = IngestRunner(IngestOptions(client_id="ingest-test", batch_delay_s=0.02))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    assert runner.connected.wait(10)
    client = truck_client(secrets, broker.port)
    try:
        good = positions(200, truck)
        publish_all(
            client, up(site, truck), [*good[:100], b'{"Protocol": "ISO23725",', *good[100:]]
        )
        wait_until(
            lambda: Position.objects.filter(equipment_id=truck.id).count() == 200, what="200 rows"
        )
        wait_until(lambda: Rejection.objects.count() == 1, what="the rejection")
    finally:
        client.loop_stop()
        runner.stop()
        thread.join(10)
    assert Rejection.objects.get().reason == "invalid_json"


def test_a_truck_cannot_publish_on_another_trucks_topic(link, site):
    truck, secrets, broker = link
    other = haul_truck(site, "HT-002")
    issue_credentials(other)
    runner = IngestRunner(IngestOptions(client_id="ingest-acl-test", batch_delay_s=0.02))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    assert runner.connected.wait(10)
    client = truck_client(secrets, broker.port)
    try:
        # The broker's ACL drops it: it never reaches ingest, so nothing is stored for HT-002.
        publish_all(client, up(site, other), [truck_message(other.id)])
        publish_all(client, up(site, truck), [truck_message(truck.id)])
        wait_until(lambda: Position.objects.filter(equipment_id=truck.id).exists(), what="own row")
        time.sleep(0.5)
    finally:
        client.loop_stop()
        runner.stop()
        thread.join(10)
    assert not Position.objects.filter(equipment_id=other.id).exists()


def test_a_replica_killed_mid_stream_loses_nothing_and_stores_nothing_twice(
    link, site, tmp_path, settings
):
    truck, secrets, broker = link
    env = {
        "MQTT_URL": settings.MQTT_URL,
        "HAULMIND_VAR_DIR": str(settings.VAR_DIR),  # the services' broker passwords
        "REDIS_KEY_PREFIX": settings.REDIS_KEY_PREFIX,
        "INGEST_METRICS_PORT": "0",
        "INGEST_BATCH_SIZE": "50",
    }
    argv = [sys.executable, "manage.py", "ingest", "--replica", "kill-test", "--metrics-port", "0"]

    def start(log_name: str) -> ChildProcess:
        previous = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            return ChildProcess(argv, tmp_path / log_name)
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    sent = positions(3000, truck)
    replica = start("ingest-1.log")
    stored = Position.objects.filter(equipment_id=truck.id)
    client = truck_client(secrets, broker.port)
    try:
        # Publishing starts once the share is subscribed: before, the broker has no session
        # to keep messages for (a fresh database makes the replica's start slow enough to show).
        wait_until(lambda: "ingest subscribed" in replica.output(), 60, "ingest subscribed")
        publisher = threading.Thread(
            target=publish_all, args=(client, up(site, truck), sent), kwargs={"pace_s": 0.0005}
        )
        publisher.start()
        wait_until(lambda: stored.count() >= 500, 60, "a first part stored")
        replica.process.send_signal(signal.SIGKILL)
        replica.process.wait(10)
        killed_at = stored.count()
        publisher.join(60)
        replica = start("ingest-2.log")
        wait_until(
            lambda: stored.count() == len(sent),
            90,
            f"all {len(sent)} rows ({stored.count()} so far)",
        )
    finally:
        client.loop_stop()
        replica.stop()
    assert 0 < killed_at < len(sent)
    # Every message once: the redelivered ones were recognised, those sharing a Timestamp kept.
    assert stored.count() == len(sent)
    speeds = sorted(round(v * 100) for v in stored.values_list("speed_kmh", flat=True))
    assert speeds == list(range(len(sent)))


def test_a_slow_database_holds_messages_at_the_broker_not_in_memory(link, site):
    """While the history table is locked, the replica's queue never grows past its limit
    (the broker keeps the rest); when the lock goes, everything is stored."""
    import psycopg
    from django.db import connection

    truck, secrets, broker = link
    runner = IngestRunner(
        IngestOptions(
            client_id="ingest-slow-db",
            batch_size=20,
            batch_delay_s=0.02,
            queue_limit=50,
            receive_maximum=20,
        )
    )
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    assert runner.connected.wait(10)
    params = connection.get_connection_params()
    blocker = psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"})
    client = truck_client(secrets, broker.port)
    deepest = 0
    try:
        blocker.execute("LOCK TABLE telemetry_position IN EXCLUSIVE MODE")
        publisher = threading.Thread(
            target=publish_all, args=(client, up(site, truck), positions(500, truck))
        )
        publisher.start()
        for _ in range(30):  # 3 s of a database that does not answer
            deepest = max(deepest, runner.inbox.qsize())
            time.sleep(0.1)
        publisher.join(30)  # the broker took all 500 from the truck meanwhile
        stored_while_locked = Position.objects.filter(equipment_id=truck.id).count()
        blocker.rollback()  # the lock goes
        wait_until(
            lambda: Position.objects.filter(equipment_id=truck.id).count() == 500,
            60,
            "all 500 rows",
        )
    finally:
        blocker.close()
        client.loop_stop()
        runner.stop()
        thread.join(10)
    assert stored_while_locked == 0
    assert deepest <= 50  # held in memory: at most the queue, the rest waits at the broker
