"""Shared test configuration."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator, Iterator
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


# ------------------------------------------------------------------ no outside connections

_LOCAL = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture
def outside_attempts() -> list[str]:
    """Hosts outside the machine a test tried to resolve or connect to (see ``no_outside_connections``)."""
    return []


@pytest.fixture
def no_outside_connections(monkeypatch: pytest.MonkeyPatch, outside_attempts: list[str]) -> Iterator[None]:
    """Refuse (OSError, as an unreachable network would) and record any name resolution or TCP
    connect to a host other than 127.0.0.1/::1/localhost; fail at teardown if one was tried,
    unless the test cleared ``outside_attempts``. Provider tests use it with
    ``pytestmark = pytest.mark.usefixtures("no_outside_connections")``."""
    loop_cls = asyncio.BaseEventLoop
    real_connect = loop_cls.create_connection
    real_resolve = loop_cls.getaddrinfo

    def refuse(host: Any) -> None:
        outside_attempts.append(str(host))
        raise OSError(f"test guard: no connection outside the machine ({host})")

    async def create_connection(self: Any, protocol_factory: Any, host: Any = None, *a: Any, **kw: Any) -> Any:
        if host is not None and str(host) not in _LOCAL:
            refuse(host)
        return await real_connect(self, protocol_factory, host, *a, **kw)

    async def getaddrinfo(self: Any, host: Any, *a: Any, **kw: Any) -> Any:
        if host is not None and str(host) not in _LOCAL:
            refuse(host)
        return await real_resolve(self, host, *a, **kw)

    monkeypatch.setattr(loop_cls, "create_connection", create_connection)
    monkeypatch.setattr(loop_cls, "getaddrinfo", getaddrinfo)
    yield
    assert not outside_attempts, f"connections outside the machine were attempted: {outside_attempts}"
