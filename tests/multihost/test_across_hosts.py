"""The platform across hosts, and a host that dies for good.

Four hosts, each a network namespace with its own address on one bridge (tests/multihost/netns.py):

  services 10.231.0.1  the MQTT broker (the project's Mosquitto, its generated logins and ACLs),
                       PostgreSQL, Redis and RabbitMQ (this machine's, forwarded to this address)
                       and the pool's scheduler
  host-a   10.231.0.2  an ingest replica (``ingest --replica host-a``) and a worker node
  host-b   10.231.0.3  an ingest replica (``ingest --replica host-b``) and a worker node
  site     10.231.0.4  the trucks: each its own login and session, QoS 1, every PUBACK counted

Both hosts store the trucks' positions (one shared subscription, a persistent session each) and
serve a deployment (one replica each). Then host-a dies, never to return: (a) every process on
it is SIGKILLed; (b) its link goes down, its processes running on and unreachable. Its share of
the trucks' messages waits at the broker on its session; host-b's replica sees its heartbeat
expire, adopts the session, drains it into the history and ends it; the scheduler places the
deployment's work on host-b, and RabbitMQ hands host-a's unacknowledged requests to it. Checked:
every acknowledged message stored once, none twice; every inference request answered, those
after the kill by host-b. The drained messages' lag is printed (run with -s) and recorded in
docs/operations.md ("Across hosts").
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection

from fleet.protocol import topics
from fleet.telemetry.models import IngestReplica, Position
from fleet.vehicles.broker import (
    SERVICE_LOGINS,
    BrokerPaths,
    service_password,
    write_broker_files,
)
from fleet.vehicles.credentials import issue_credentials
from inference.placement import Deployment
from inference.pool import PoolStore
from inference.worker import make_app, queue_name, read_response, send_request
from tests.conftest import wait_until
from tests.factories import haul_truck
from tests.inference.conftest import checkpoints, windows  # noqa: F401 - the fixture
from tests.multihost.netns import Host, NetnsUnavailable, Network, require_netns

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

TRUCKS = 20
RATE_HZ = 5
MQTT_PORT = 1883
ADOPT_S = 15  # INGEST_REPLICA_ADOPT_S: the least it may be (three heartbeats)


def _moved(url: str, host: str) -> str:
    """``url`` with its host replaced (a forwarded loopback service seen from the namespaces)."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@{host}:{parts.port}" if auth else f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class Pit:
    """The platform on the network's hosts; the test drives it and reads its outcome."""

    def __init__(self, network: Network, workdir: Path, deployment: Deployment) -> None:
        self.network = network
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir()
        self.services = network.add_host("services")
        self.host_a = network.add_host("host-a")
        self.host_b = network.add_host("host-b")
        self.site = network.add_host("site")
        self.deployment = deployment
        self.prefix = f"haulmind:test-pool:{uuid.uuid4().hex[:8]}"
        # The hosts' own general task queue: what their processes enqueue must not be left in
        # the suite's queue for the next test's worker to work through first.
        self.task_queue = f"haulmind-multihost-{uuid.uuid4().hex[:8]}"
        self.store = PoolStore(prefix=self.prefix)
        self.app = make_app(settings.CELERY_BROKER_URL, settings.CELERY_RESULT_BACKEND)
        self.trucks_process = None
        self.env = self._env()

    def _env(self) -> dict[str, str]:
        import os

        db = settings.DATABASES["default"]
        address = self.services.address
        user = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        database = connection.settings_dict["NAME"]
        for url, default_port in (
            (settings.REDIS_URL, 6379),
            (settings.CELERY_BROKER_URL, 5672),
        ):
            port = urlsplit(url).port or default_port
            self.network.forward(self.services, port, urlsplit(url).hostname, port)
        self.network.forward(self.services, int(db["PORT"] or 5432), db["HOST"], int(db["PORT"]))
        return {
            **os.environ,
            "DATABASE_URL": f"postgis://{user}@{address}:{db['PORT']}/{database}",
            "DATABASE_CONN_MAX_AGE": "0",
            "REDIS_URL": _moved(settings.REDIS_URL, address),
            "CELERY_BROKER_URL": _moved(settings.CELERY_BROKER_URL, address),
            "CELERY_RESULT_BACKEND": _moved(settings.CELERY_RESULT_BACKEND, address),
            # A worker cut off from RabbitMQ gives its requests back after two missed beats.
            "CELERY_BROKER_HEARTBEAT_S": "4",
            "MQTT_URL": f"mqtt://{address}:{MQTT_PORT}",
            **{
                f"MQTT_{login.name.upper()}_PASSWORD": service_password(login, self.broker_paths)
                for login in SERVICE_LOGINS
            },
            "MQTT_MANAGE_LOGINS": "0",
            "HAULMIND_POOL_PREFIX": self.prefix,
            "CELERY_TASK_DEFAULT_QUEUE": self.task_queue,
            "HAULMIND_VAR_DIR": str(self.workdir / "var"),
            "INGEST_REPLICA_ADOPT_S": str(ADOPT_S),
        }

    @property
    def broker_paths(self) -> BrokerPaths:
        return BrokerPaths(self.workdir / "mosquitto")

    def start_broker(self) -> None:
        """The project's Mosquitto on the services host, its logins from the credential table."""
        paths = write_broker_files(self.broker_paths, port=MQTT_PORT, host=self.services.address)
        self.network.spawn(
            self.services, ["mosquitto", "-c", str(paths.config)], log=self.logs / "mosquitto.log"
        )
        self.network.wait_for_port(self.services, MQTT_PORT)

    def python(self, host: Host, name: str, *args: str) -> None:
        import sys

        self.network.spawn(
            host, [sys.executable, *args], log=self.logs / f"{name}.log", env=self.env
        )

    def start_platform(self) -> None:
        self.store.put_deployment(self.deployment)
        self.python(self.services, "scheduler", "-m", "inference.scheduler", "--tick", "0.2")
        for host in (self.host_a, self.host_b):
            self.python(
                host,
                f"ingest-{host.name}",
                "manage.py",
                "ingest",
                "--replica",
                host.name,
                "--metrics-port",
                "0",
            )
            self.python(
                host,
                f"node-{host.name}",
                "-m",
                "inference.node",
                "--name",
                host.name,
                "--slices",
                "cpu=1",
                "--no-cgroup",
                "--log-dir",
                str(self.logs),
            )

    def start_trucks(self, fleet: list[dict[str, str]]) -> None:
        import sys

        (self.workdir / "fleet.json").write_text(json.dumps(fleet))
        self.trucks_process = self.network.spawn(
            self.site,
            [
                sys.executable,
                "-m",
                "tests.multihost.trucks",
                "--broker",
                f"{self.services.address}:{MQTT_PORT}",
                "--fleet",
                str(self.workdir / "fleet.json"),
                "--rate",
                str(RATE_HZ),
                "--out",
                str(self.workdir / "published.json"),
            ],
            log=self.logs / "trucks.log",
            env=self.env,
        )

    def stop_trucks(self) -> dict[str, dict]:
        self.trucks_process.send_signal(signal.SIGTERM)
        self.trucks_process.wait(60)
        return json.loads((self.workdir / "published.json").read_text())

    def serving_nodes(self) -> set[str]:
        return {
            record["node"]
            for record in self.store.slice_records()
            if self.deployment.name in record.get("serving", ())
        }

    def planned_nodes(self) -> set[str]:
        record = self.store.read_plan()
        replicas = record.plan.replicas.get(self.deployment.name, ()) if record else ()
        return {key.split("/", 1)[0] for key in replicas}

    def tail(self, size: int = 2500) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-size:]}"
            for path in sorted(self.logs.glob("*.log"))
        )

    def wait(self, condition, timeout: float, what: str) -> None:
        """``wait_until``, failing with the hosts' logs as they are at the timeout."""
        try:
            wait_until(condition, timeout=timeout, what=what)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.tail()}") from None

    def close(self) -> None:
        with self.app.connection_for_write() as amqp:
            channel = amqp.channel()
            channel.queue_delete(queue_name(self.deployment.name))
            channel.queue_delete(self.task_queue)
        self.store.clear()


