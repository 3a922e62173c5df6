"""Shared fixtures: the roles as named users, and a small site built through the map importer.

Tests run against the real PostGIS, Redis, RabbitMQ and the project's Mosquitto that
``make test`` starts. A missing service stops the run with one line naming it, and a test that
skips for any reason other than missing hardware fails: the suite never goes green by skipping.
"""

from __future__ import annotations

import uuid

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group, User
from django.db.models.signals import post_save
from django.dispatch import receiver

from fleet.accounts.roles import ADMIN, OPERATOR, SUPERVISOR, VIEWER, sync_roles
from fleet.mine.mapfile import import_site_map
from fleet.mine.models import Site
from tests.factories import small_site_map, user_with_password

# The suite never goes green by skipping (tests/strict.py): a missing service stops the run with
# one line naming it, and a skip for anything but missing hardware fails. pytester runs the
# plugin's own tests.
pytest_plugins = ["tests.strict", "pytester"]


@pytest.fixture(autouse=True, scope="session")
def empty_task_queue_of_the_suite():
    """Tasks left by an earlier run (enqueued by tests that start no worker) would be taken
    first by this run's workers. The suite's own queue (scripts/test.sh) starts empty; the
    default queue, a demo's, is never touched."""
    from django.conf import settings
    from kombu import Connection

    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    if queue != "celery":
        with Connection(settings.CELERY_BROKER_URL) as connection:
            channel = connection.default_channel
            channel.queue_declare(queue, durable=True, auto_delete=False)  # as Celery does
            channel.queue_purge(queue)


@pytest.fixture(autouse=True)
def isolated_var_dir(settings, tmp_path):
    """Files a test makes under VAR_DIR (broker auth, secrets) go to a scratch directory, so a
    test never rewrites the running demo broker's password file or ACL."""
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR


@pytest.fixture(autouse=True)
def isolated_artifact_store(settings, tmp_path):
    """Registered checkpoints go to a store and a cache of the test's own (never the demo's
    var/artifacts), so a test that corrupts a stored file harms no other."""
    settings.ARTIFACT_ROOT = str(tmp_path / "artifact-store")
    settings.ARTIFACT_ENDPOINT_URL = None
    settings.ARTIFACT_CACHE = tmp_path / "artifact-cache"
    return settings.ARTIFACT_ROOT


@pytest.fixture(autouse=True)
def clean_history_after_transactional_tests(request, django_db_blocker):
    """The partitioned history tables are unmanaged, so Django's flush after a transactional
    test leaves them alone: empty them here so no test sees another's rows."""
    yield
    marker = request.node.get_closest_marker("django_db")
    if "transactional_db" in request.fixturenames or (marker and marker.kwargs.get("transaction")):
        from django.db import connection

        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE telemetry_position, telemetry_event, telemetry_position_minute"
            )


@pytest.fixture(autouse=True)
def isolated_redis_keys(settings):
    """Latest state and other Haulmind keys of a test live under their own prefix, so tests
    never see the demo's trucks (or each other's) in the shared Redis."""
    settings.REDIS_KEY_PREFIX = f"haulmind-test-{uuid.uuid4().hex[:12]}"
    yield settings.REDIS_KEY_PREFIX


# The role fixtures' users are the crew of every site a test makes (users are members of sites,
# fleet.api.sites): most tests are about one site and what a role may do there. Tests of who sees
# which site make their users with ``crew=False`` and name the memberships they mean.
CREW: set[str] = set()


@receiver(post_save, sender=Site, dispatch_uid="tests-crew-joins-new-sites")
def _crew_joins(sender, instance: Site, created: bool, **kwargs) -> None:
    if created and CREW:
        instance.members.add(*User.objects.filter(username__in=CREW))


def _user_with_role(username: str, role: str | None, *, crew: bool = True) -> User:
    user = user_with_password(username)
    if crew:
        CREW.add(username)
        user.sites.add(*Site.objects.all())
    if role:
        if not Group.objects.filter(name=role).exists():  # transactional tests flush the roles
            sync_roles(django_apps)
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def viewer(db) -> User:
    return _user_with_role("vera-viewer", VIEWER)


@pytest.fixture
def operator(db) -> User:
    return _user_with_role("omar-operator", OPERATOR)


@pytest.fixture
def supervisor(db) -> User:
    return _user_with_role("sofia-supervisor", SUPERVISOR)


@pytest.fixture
def admin_user(db) -> User:
    user = _user_with_role("ada-admin", ADMIN)
    user.is_staff = True
    user.save()
    return user


