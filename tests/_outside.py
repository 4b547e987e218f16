"""An autouse fixture for provider tests: no connection may leave the machine.

Name resolution and TCP connects to anything but 127.0.0.1/::1/localhost are refused
(OSError, as an unreachable network would) and recorded; the test fails at teardown
if any was attempted, unless it took the ``outside_attempts`` list and cleared it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

LOCAL = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture
def outside_attempts() -> list[str]:
    return []


@pytest.fixture(autouse=True)
def no_outside_connections(monkeypatch: pytest.MonkeyPatch, outside_attempts: list[str]) -> Iterator[None]:
    loop_cls = asyncio.BaseEventLoop
    real_connect = loop_cls.create_connection
    real_resolve = loop_cls.getaddrinfo

    def refuse(host: Any) -> None:
        outside_attempts.append(str(host))
        raise OSError(f"test guard: no connection outside the machine ({host})")

    async def create_connection(self: Any, protocol_factory: Any, host: Any = None, *a: Any, **kw: Any) -> Any:
        if host is not None and str(host) not in LOCAL:
            refuse(host)
        return await real_connect(self, protocol_factory, host, *a, **kw)

    async def getaddrinfo(self: Any, host: Any, *a: Any, **kw: Any) -> Any:
        if host is not None and str(host) not in LOCAL:
            refuse(host)
        return await real_resolve(self, host, *a, **kw)

    monkeypatch.setattr(loop_cls, "create_connection", create_connection)
    monkeypatch.setattr(loop_cls, "getaddrinfo", getaddrinfo)
    yield
    assert not outside_attempts, f"connections outside the machine were attempted: {outside_attempts}"
