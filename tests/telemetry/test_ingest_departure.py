"""A scale-down's ingest pods leave for good (their names never come back): the preStop hook
asks the API server whether this pod's ordinal is beyond the StatefulSet's replicas, and the
replica that is told so drains its own session and ends it, against the project's real
Mosquitto with a truck publishing. Every message is stored once."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fleet.telemetry import departure, replicas
from fleet.telemetry.models import IngestReplica, Position
from fleet.vehicles.credentials import issue_credentials
from inference.health import problem
from tests.conftest import wait_until
from tests.factories import haul_truck
from tests.telemetry.test_ingest_replicas import Publisher, session_present, start_replica


@pytest.fixture
def quick_beats(monkeypatch):
    monkeypatch.setattr(replicas, "BEAT_S", 0.5)


@pytest.mark.parametrize(
    ("pod", "replicas", "leaving"),
    [("ingest-2", 2, True), ("ingest-1", 2, False), ("ingest-0", 0, True), ("ingest-0", 3, False)],
)
def test_a_pod_leaves_when_its_ordinal_is_beyond_the_statefulsets_replicas(pod, replicas, leaving):
    assert departure.departing(pod, {"spec": {"replicas": replicas}}) is leaving


def test_every_pod_leaves_with_a_statefulset_being_deleted():
    assert departure.departing("ingest-0", None)
    deleting = {"metadata": {"deletionTimestamp": "2026-12-06T18:00:00Z"}, "spec": {"replicas": 3}}
    assert departure.departing("ingest-0", deleting)


def test_a_pod_name_without_an_ordinal_is_refused():
    with pytest.raises(ValueError, match="not a StatefulSet pod name"):
        departure.ordinal_of("ingest")


class FakeApiServer(BaseHTTPRequestHandler):
    """Answers GET .../statefulsets/NAME with what ``statefulsets`` holds, checking the token."""

    statefulsets: dict[str, dict] = {}
    paths: list[str] = []

    def do_GET(self) -> None:
        self.paths.append(self.path)
        name = self.path.rsplit("/", 1)[-1]
        if self.headers.get("Authorization") != "Bearer pod-token":
            self.send_response(401)
            self.end_headers()
            return
        if name not in self.statefulsets:
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps(self.statefulsets[name]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_the_statefulset_is_read_from_the_api_server_with_the_pods_token():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeApiServer.statefulsets = {"ingest": {"spec": {"replicas": 2}}}
    api = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        found = departure.read_statefulset(api, "mine-a", "ingest", token="pod-token")
        assert found == {"spec": {"replicas": 2}}
        assert FakeApiServer.paths[-1] == "/apis/apps/v1/namespaces/mine-a/statefulsets/ingest"
        assert departure.read_statefulset(api, "mine-a", "gone", token="pod-token") is None
        with pytest.raises(Exception, match="401"):
            departure.read_statefulset(api, "mine-a", "ingest", token="stolen")
    finally:
        server.shutdown()


def test_outside_a_cluster_the_hook_keeps_the_session(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("POD_NAME", "ingest-3")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    marker = tmp_path / "leaving"
    assert departure.main([str(marker)]) == 0
    assert not marker.exists() and "keeping the session" in capsys.readouterr().err


def test_a_leaving_replica_drains_its_own_session_and_ends_it(
    mqtt_broker, site, quick_beats, monkeypatch, tmp_path
):
    health = tmp_path / "ingest-healthy"
    monkeypatch.setenv("HAULMIND_HEALTH_FILE", str(health))
    truck = haul_truck(site)
    publisher = Publisher(mqtt_broker.port, truck, issue_credentials(truck))
    (a, a_thread), (b, b_thread) = start_replica("a"), start_replica("b")
    stored = Position.objects.filter(equipment_id=truck.id)
    publisher.start()
    try:
        wait_until(lambda: stored.count() > 200, what="both replicas storing")
        assert problem(health, 5) is None, "the replicas touch their health file with each beat"
        b.leave()  # SIGTERM with the preStop hook's file present
        b_thread.join(30)
        assert not b_thread.is_alive(), "b drained and stopped"
        assert b.retired
        time.sleep(1)  # after b left, everything goes to a
        sent = publisher.finish()
        wait_until(lambda: stored.count() == sent, what=f"all {sent} rows ({stored.count()})")
    finally:
        publisher.stopping.set()
        a.stop()
        a_thread.join(10)
        if b_thread.is_alive():
            b.stop()
            b_thread.join(10)
    assert sorted(stored.values_list("sequence", flat=True)) == list(range(sent))
    assert IngestReplica.objects.get(name="b").retired_at is not None
    assert IngestReplica.objects.get(name="a").retired_at is None
    assert not session_present(mqtt_broker, "b"), "the broker kept b's session"
    assert not health.exists(), "replicas that stopped leave no health file"
