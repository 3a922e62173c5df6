"""The probes an orchestrator runs: the web tier's /healthz and /readyz, and the health file of
fleet's Celery workers (a real worker on the configured broker)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from django.test import Client

from inference.health import problem
from tests.conftest import start_celery_worker, wait_until
from tests.platform.test_settings import manage


@pytest.fixture
def production_like(settings):
    """What a probe meets in production: a host list without the pod's address, a TLS redirect."""
    settings.ALLOWED_HOSTS = ["fms.example"]
    settings.SECURE_SSL_REDIRECT = True
    settings.DEBUG = False


def probe_get(path: str):
    # The kubelet calls the pod's own address over plain HTTP.
    return Client().get(path, HTTP_HOST="10.42.0.17:8000")


def test_healthz_answers_whatever_the_host_and_scheme(production_like):
    response = probe_get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert Client().get("/api/v1/me/", HTTP_HOST="10.42.0.17:8000").status_code == 400


@pytest.mark.django_db
def test_readyz_is_ok_when_the_database_and_redis_answer(production_like):
    response = probe_get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


@pytest.mark.django_db
def test_readyz_is_unavailable_naming_redis_when_it_does_not_answer(production_like, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = probe_get("/readyz/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("REDIS_URL=redis://127.0.0.1:1/0 does not answer")


@pytest.mark.django_db
def test_readyz_is_unavailable_naming_the_database_when_it_does_not_answer(
    production_like, monkeypatch
):
    from fleet import health
    from fleet.preflight import ServiceUnavailable

    def refuse() -> None:
        raise ServiceUnavailable("DATABASE_URL=postgis://db:5432/x does not answer as PostGIS")

    monkeypatch.setitem(health.CHECKS, "database", refuse)
    response = probe_get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "database": "DATABASE_URL=postgis://db:5432/x does not answer as PostGIS",
        "redis": "ok",
    }


def test_the_database_url_can_come_from_a_file(tmp_path):
    secret = tmp_path / "database-url"
    secret.write_text("mysql://root@db/haulmind\n")
    result = manage("check", DATABASE_URL_FILE=str(secret))
    assert result.returncode != 0 and "DATABASE_URL='mysql://root@db/haulmind'" in result.stderr


@pytest.mark.services
def test_a_celery_worker_touches_its_health_file_while_it_consumes(transactional_db, tmp_path):
    path = tmp_path / "celery-healthy"
    os.environ["HAULMIND_HEALTH_FILE"] = str(path)
    try:
        worker = start_celery_worker(tmp_path, "health")
    finally:
        del os.environ["HAULMIND_HEALTH_FILE"]
    try:
        wait_until(lambda: path.exists(), timeout=60, what="the worker's health file")
        os.utime(path, (time.time() - 100, time.time() - 100))
        wait_until(lambda: problem(path, 10) is None, timeout=15, what="a fresh touch")
        probe = subprocess.run(
            [sys.executable, "-m", "inference.health", str(path), "--max-age", "30"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert probe.returncode == 0, probe.stderr
    finally:
        worker.stop()
    assert worker.process.returncode == 0, worker.output()
    assert not path.exists(), "a worker that stopped cleanly leaves no health file"


def test_the_probes_answer_through_the_asgi_server(asgi_server):
    import json
    import urllib.request

    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(f"{asgi_server}{path}", timeout=10) as response:  # noqa: S310
            assert response.status == 200
            assert json.load(response)["status"] == "ok"
