"""Shared test configuration."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from _helpers import EXPECTED, strict

logging.getLogger("flowcat").setLevel(logging.INFO)  # raised to DEBUG by pytest_configure (leak check)


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


def _printable(text: str) -> str:
    """``text`` with lone surrogates (a fuzzed address such as ``127.0.0.1\\udcff`` in a log line) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _encodable(report: pytest.TestReport) -> None:
    """A report that UTF-8 can carry: pytest-xdist sends each report from its worker as UTF-8, and a
    lone surrogate in a captured log or a failure message would end the whole run with an internal error."""
    report.sections = [(title, _printable(body)) for title, body in report.sections]
    if report.longrepr is not None:
        text = str(report.longrepr)
        if _printable(text) != text:
            report.longrepr = _printable(text)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    _unexpected_skip(report)
    _encodable(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    _unexpected_skip(outcome.get_result())


# ------------------------------------------------------------------ parallel runs (pytest-xdist)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``-n N --dist loadgroup`` (.ci/run) a test file runs whole on one worker, in order, as with
    ``--dist loadfile``: a module-scoped server or model starts once, and the tests that follow another
    in the file see what it left. A file's explicit ``xdist_group`` (several files sharing one worker,
    one at a time) stands. Without xdist the mark does nothing. Runs before xdist reads the marks."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            name = item.path.name
            group = "sip-fixed-rtp-ports" if name in _FIXED_RTP_PORTS else name
            item.add_marker(pytest.mark.xdist_group(group))
        if item.path.name in _SIP_PEERS:
            item.add_marker(pytest.mark.serial)


# Real SIP peers (sipp, baresip, Kamailio) started on ports picked for them: run alone in the serial part
# (a fresh CI run hung once on a baresip call in the parallel part, once lost Kamailio's flowcat at start,
# once `flowcat sip answer` of test_sip_cli before it listened).
_SIP_PEERS = frozenset(
    f"test_{n}.py"
    for n in (
        "sip_kamailio", "sip_baresip", "sip_dtmf_out", "sip_interop", "sip_uac_interop", "sip_tcp_interop", "sip_cli",
    )
)

# These files bind fixed RTP port ranges (some overlap: 34800-35200): they share one worker, one at a
# time, so that two of them never bind the same ports at once.
_FIXED_RTP_PORTS = frozenset(
    f"test_{n}.py"
    for n in (
        "fuzz_sip", "sip_baresip", "sip_drain", "sip_dtmf_out", "sip_impairment", "sip_interop", "sip_kamailio",
        "sip_refer", "sip_serve", "sip_server", "sip_session_timer", "sip_tcp", "sip_tcp_interop", "sip_uac",
        "sip_uac_interop",
    )
)


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


# ------------------------------------------------------------------ no secret in any log record

class _SecretLeakHandler(logging.Handler):
    """Checks every record (all loggers, DEBUG) for the fake credentials of _secrets_registry."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__(logging.DEBUG)
        self.secrets = secrets
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is not this handler's business
            return
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + repr(record.exc_info[1])
        for secret in self.secrets:
            if secret in text:
                self.leaks.append(f"{record.name} {record.levelname} {record.pathname}:{record.lineno}: "
                                  f"{text[:300]!r} contains a test secret")


_leak_handler: _SecretLeakHandler | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _leak_handler
    from _secrets_registry import SECRETS

    _leak_handler = _SecretLeakHandler(SECRETS)
    root = logging.getLogger()
    root.addHandler(_leak_handler)
    root.setLevel(logging.DEBUG)
    logging.getLogger("flowcat").setLevel(logging.DEBUG)


@pytest.fixture(autouse=True)
def _no_secret_in_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test during which a fake credential reached a log record
    (unless it is marked ``leaks_secret``: it leaks one on purpose)."""
    handler = _leak_handler
    seen = len(handler.leaks) if handler else 0
    yield
    if handler is not None and len(handler.leaks) > seen:
        leaks = handler.leaks[seen:]
        del handler.leaks[seen:]
        if request.node.get_closest_marker("leaks_secret") is None:
            pytest.fail("a secret reached the logs:\n" + "\n".join(leaks), pytrace=False)