@pytest.fixture
def outsider(db) -> User:
    """Logged in, but with no role at all."""
    return _user_with_role("otto-outsider", None)


@pytest.fixture
def site(db) -> Site:
    return import_site_map(small_site_map()).site


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_until(condition, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Broker:
    """A project Mosquitto instance of a test's own, configured exactly as the embedded one, in
    the test's scratch VAR_DIR. The test's settings point at it, so machines' logins reach it
    as their credentials commit, as they reach the embedded broker."""

    def __init__(self, settings, port: int) -> None:
        from fleet.vehicles.broker import embedded_paths

        settings.MQTT_URL = f"mqtt://127.0.0.1:{port}"
        settings.MQTT_MANAGE_LOGINS = True
        self.paths = embedded_paths()
        self.port = port
        self.process = None

    def start(self) -> None:
        import subprocess

        from fleet.vehicles.broker import write_broker_files

        write_broker_files(self.paths, port=self.port)
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(self.paths.config)], stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)

    def sync(self):
        """Reconcile the broker's logins with the credential table (what the periodic task and
        ``broker_config`` do); the report."""
        from fleet.vehicles.logins import reconcile_logins

        return reconcile_logins()

    def credentials(self, name: str = "ingest") -> tuple[str, str]:
        """(username, password) of one of the FMS's service logins: ingest, outbox or admin."""
        from fleet.vehicles.broker import SERVICE_LOGINS, service_password

        (login,) = [login for login in SERVICE_LOGINS if login.name == name]
        return login.username, service_password(login, self.paths)

    def log(self) -> str:
        return (self.paths.directory / "mosquitto.log").read_text()

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(autouse=True)
def no_broker_unless_asked(settings):
    """A test without a broker of its own changes no broker's logins (least of all the running
    demo's); ``mqtt_broker`` turns login management on against the test's own."""
    settings.MQTT_URL = "mqtt://127.0.0.1:1"  # nothing listens on port 1
    settings.MQTT_MANAGE_LOGINS = False


@pytest.fixture
def mqtt_broker(transactional_db, settings, isolated_var_dir):
    """Transactional: a machine's login reaches the broker when its credential commits."""
    broker = Broker(settings, free_port())
    broker.start()
    yield broker
    broker.stop()


def test_database_env() -> dict[str, str]:
    """The environment for a child process (server, worker) that must see the test database."""
    import os

    from django.conf import settings
    from django.db import connection

    db = settings.DATABASES["default"]
    url = f"postgis://{db['USER']}@{db['HOST']}:{db['PORT']}/{connection.settings_dict['NAME']}"
    if db.get("PASSWORD"):
        url = url.replace("@", f":{db['PASSWORD']}@", 1)
    return {**os.environ, "DATABASE_URL": url, "DATABASE_CONN_MAX_AGE": "0"}


class ChildProcess:
    """A real server or worker process of the project, stopped at the end of the test."""

    def __init__(self, argv: list[str], log_path) -> None:
        import subprocess
        from pathlib import Path

        self.log_path = log_path
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            argv,
            cwd=Path(__file__).resolve().parent.parent,
            env=test_database_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except Exception:
            self.process.kill()
        self.log.close()

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()


@pytest.fixture
def asgi_server(transactional_db, tmp_path):
    """uvicorn serving fleet.asgi:application against the test database; yields its base URL."""
    import sys

    port = free_port()
    server = ChildProcess(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "fleet.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--log-level",
            "warning",
        ],
        tmp_path / "uvicorn.log",
    )
    try:
        wait_for_port(port, timeout=30)
    except TimeoutError:
        server.stop()
        raise AssertionError(server.output()) from None
    yield f"http://127.0.0.1:{port}"
    server.stop()


def start_celery_worker(tmp_path, name: str) -> ChildProcess:
    """A real Celery worker (solo pool) on the configured broker, against the test database,
    named ``<name>-<the test's tmp dir>``, logging to tmp_path/celery.log."""
    import sys

    argv = [sys.executable, "-m", "celery", "-A", "fleet", "worker", "--pool=solo"]
    argv += ["--loglevel=INFO", "-n", f"{name}-{tmp_path.name}@%h"]
    return ChildProcess(argv, tmp_path / "celery.log")


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    """A real Celery worker on the configured broker, against the test database."""
    worker = start_celery_worker(tmp_path, "test")
    yield worker
    worker.stop()
