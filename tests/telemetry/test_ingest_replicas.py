"""Ingest replicas are known by stable names, watched, and retired for good without leaving
anything at the broker: against the project's real Mosquitto, with trucks publishing."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as paho
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from paho.mqtt.enums import CallbackAPIVersion

from fleet.protocol import topics
from fleet.telemetry import replicas
from fleet.telemetry.ingest import IngestOptions, IngestRunner
from fleet.telemetry.models import IngestReplica, Position
from fleet.telemetry.tasks import watch_ingest_replicas
from fleet.vehicles.credentials import issue_credentials
from tests.conftest import wait_until
from tests.factories import haul_truck, truck_message


class Publisher(threading.Thread):
    """A truck publishing distinct positions at QoS 1 until stopped; counts what the broker took."""

    def __init__(self, port: int, truck, secrets, pace_s: float = 0.004) -> None:
        super().__init__(daemon=True)
        self.topic = topics.up_topic(truck.site.slug, str(truck.id), "MachinePositionV1")
        self.truck, self.pace_s = truck, pace_s
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=secrets.mqtt_username, protocol=paho.MQTTv5
        )
        self.client.username_pw_set(secrets.mqtt_username, secrets.mqtt_password)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.stopping = threading.Event()
        self.sent = 0

    def run(self) -> None:
        infos = []
        while not self.stopping.is_set():
            payload = truck_message(self.truck.id, at=datetime.now(UTC), sequence=self.sent)
            infos.append(self.client.publish(self.topic, payload, qos=1))
            self.sent += 1
            time.sleep(self.pace_s)
        for info in infos:
            info.wait_for_publish(timeout=30)

    def finish(self) -> int:
        self.stopping.set()
        self.join(60)
        self.client.disconnect()
        self.client.loop_stop()
        return self.sent


def start_replica(name: str) -> tuple[IngestRunner, threading.Thread]:
    runner = IngestRunner(IngestOptions(replica=name, batch_delay_s=0.02))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    assert runner.connected.wait(10)
    return runner, thread


@pytest.fixture
def quick_beats(monkeypatch):
    """Replicas beat every half second, so 'not running any more' takes 1.5 s, not 15."""
    monkeypatch.setattr(replicas, "BEAT_S", 0.5)


def test_a_replica_gone_for_good_is_retired_and_every_message_is_stored_once(
    mqtt_broker, site, quick_beats, capsys
):
    truck = haul_truck(site)
    publisher = Publisher(mqtt_broker.port, truck, issue_credentials(truck))
    (a, a_thread), (b, b_thread) = start_replica("a"), start_replica("b")
    stored = Position.objects.filter(equipment_id=truck.id)
    publisher.start()
    try:
        wait_until(lambda: stored.count() > 200, what="both replicas storing")
        b.stop()  # a scale-down: b never comes back, its session stays in the group
        b_thread.join(10)
        time.sleep(3)  # the broker queues b's share of the traffic meanwhile
        assert IngestReplica.objects.get(name="b").retired_at is None
        call_command("ingest", "--retire", "b", "--metrics-port", "0")
        time.sleep(1)  # after the retirement, everything goes to a
        sent = publisher.finish()
        wait_until(lambda: stored.count() == sent, what=f"all {sent} rows ({stored.count()})")
    finally:
        publisher.stopping.set()
        a.stop()
        a_thread.join(10)
    assert sorted(stored.values_list("sequence", flat=True)) == list(range(sent))
    retired = IngestReplica.objects.get(name="b")
    assert retired.retired_at is not None and retired.drained > 0
    # The drained messages waited at the broker while b was away (the first of them 3 s and
    # more): their lag says for how long.
    assert 0.5 < retired.drain_lag_p50_s <= retired.drain_lag_max_s
    assert 2.5 < retired.drain_lag_max_s < 60
    out = capsys.readouterr().out
    assert f"its session held {retired.drained} message(s)" in out and "lag p50" in out
    assert replicas.state(IngestReplica.objects.get(name="a")) == "live"
    assert not session_present(mqtt_broker, "b"), "the broker kept b's session"


def session_present(broker, name: str) -> bool:
    """Whether the broker still holds the persistent session of replica ``name``. Destructive
    (the session is resumed with expiry 0, and ends with this connection): ask it last."""
    flags: dict = {}
    connected = threading.Event()

    def on_connect(client, userdata, connect_flags, reason_code, properties) -> None:
        flags["present"] = connect_flags.session_present
        connected.set()

    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=replicas.client_id_for(name), protocol=paho.MQTTv5
    )
    client.username_pw_set(*broker.credentials("ingest"))
    client.on_connect = on_connect
    # Resume (clean_start False) and leave nothing behind (session expiry 0 by default).
    client.connect("127.0.0.1", broker.port, clean_start=False)
    client.loop_start()
    try:
        assert connected.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return flags["present"]


def test_a_running_replica_cannot_be_retired(mqtt_broker, quick_beats):
    runner, thread = start_replica("busy")
    try:
        with pytest.raises(CommandError, match="replica busy is running"):
            call_command("ingest", "--retire", "busy", "--metrics-port", "0")
    finally:
        runner.stop()
        thread.join(10)


def test_a_second_process_cannot_take_a_running_replicas_name(transactional_db, quick_beats):
    replicas.announce("x", replicas.client_id_for("x"))
    IngestReplica.objects.filter(name="x").update(host="elsewhere", pid=1)

    def beating() -> None:  # the other process goes on beating while this one waits
        from django.db import connection

        for _ in range(40):
            replicas.beat("x", 0)
            time.sleep(0.1)
        connection.close()  # this thread's own

    other = threading.Thread(target=beating)
    other.start()
    try:
        with pytest.raises(replicas.ReplicaError, match="replica x is running on elsewhere"):
            replicas.announce("x", replicas.client_id_for("x"))
    finally:
        other.join()


def test_a_replica_that_crashed_starts_again_at_once_under_its_name(db):
    """Its own last beat is seconds old, but the pid that sent it is dead."""
    import socket
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    replicas.announce("y", replicas.client_id_for("y"))
    IngestReplica.objects.filter(name="y").update(host=socket.gethostname(), pid=int(dead.stdout))
    started = time.monotonic()
    replicas.announce("y", replicas.client_id_for("y"))
    assert time.monotonic() - started < 1


def test_a_replica_moved_to_another_host_starts_once_its_old_beat_is_stale(db, quick_beats):
    replicas.announce("z", replicas.client_id_for("z"))
    IngestReplica.objects.filter(name="z").update(host="old-node", pid=1)
    started = time.monotonic()
    replicas.announce("z", replicas.client_id_for("z"))  # waits out three beats
    assert 1.0 < time.monotonic() - started < 3.0
    assert IngestReplica.objects.get(name="z").host != "old-node"


def test_ingest_needs_a_stable_replica_name(db, settings):
    settings.INGEST_REPLICA = None
    with pytest.raises(CommandError, match="needs a stable replica name"):
        call_command("ingest", "--metrics-port", "0")


def test_a_silent_replica_is_reported_once_and_shown_by_the_api(
    db, settings, caplog, api_client, viewer
):
    settings.INGEST_REPLICA_SILENT_S = 60
    replicas.announce("quiet", replicas.client_id_for("quiet"))
    replicas.announce("busy", replicas.client_id_for("busy"))
    IngestReplica.objects.filter(name="quiet").update(
        last_seen_at=timezone.now() - timedelta(minutes=5)
    )
    with caplog.at_level(logging.ERROR):
        assert watch_ingest_replicas() == ["quiet"]
        assert watch_ingest_replicas() == []  # once per silence
    assert "ingest replica quiet has been silent" in caplog.text
    assert "manage.py ingest --retire quiet" in caplog.text

    api_client.force_authenticate(viewer)
    listed = {r["name"]: r for r in api_client.get("/api/v1/ingest/replicas/").json()["results"]}
    assert listed["quiet"]["state"] == "silent" and listed["quiet"]["seconds_since_seen"] >= 300
    assert listed["busy"]["state"] == "live"
    only = api_client.get("/api/v1/ingest/replicas/", {"state": "silent"}).json()["results"]
    assert [r["name"] for r in only] == ["quiet"]
    assert "state" in api_client.get("/api/v1/ingest/replicas/", {"state": "asleep"}).json()
    replicas.beat("quiet", 10)  # it came back
    assert IngestReplica.objects.get(name="quiet").silent_alerted_at is None


def test_the_web_metrics_report_each_replicas_silence(db, client, settings):
    replicas.announce("quiet", replicas.client_id_for("quiet"))
    IngestReplica.objects.filter(name="quiet").update(
        last_seen_at=timezone.now() - timedelta(minutes=5)
    )
    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert 'haulmind_ingest_replica_seconds_since_seen{replica="quiet"}' in text
    assert "haulmind_ingest_replicas_silent 1.0" in text


def test_a_replica_whose_heartbeat_expired_is_claimed_by_one_survivor_only(db, settings):
    settings.INGEST_REPLICA_ADOPT_S = 15
    replicas.announce("gone", replicas.client_id_for("gone"))
    replicas.announce("alive", replicas.client_id_for("alive"))
    IngestReplica.objects.filter(name="gone").update(
        host="host-a", pid=1, last_seen_at=timezone.now() - timedelta(seconds=20)
    )
    assert replicas.adoptable(exclude="alive") == ["gone"]
    assert replicas.claim("gone", ("host-b", 2))
    assert not replicas.claim("gone", ("host-c", 3)), "a second survivor finds it claimed"
    assert replicas.adoptable(exclude="alive") == [], "the claim beats for it"
    # The original, cut off and back, finds its record taken and must stop.
    assert not replicas.beat("gone", 5, owner=("host-a", 1))
    assert replicas.beat("gone", 0, owner=("host-b", 2))
    settings.INGEST_REPLICA_ADOPT_S = 0
    IngestReplica.objects.filter(name="gone").update(
        last_seen_at=timezone.now() - timedelta(hours=1)
    )
    assert replicas.adoptable(exclude="alive") == [], "adoption off"
