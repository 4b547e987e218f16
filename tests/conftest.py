"""Shared test configuration."""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import pytest

from _helpers import EXPECTED, strict

logging.getLogger("flowcat").setLevel(logging.INFO)


def _unexpected_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    """Under CI=true a skip is a failure unless its reason declares an expected absence (_helpers.expected)."""
    if not (report.skipped and strict()) or getattr(report, "wasxfail", None) is not None:
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    if reason.startswith("Skipped: "):
        reason = reason[len("Skipped: ") :]
    if reason.startswith(EXPECTED):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true (only '{EXPECTED}...' skips are allowed): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    _unexpected_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    _unexpected_skip(outcome.get_result())
