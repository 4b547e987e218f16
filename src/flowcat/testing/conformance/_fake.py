"""The fake-provider side of the conformance suite: an aiohttp server on 127.0.0.1
whose behaviour the scenarios switch (normal, slow, disconnect, error status, hang,
malformed payload), and which records what the client did."""

from __future__ import annotations

import asyncio
import enum
from typing import Any

from aiohttp import web

__all__ = ["Behaviour", "FakeProvider"]


class Behaviour(enum.Enum):
    """What the fake does with the next request (or connection).

    * ``NORMAL`` — the canned answer, streamed in pieces.
    * ``SLOW`` — the first piece, then nothing until the client goes away
      (the fake records the abort: :attr:`FakeProvider.aborted`).
    * ``DISCONNECT`` — the first piece, then the connection is dropped.
    * ``STATUS`` — an error status (:attr:`FakeProvider.status`), with an error body that
      echoes the API key (a client must never log it).
    * ``HANG`` — accept and say nothing until the client goes away.
    * ``MALFORMED`` — a payload that does not parse, in the stream. Over HTTP the
      request fails (an ``ErrorFrame``); on a socket the message is skipped and counted
      (``bad_messages``) and the answer goes on.

    * ``STREAM_ERROR`` — the first piece, then the vendor's own in-stream error (an SSE
      ``error`` object, a socket ``error`` message or close code) and the end of the answer
      (used by :mod:`flowcat.testing.fakes`; the suite's scenarios do not switch it).

    On a socket, "the client went away" (``SLOW``, ``HANG``) also means the client sent
    its cancel for the utterance: set :attr:`FakeProvider.aborted` then, and keep sending
    a little late audio for it — the suite checks none of it is pushed.
    """

    NORMAL = "normal"
    SLOW = "slow"
    DISCONNECT = "disconnect"
    STATUS = "status"
    HANG = "hang"
    MALFORMED = "malformed"
    STREAM_ERROR = "stream_error"


class FakeProvider:
    """Base of a local fake of one vendor protocol.

    Subclasses add their routes in :meth:`routes`, call :meth:`next_behaviour` once per
    request (or connection, or utterance for a socket) and act on it, and set the
    canned answer the suite checks: :attr:`expected_text` (LLM, STT) or
    :attr:`expected_audio` (TTS, PCM16 at :attr:`sample_rate`).

    The vendor fakes of :mod:`flowcat.testing.fakes` (Deepgram, OpenAI, Cartesia) are
    subclasses, so a real provider's conformance target uses them directly.

    Attributes:
        api_key: The key the service under test is given; the suite checks no log line
            or error frame ever shows it (None: a fake that accepts any key; not for the suite).
        behaviour: Behaviour for failing requests (see :attr:`failures`).
        failures: How many requests get :attr:`behaviour` before the fake goes back to
            ``NORMAL``; -1: all of them.
        status: The status ``STATUS`` answers with.
        requests: Requests (or connections) seen.
        aborted: Set when a client went away in the middle of a stream.
        auth_failures: Requests that came with a wrong or missing key.
    """

    expected_text: str = ""
    expected_audio: bytes = b""
    sample_rate: int = 16000

    def __init__(self, api_key: str | None = "sk-conformance-0123456789abcdef-SECRET") -> None:
        self.api_key = api_key
        self.behaviour = Behaviour.NORMAL
        self.failures = 0
        self.status = 500
        self.requests = 0
        self.auth_failures = 0
        self.aborted = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # ------------------------------------------------------------ control

    def set(self, behaviour: Behaviour, *, failures: int = -1, status: int = 500) -> None:
        """Switch the behaviour of the next ``failures`` requests."""
        self.behaviour = behaviour
        self.failures = failures
        self.status = status

    def next_behaviour(self) -> Behaviour:
        """Count one request and return what to do with it."""
        self.requests += 1
        if self.failures == 0:
            return Behaviour.NORMAL
        if self.failures > 0:
            self.failures -= 1
        return self.behaviour

    def key_ok(self, presented: str | None) -> bool:
        """Whether the client presented the right key (counts failures)."""
        ok = presented == self.api_key
        if not ok:
            self.auth_failures += 1
        return ok

    def error_body(self) -> dict[str, Any]:
        """An OpenAI-style error body that echoes the key, as some vendors do."""
        return {"error": {"message": f"Incorrect API key provided: {self.api_key}", "type": "error",
                          "param": None, "code": str(self.status)}}

    async def wait_client_gone(self, request: web.Request, limit: float = 30.0) -> None:
        """Hold the request until the client closes the connection (then :attr:`aborted` is set).

        The server cancels a handler whose client went away (``handler_cancellation``).
        """
        try:
            await asyncio.sleep(limit)
        finally:
            self.aborted.set()

    # ---------------------------------------------------------- lifecycle

    def routes(self, app: web.Application) -> None:
        """Add the vendor's routes."""
        raise NotImplementedError

    async def start(self) -> str:
        """Serve on an ephemeral port of 127.0.0.1; returns the base URL."""
        app = web.Application()
        self.routes(app)
        # No access log: a vendor that takes its key in the query (AssemblyAI's token=,
        # Speechmatics' jwt=) would have it written to the log by the server itself.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
