"""What the three fake vendor servers share: an aiohttp server on 127.0.0.1, a
switchable fault (:class:`Behaviour`), the key check and the record of what each
client sent (:class:`Received`), with every credential redacted.

A fake is started on its own (``await fake.start()`` serves it on an ephemeral port and
returns its base URL) or several share one server (:func:`serve`, used by
``python -m flowcat.testing.fakes``): their routes do not overlap.

The key a client presents is compared with :attr:`FakeServer.api_key` and then dropped:
records keep ``<redacted>`` in its place and no log line of the fakes carries it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import web

from ..conformance import Behaviour, FakeProvider

__all__ = ["Behaviour", "FakeServer", "Received", "redact_headers", "redact_query", "serve"]

logger = logging.getLogger("flowcat.testing.fakes")

REDACTED = "<redacted>"
_SECRET_HEADERS = frozenset(
    {"authorization", "x-api-key", "api-key", "sec-websocket-protocol", "proxy-authorization", "cookie"}
)
_SECRET_PARAMS = frozenset({"api_key", "key", "token", "access_token"})


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers with every credential-bearing value replaced by ``<redacted>``."""
    return {k: (REDACTED if k.lower() in _SECRET_HEADERS else v) for k, v in headers.items()}


def redact_query(query: Mapping[str, str]) -> dict[str, str]:
    """The query parameters with credential values replaced by ``<redacted>``."""
    return {k: (REDACTED if k.lower() in _SECRET_PARAMS else v) for k, v in query.items()}


@dataclass
class Received:
    """One request or WebSocket connection as the fake saw it (credentials redacted).

    Attributes:
        path: Request path.
        query: Query parameters.
        headers: Request headers.
        authorized: Whether the key checked out.
        body: The JSON body of an HTTP request.
        messages: Text messages received on a socket, parsed (``{"_raw": text}`` when not JSON).
        audio: Binary payload received on a socket, concatenated (kept only with ``record_payloads``).
        audio_bytes: How many bytes of it came in.
        binary_frames: How many binary frames came in.
        sent: Messages the fake sent (parsed JSON), in order.
        closed_by: ``"client"``, ``"server"`` or None while open.
    """

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    authorized: bool = True
    body: Any = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    audio_bytes: int = 0
    binary_frames: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)
    closed_by: str | None = None

    def of_type(self, value: str, key: str = "type") -> list[dict[str, Any]]:
        """Received messages whose ``key`` equals ``value``."""
        return [m for m in self.messages if m.get(key) == value]


class FakeServer(FakeProvider):
    """Base of a fake vendor server (a :class:`~flowcat.testing.conformance.FakeProvider`,
    so the conformance suite drives it as is).

    Args:
        api_key: The key clients must present; None accepts any (non-empty) credential.
        echo_key_in_errors: Put the presented key into error bodies (auth errors and
            ``Behaviour.STATUS`` answers; some vendors echo it), to check a client never
            logs an error body as is. The conformance suite wants this on.
        record_payloads: Keep request bodies, socket audio and the messages sent in
            :attr:`received` (off for long benchmark runs: only counts and control
            messages are kept).

    Attributes:
        behaviour, failures, status: The active fault (see :meth:`set`).
        requests: Requests or connections seen (refused ones included).
        auth_failures: How many came with a missing or wrong key.
        received: What each request or connection carried, in arrival order.
        aborted: Set when a client went away in the middle of an answer.
        url: Base URL once served (``http://127.0.0.1:PORT``).
    """

    name: ClassVar[str] = "fake"

    def __init__(
        self, *, api_key: str | None = "fake-key", echo_key_in_errors: bool = False, record_payloads: bool = True
    ) -> None:
        super().__init__(api_key)
        self.echo_key_in_errors = echo_key_in_errors
        self.record_payloads = record_payloads
        self.received: list[Received] = []
        self._changed: asyncio.Event | None = None

    # ------------------------------------------------------------ control

    def key_ok(self, presented: str | None) -> bool:
        """Whether ``presented`` is the key (any non-empty value when no key is set)."""
        ok = presented is not None and (presented == self.api_key if self.api_key is not None else True)
        if not ok:
            self.auth_failures += 1
        return ok

    def key_hint(self, presented: str | None) -> str:
        """What an error body says about the presented key (all of it with ``echo_key_in_errors``)."""
        if self.echo_key_in_errors and presented:
            return presented
        return (presented[:3] + "****") if presented else "none"

    def record(self, request: web.Request, **kw: Any) -> Received:
        """Start the record of ``request`` (headers and query redacted)."""
        rec = Received(
            request.path, redact_query(request.query), redact_headers(request.headers), **kw
        )
        self.received.append(rec)
        self.changed()
        return rec

    def changed(self) -> None:
        """Wake :meth:`wait_until` waiters (call after recording something)."""
        ev = self._changed
        if ev is not None:
            ev.set()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds, re-checking whenever the fake records something.

        Raises:
            TimeoutError: It did not hold within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while not predicate():
                ev = self._changed = self._changed or asyncio.Event()
                ev.clear()
                await ev.wait()

    async def hold_until_gone(self, limit: float = 60.0) -> None:
        """Say nothing until the client goes away (the handler is cancelled), then set :attr:`aborted`."""
        try:
            await asyncio.sleep(limit)
        finally:
            self.aborted.set()
            self.changed()

    @staticmethod
    def new_id() -> str:
        """A fresh request id."""
        return str(uuid.uuid4())

    # ---------------------------------------------------------- lifecycle

    def routes(self, app: web.Application) -> None:
        """Add the vendor's routes to ``app``."""
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host`` (an ephemeral port by default); returns the base URL."""
        self._runner, self.url = await serve([self], host, port)
        return self.url

    async def __aenter__(self) -> FakeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve(fakes: Iterable[FakeServer], host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve ``fakes`` together on one server; returns the runner and the base URL
    (also set as each fake's :attr:`~FakeServer.url`)."""
    fakes = list(fakes)
    app = web.Application()
    for fake in fakes:
        fake.routes(app)
        fake._changed = fake._changed or asyncio.Event()
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    url = f"http://{host if ':' not in host else '[' + host + ']'}:{bound[1]}"
    for fake in fakes:
        fake.url = url
    logger.debug("fakes %s serving on %s", ",".join(f.name for f in fakes), url)
    return runner, url
