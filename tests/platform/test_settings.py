"""Start-up configuration: bad values stop the process with one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_SECRET = "x" * 20 + "y" * 20 + "Z9!" * 5


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "SECRET_KEY", "HAULMIND_ENV"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_a_database_url_of_another_engine_stops_start_up_naming_it():
    line = one_line_error(manage("check", DATABASE_URL="mysql://root@127.0.0.1/haulmind"))
    assert "DATABASE_URL" in line and "PostGIS" in line


def test_a_database_url_that_is_not_a_url_stops_start_up_naming_it():
    line = one_line_error(manage("check", DATABASE_URL="postgis://[broken"))
    assert line.startswith("haulmind: configuration error: DATABASE_URL")


def test_an_unreachable_database_stops_start_up_naming_it():
    line = one_line_error(manage("migrate", DATABASE_URL="postgis://postgres@127.0.0.1:1/haulmind"))
    assert "DATABASE_URL=postgis://postgres@127.0.0.1:1/haulmind does not answer" in line


def test_the_password_in_a_database_url_is_never_printed():
    line = one_line_error(
        manage("migrate", DATABASE_URL="postgis://app:s3cret@127.0.0.1:1/haulmind")
    )
    assert "s3cret" not in line and "app:***@" in line


def test_production_without_a_secret_key_stops_start_up_naming_it():
    line = one_line_error(manage("check", HAULMIND_ENV="production", ALLOWED_HOSTS="fms.example"))
    assert "SECRET_KEY is not set" in line


def test_a_secret_key_file_that_cannot_be_read_is_named(tmp_path):
    line = one_line_error(
        manage(
            "check",
            HAULMIND_ENV="production",
            SECRET_KEY_FILE=str(tmp_path / "nope"),
            ALLOWED_HOSTS="x",
        )
    )
    assert "SECRET_KEY_FILE" in line


def test_a_secret_key_can_come_from_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(GOOD_SECRET)
    result = manage(
        "check", HAULMIND_ENV="production", SECRET_KEY_FILE=str(secret), ALLOWED_HOSTS="fms.example"
    )
    assert result.returncode == 0, result.stderr


def test_a_malformed_boolean_is_named():
    line = one_line_error(manage("check", DEBUG="maybe"))
    assert "DEBUG='maybe' is not a boolean" in line


def test_an_adoption_delay_shorter_than_three_heartbeats_is_named():
    error = one_line_error(manage("check", INGEST_REPLICA_ADOPT_S="5"))
    assert "INGEST_REPLICA_ADOPT_S=5 is too short" in error


@pytest.mark.parametrize("variable", ["REDIS_URL", "MQTT_URL", "CELERY_BROKER_URL"])
def test_a_service_url_with_the_wrong_scheme_is_named(variable):
    line = one_line_error(manage("check", **{variable: "http://127.0.0.1:80"}))
    assert variable in line


def test_check_deploy_is_clean_with_production_settings():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        HAULMIND_ENV="production",
        SECRET_KEY=GOOD_SECRET,
        ALLOWED_HOSTS="fms.example",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_every_periodic_task_expires_when_its_next_run_is_due():
    """A worker that fell behind skips stale periodic runs instead of queueing them up."""
    from django.conf import settings

    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert 0 < entry["options"]["expires"] <= entry["schedule"], name
