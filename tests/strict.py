"""A pytest plugin: the suite never goes green by skipping.

- Before the first test, every service the suite uses must answer (``tests/services.py``);
  otherwise the run stops with one line naming the missing one.
- A test (or a module) that skips or xfails for any reason other than hardware this machine
  lacks (a CUDA GPU, an Ascend NPU, a cgroup the kernel lets this process write) is reported as
  failed. A service that is down is a failure, never a skip.
"""

from __future__ import annotations

import re

import pytest

HARDWARE_SKIP = re.compile(r"\b(CUDA|NPU|Ascend|cgroup)\b", re.IGNORECASE)


def pytest_sessionstart(session: pytest.Session) -> None:
    from tests.services import missing_service

    missing = missing_service()
    if missing:
        pytest.exit(f"service missing: {missing}", returncode=3)


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str | None:
    if getattr(report, "wasxfail", None) is not None:
        return f"xfail: {report.wasxfail}" if report.wasxfail else "xfail"
    if report.skipped:
        longrepr = report.longrepr
        return longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return None


def _fail_unless_hardware(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = _skip_reason(report)
    if reason is None or HARDWARE_SKIP.search(reason):
        return
    report.outcome = "failed"
    if hasattr(report, "wasxfail"):
        del report.wasxfail
    report.longrepr = (
        f"{reason}\nA skip or xfail is allowed only for missing hardware (CUDA, NPU, a writable "
        "cgroup); anything else must run and pass."
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    _fail_unless_hardware(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    outcome = yield
    _fail_unless_hardware(outcome.get_result())
