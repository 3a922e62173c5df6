"""The suite cannot go green by skipping: tests/strict.py run on a small suite of its own in a
separate pytest process, against the real services."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

A_SUITE = {
    "test_skips": """
import pytest

def test_that_skips_for_a_service():
    pytest.skip("needs RabbitMQ")

def test_that_skips_for_hardware():
    pytest.skip("needs a CUDA GPU")

@pytest.mark.skipif(True, reason="no writable cgroup here: v2 /sys/fs/cgroup: read-only")
def test_that_skips_for_a_cgroup():
    pass

@pytest.mark.xfail(reason="flaky broker")
def test_that_is_expected_to_fail():
    assert False

def test_that_passes():
    pass
""",
    "test_module_skip": """
import pytest

pytest.importorskip("a_package_that_is_not_installed")

def test_never_collected():
    pass
""",
}


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "fleet.settings")
    pytester.makepyfile(**A_SUITE)
    return pytester


def run(pytester: pytest.Pytester) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "tests.strict", "-p", "no:cacheprovider", "-rA", "--continue-on-collection-errors"
    )


def test_a_skip_or_xfail_that_is_not_missing_hardware_fails_the_run(inner):
    result = run(inner)
    outcomes = result.parseoutcomes()
    # The service skip, the xfail and the skipped module fail; only the hardware skips skip.
    assert outcomes.get("failed") == 2 and outcomes.get("errors", outcomes.get("error")) == 1
    assert outcomes.get("skipped") == 2 and outcomes.get("passed") == 1
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        ["Skipped: needs RabbitMQ", "A skip or xfail is allowed only for missing hardware*"]
    )


def test_a_missing_service_stops_the_run_with_one_line_naming_it(inner, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    result = run(inner)
    assert result.ret == 3
    lines = [line for line in result.stdout.lines if "service missing" in line]
    assert len(lines) == 1
    assert "Redis at redis://127.0.0.1:1/0 does not answer" in lines[0]
