"""A fake Deepgram live speech-to-text server: the ``/v1/listen`` WebSocket.

Wire shapes, from Deepgram's documentation and the ``deepgram/deepgram-docs``
``fern/asyncapi.yml`` it is built from:

* https://developers.deepgram.com/reference/speech-to-text/listen-streaming (query
  parameters, ``Authorization: Token <key>`` or ``Bearer <jwt>``, binary audio in,
  ``Results`` / ``SpeechStarted`` / ``UtteranceEnd`` / ``Metadata`` out);
* https://developers.deepgram.com/docs/understand-endpointing-interim-results
  (``is_final`` / ``speech_final``; each final covers the audio since the previous one);
* https://developers.deepgram.com/docs/utterance-end and /docs/speech-started
  (``UtteranceEnd`` with ``last_word_end``; ``SpeechStarted`` needs ``vad_events=true``);
* https://developers.deepgram.com/docs/finalize (``{"type":"Finalize"}``: results of the
  buffered audio at once, marked ``from_finalize``), /docs/close-stream
  (``{"type":"CloseStream"}``: last results, a ``Metadata`` summary, close 1000) and
  /docs/audio-keep-alive (``{"type":"KeepAlive"}``, text only, no reply; the server
  closes with 1011 ``NET-0001`` after 10 s without any frame);
* https://developers.deepgram.com/docs/stt-troubleshooting-websocket-data-and-net-errors
  (close codes 1008 ``DATA-0000``, 1011 ``NET-0000``/``NET-0001``) and /docs/errors
  (handshake refusals carry a ``dg-error`` header; ``dg-request-id`` on every upgrade);
* https://developers.deepgram.com/docs/using-the-sec-websocket-protocol (client apps
  that cannot set headers send the key as the ``Sec-WebSocket-Protocol`` pair
  ``token, <key>``; accepted here too).

Unconfirmed (not on a primary page): what the server does on an empty binary frame
(the docs only warn it closes the stream: 1011 here) and the status of a refused
upgrade past the concurrency cap (429 is what ``Behaviour.STATUS`` sends when asked).

How it "transcribes": audio (``linear16``, ``mulaw`` or ``alaw`` per the ``encoding``
parameter) is cut into 10 ms windows; a window louder than ``speech_dbfs`` is voiced.
``min_speech_ms`` of voiced audio make an utterance; once ``endpointing`` ms of
silence follow it (the query parameter, or ``default_endpointing_ms``) the fake
answers with the next scripted utterance as a final (``is_final`` and
``speech_final``), ``final_delay`` seconds later. A ``Finalize`` finalizes the pending
utterance the same way (``from_finalize: true``), or answers an empty final when
nothing is pending. With ``interim_results=true`` an interim result carrying the first
words of the utterance goes out every ``interim_every_ms`` of voiced audio; with
``utterance_end_ms`` an ``UtteranceEnd`` follows the final once that much silence has
passed. Everything is decided in audio time, so a given input always gives the same
messages; only their sending is delayed in wall time.

Faults (:meth:`~FakeServer.set`): a connection takes one behaviour at the handshake
(``STATUS`` refuses the upgrade with ``dg-error``), which applies to its first utterance;
while faults remain, each later utterance takes the next one. ``MALFORMED`` sends one
message that does not parse before the utterance's first result, then goes on;
``DISCONNECT``, ``STREAM_ERROR`` (or ``STATUS`` mid-connection: a 1011 ``NET-0000``
close) and ``SLOW`` (silence) act after its first result; ``HANG`` never answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from ._base import Behaviour, FakeServer, logger
from ._deepgram_stream import BYTES_PER_SAMPLE, DeepgramStream

__all__ = ["FakeDeepgram"]

class FakeDeepgram(FakeServer):
    """Fake Deepgram live STT (serve it, then point the client at ``ws://127.0.0.1:PORT``).

    Args:
        utterances: The script: the transcript of each utterance, in order. Every
            connection walks it from the start (concurrent sessions get the same transcripts).
        cycle: Start the script over when it runs out (else empty transcripts).
        final_delay: Seconds from an endpoint (or a Finalize) to its final result.
        interim_every_ms: Voiced audio between interim results (with ``interim_results=true``).
        speech_dbfs: Loudness (dBFS of a 10 ms window) above which audio is voiced.
        min_speech_ms: Voiced audio needed before an utterance counts.
        default_endpointing_ms: Endpointing silence when the client sends no ``endpointing``.
        idle_timeout: Seconds without a frame before the server closes (1011 ``NET-0001``); None: never.
        model: Model name reported in results' metadata.
        **kw: See :class:`FakeServer`.

    :attr:`~FakeServer.aborted` is set when a client ends its stream (``CloseStream``,
    or closing or dropping the socket).
    """

    name = "deepgram"

    def __init__(
        self,
        utterances: Sequence[str] = ("hello world",),
        *,
        cycle: bool = True,
        final_delay: float = 0.0,
        interim_every_ms: int = 500,
        speech_dbfs: float = -40.0,
        min_speech_ms: int = 60,
        default_endpointing_ms: int = 300,
        idle_timeout: float | None = 10.0,
        model: str = "nova-3",
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.utterances = list(utterances)
        self.cycle = cycle
        self.final_delay = final_delay
        self.interim_every_ms = interim_every_ms
        self.speech_dbfs = speech_dbfs
        self.min_speech_ms = min_speech_ms
        self.default_endpointing_ms = default_endpointing_ms
        self.idle_timeout = idle_timeout
        self.model = model
        #: The first scripted utterance (what a one-utterance test, or the suite, expects).
        self.expected_text = self.utterances[0] if self.utterances else ""

    def utterance(self, n: int) -> str:
        """The transcript of a connection's ``n``-th utterance (0-based)."""
        if not self.utterances or (not self.cycle and n >= len(self.utterances)):
            return ""
        return self.utterances[n % len(self.utterances)]

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/listen", self._handle)

    @staticmethod
    def _presented_key(request: web.Request) -> tuple[str | None, bool]:
        auth = request.headers.get("Authorization", "")
        for scheme in ("Token ", "Bearer ", "token "):
            if auth.startswith(scheme):
                return auth[len(scheme):], False
        proto = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if len(proto) == 2 and proto[0].lower() == "token":
            return proto[1], True
        return None, False

    def _refuse(self, status: int, code: str, message: str, request_id: str) -> web.Response:
        body = {"err_code": code, "err_msg": message, "request_id": request_id}
        return web.json_response(body, status=status, headers={"dg-error": message, "dg-request-id": request_id})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        presented, via_protocol = self._presented_key(request)
        behaviour = self.next_behaviour()
        rec = self.record(request)
        request_id = self.new_id()
        if not self.key_ok(presented):
            rec.authorized = False
            logger.debug("deepgram fake: refused a connection without a valid key")
            return self._refuse(401, "INVALID_AUTH", "Invalid credentials.", request_id)
        if behaviour is Behaviour.STATUS:
            message = f"Injected error {self.status} (key {self.key_hint(presented)})."
            return self._refuse(self.status, "INJECTED", message, request_id)
        q = request.query
        encoding = q.get("encoding", "linear16")
        if encoding not in BYTES_PER_SAMPLE:
            return self._refuse(400, "Bad Request", f"Unsupported encoding {encoding!r} for this fake.", request_id)
        if not q.get("sample_rate", "16000").isdigit() or not q.get("channels", "1").isdigit():
            return self._refuse(400, "Bad Request", "sample_rate and channels must be integers.", request_id)
        ws = web.WebSocketResponse(protocols=("token",) if via_protocol else (), heartbeat=None)
        ws.headers["dg-request-id"] = request_id
        await ws.prepare(request)
        session = DeepgramStream(self, ws, rec, request, request_id, behaviour)
        try:
            await session.run()
        finally:
            await session.stop()
        return ws