class Requests(threading.Thread):
    """Inference requests sent at a steady pace until stopped: (sent at, its result)."""

    def __init__(self, pit: Pit, per_s: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.pit, self.period = pit, 1.0 / per_s
        self.sent: list[tuple[float, object]] = []
        self.stopping = threading.Event()
        self.inputs = windows(64, seed=5)
        self.lock = threading.Lock()  # the burst is sent from the test's thread

    def send(self, count: int = 1) -> None:
        with self.lock:
            for _ in range(count):
                row = len(self.sent) % len(self.inputs)
                result = send_request(
                    self.pit.app, self.pit.deployment.name, {"window": self.inputs[row : row + 1]}
                )
                self.sent.append((time.monotonic(), result))

    def run(self) -> None:
        while not self.stopping.wait(self.period):
            self.send()

    def answers(self, timeout_s: float) -> list[tuple[float, str]]:
        """(sent at, the node that served it) of every request; raises on one not answered."""
        self.stopping.set()
        self.join(10)
        deadline = time.monotonic() + timeout_s
        answered = []
        for sent_at, result in self.sent:
            answer = result.get(timeout=max(1.0, deadline - time.monotonic()))
            assert read_response(answer).outputs["payload_t"].shape == (1,)
            answered.append((sent_at, answer["replica"].rsplit("@", 1)[1]))
        return answered


@pytest.fixture
def network():
    try:
        require_netns()
    except NetnsUnavailable as error:
        pytest.fail(f"the multi-host test makes network namespaces, and cannot here: {error}")
    made = Network()
    try:
        yield made
    finally:
        made.close()
        assert not made.leftovers(), "namespaces or links left behind"


@pytest.fixture
def pit(network, tmp_path, transactional_db, settings, checkpoints):  # noqa: F811
    deployment = Deployment(
        name=f"payload-{uuid.uuid4().hex[:6]}",
        checkpoint=str(checkpoints["payload"]),
        model="payload",
        memory_bytes=64 << 20,
        compute_share=0.25,
        strategy="spread",
        min_replicas=2,
        max_replicas=2,
        batching={"max_batch_size": 8, "max_queue_delay_ms": 5},
    )
    made = Pit(network, tmp_path, deployment)
    yield made
    made.close()


def provision(site) -> list[dict[str, str]]:
    fleet = []
    for number in range(TRUCKS):
        truck = haul_truck(site, name=f"HT-{number:03d}")
        secrets = issue_credentials(truck)
        fleet.append(
            {
                "equipment_id": str(truck.id),
                "username": secrets.mqtt_username,
                "password": secrets.mqtt_password,
                "topic": topics.up_topic(site.slug, str(truck.id), "MachinePositionV1"),
            }
        )
    return fleet


@pytest.mark.parametrize("death", ["sigkill", "link-down"])
def test_a_host_that_dies_for_good_loses_nothing(pit, site, death):
    fleet = provision(site)
    pit.start_broker()  # after the credentials: its logins are read from the table at start
    pit.start_platform()
    both = {"host-a", "host-b"}
    pit.wait(
        lambda: set(IngestReplica.objects.values_list("name", flat=True)) == both,
        timeout=90,
        what="both ingest replicas announced",
    )
    pit.wait(
        lambda: pit.serving_nodes() == both,
        timeout=120,
        what="a replica of the deployment serving on each host",
    )
    pit.start_trucks(fleet)
    pit.wait(
        lambda: "trucks connected" in (pit.logs / "trucks.log").read_text(),
        timeout=45,
        what="the trucks connected to the broker",
    )
    requests = Requests(pit)
    requests.start()
    stored = Position.objects.filter(equipment_id__in=[t["equipment_id"] for t in fleet])
    pit.wait(
        lambda: (
            stored.count() > TRUCKS * RATE_HZ * 4
            and all(r.stored > 0 for r in IngestReplica.objects.all())
        ),
        timeout=60,
        what="both replicas storing",
    )
    requests.send(200)  # a burst: host-a holds some of it, prefetched and unacknowledged
    if death == "sigkill":
        killed = pit.network.kill_host(pit.host_a)
        assert killed >= 3, "host-a's ingest replica, node and slice worker"
    else:
        pit.network.cut_link(pit.host_a)
        assert pit.network.pids(pit.host_a), "host-a's processes run on, cut off"
    died_at = time.monotonic()

    # host-b adopts host-a's session once its heartbeat has expired, and drains it.
    pit.wait(
        lambda: IngestReplica.objects.get(name="host-a").retired_at is not None,
        timeout=ADOPT_S + 60,
        what="host-a's replica adopted and retired",
    )
    adopted_after_s = time.monotonic() - died_at
    pit.wait(
        lambda: pit.planned_nodes() == {"host-b"},
        timeout=30,
        what="the deployment's work on host-b only",
    )
    time.sleep(3)  # the trucks go on; everything now reaches host-b's replica
    published = pit.stop_trucks()

    acked = {(truck, seq) for truck, outcome in published.items() for seq in outcome["acked"]}
    assert not any(outcome["unacked"] or outcome["refused"] for outcome in published.values())
    pit.wait(
        lambda: stored.count() >= len(acked),
        timeout=60,
        what=f"all {len(acked)} acknowledged messages stored",
    )
    rows = Counter((str(e), s) for e, s in stored.values_list("equipment_id", "sequence"))
    assert not [key for key, n in rows.items() if n > 1], "a message stored twice"
    assert set(rows) == acked, "stored == acknowledged, message for message"

    answered = requests.answers(timeout_s=90)
    after = [node for sent_at, node in answered if sent_at > died_at]
    assert after and set(after) == {"host-b"}, "requests after the death served by host-b"
    before = Counter(node for sent_at, node in answered if sent_at <= died_at)

    host_a = IngestReplica.objects.get(name="host-a")
    assert host_a.host == "host-b", "the record says who adopted it"
    assert host_a.drained > 0, "host-a's session held messages: they were drained"
    summary = {
        "death": death,
        "trucks": TRUCKS,
        "published_acked": len(acked),
        "stored": len(rows),
        "duplicates": 0,
        "adopted_after_s": round(adopted_after_s, 1),
        "drained": host_a.drained,
        "drain_lag_p50_s": host_a.drain_lag_p50_s,
        "drain_lag_max_s": host_a.drain_lag_max_s,
        "requests": len(answered),
        "requests_before_death_by_node": dict(before),
        "requests_after_death_on_host_b": len(after),
    }
    print(f"\nacross hosts: {json.dumps(summary)}")
    # The first drained messages waited at the broker from the death to the adoption.
    assert 5 < host_a.drain_lag_max_s < adopted_after_s + 30
