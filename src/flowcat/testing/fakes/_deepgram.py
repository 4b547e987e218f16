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

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import numpy as np
from aiohttp import WSMsgType, web

from ...audio import alaw_to_pcm16, ulaw_to_pcm16
from ._base import Behaviour, FakeServer, Received, logger

__all__ = ["FakeDeepgram"]

_BYTES_PER_SAMPLE = {"linear16": 2, "mulaw": 1, "alaw": 1}


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
        if encoding not in _BYTES_PER_SAMPLE:
            return self._refuse(400, "Bad Request", f"Unsupported encoding {encoding!r} for this fake.", request_id)
        if not q.get("sample_rate", "16000").isdigit() or not q.get("channels", "1").isdigit():
            return self._refuse(400, "Bad Request", "sample_rate and channels must be integers.", request_id)
        ws = web.WebSocketResponse(protocols=("token",) if via_protocol else (), heartbeat=None)
        ws.headers["dg-request-id"] = request_id
        await ws.prepare(request)
        session = _Session(self, ws, rec, request, request_id, behaviour)
        try:
            await session.run()
        finally:
            await session.stop()
        return ws


class _Session:
    """One live connection: decides results in audio time, sends them after ``final_delay``."""

    def __init__(
        self, fake: FakeDeepgram, ws: web.WebSocketResponse, rec: Received, request: web.Request,
        request_id: str, behaviour: Behaviour,
    ) -> None:
        q = request.query
        self.fake = fake
        self.ws = ws
        self.rec = rec
        self.request = request
        self.request_id = request_id
        self.behaviour = behaviour
        self.encoding = q.get("encoding", "linear16")
        self.rate = int(q.get("sample_rate", "16000"))
        self.channels = int(q.get("channels", "1"))
        self.interim = q.get("interim_results", "false") == "true"
        self.vad_events = q.get("vad_events", "false") == "true"
        ep = q.get("endpointing")
        self.speech_final_on = ep != "false"
        self.endpoint_s = (int(ep) if ep and ep.isdigit() else fake.default_endpointing_ms) / 1000
        ue = q.get("utterance_end_ms")
        self.utterance_end_s = int(ue) / 1000 if ue and ue.isdigit() else None
        self.window = max(1, self.rate // 100) * _BYTES_PER_SAMPLE[self.encoding] * self.channels
        self.window_s = 0.01
        self.threshold = 32768.0 * 10 ** (fake.speech_dbfs / 20)  # RMS above which a window is voiced
        self.model = fake.model
        self.pending = b""
        self.t = 0.0  # audio seconds received
        self.segment_start = 0.0  # start of audio not yet covered by a final
        self.voiced_s = 0.0  # voiced audio in the pending utterance
        self.first_voiced: float | None = None
        self.last_voiced_end = 0.0
        self.interims = 0
        self.utterances_taken = 0
        self.utterance: str | None = None  # peeked text of the pending utterance
        self.awaiting_utterance_end: float | None = None
        self.outbox: asyncio.Queue[tuple[float, dict[str, Any] | None]] = asyncio.Queue()
        self.sender = asyncio.ensure_future(self._send_loop())
        self.faulted = False
        self.new_utterance = True  # the next Results starts an utterance (a fault may apply)

    # ------------------------------------------------------------- input

    async def run(self) -> None:
        ws, fake = self.ws, self.fake
        if self.behaviour is Behaviour.HANG:
            await fake.hold_until_gone()
            return
        while True:
            try:
                msg = await ws.receive(timeout=fake.idle_timeout)
            except TimeoutError:
                await self._close(1011, "NET-0001: no audio or message received in time")
                return
            if msg.type is WSMsgType.BINARY:
                data: bytes = msg.data
                self.rec.binary_frames += 1
                self.rec.audio_bytes += len(data)
                if fake.record_payloads:
                    self.rec.audio += data
                if not data:
                    await self._close(1011, "NET-0000: empty binary frame")
                    return
                self._audio(data)
            elif msg.type is WSMsgType.TEXT:
                if await self._control(msg.data):
                    return
            else:  # the client closed (or dropped) the socket
                self.rec.closed_by = self.rec.closed_by or "client"
                fake.aborted.set()
                return
            fake.changed()

    async def _control(self, text: str) -> bool:
        try:
            m = json.loads(text)
        except ValueError:
            m = None
        if not isinstance(m, dict):
            self.rec.messages.append({"_raw": text})
            await self._close(1008, "DATA-0000: could not parse the control message")
            return True
        self.rec.messages.append(m)
        kind = m.get("type")
        if kind == "KeepAlive":
            return False
        if kind == "Finalize":
            self._finalize(from_finalize=True)
            return False
        if kind == "CloseStream":
            self.fake.aborted.set()  # the client ended the stream
            self._finalize(from_finalize=False, quiet=True)
            self._queue(self._metadata())
            await self._drain()
            await self._close(1000, "")
            return True
        logger.debug("deepgram fake: ignoring control message of type %s", kind)
        return False

    def _decode(self, data: bytes) -> bytes:
        if self.encoding == "mulaw":
            return ulaw_to_pcm16(data)
        if self.encoding == "alaw":
            return alaw_to_pcm16(data)
        return data

    def _audio(self, data: bytes) -> None:
        buf = self.pending + data
        w = self.window
        n = len(buf) - len(buf) % w
        self.pending = buf[n:]
        if not n:
            return
        # One numpy pass per message: the level of each 10 ms window.
        pcm = np.frombuffer(self._decode(buf[:n]), dtype="<i2").astype(np.float32)
        rms = np.sqrt(np.mean(np.square(pcm.reshape(n // w, -1)), axis=1))
        for voiced in (rms > self.threshold).tolist():
            self._window(voiced)

    def _window(self, voiced: bool) -> None:
        start = self.t
        self.t += self.window_s
        if voiced:
            if self.first_voiced is None:
                self.first_voiced = start
                if self.vad_events:
                    self._queue({"type": "SpeechStarted", "channel": [0, 1], "timestamp": round(start, 3)}, 0.0)
            self.voiced_s += self.window_s
            self.last_voiced_end = self.t
            if self.interim and self.voiced_s >= (self.interims + 1) * self.fake.interim_every_ms / 1000:
                self.interims += 1
                self._result(self._peek_words(self.interims), is_final=False)
            return
        silence = self.t - self.last_voiced_end
        if self._has_utterance() and silence >= self.endpoint_s - 1e-9:
            self._final(speech_final=self.speech_final_on, from_finalize=False)
        ue = self.awaiting_utterance_end
        if ue is not None and self.utterance_end_s is not None and self.t - ue >= self.utterance_end_s - 1e-9:
            self.awaiting_utterance_end = None
            self._queue({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": round(ue, 3)})

    def _has_utterance(self) -> bool:
        return self.voiced_s >= self.fake.min_speech_ms / 1000 - 1e-9

    def _next_utterance(self) -> str:
        self.utterances_taken += 1
        return self.fake.utterance(self.utterances_taken - 1)

    def _peek_words(self, k: int) -> str:
        if self.utterance is None:
            self.utterance = self._next_utterance()
        words = self.utterance.split()
        return " ".join(words[: min(len(words), max(1, k))])

    # ------------------------------------------------------------ output

    def _finalize(self, *, from_finalize: bool, quiet: bool = False) -> None:
        if self._has_utterance():
            self._final(speech_final=False, from_finalize=from_finalize)
        elif not quiet:
            self._result("", is_final=True, from_finalize=True, start=self.segment_start, end=self.t)
            self._reset_segment()

    def _final(self, *, speech_final: bool, from_finalize: bool) -> None:
        text = self.utterance if self.utterance is not None else self._next_utterance()
        self._result(text, is_final=True, speech_final=speech_final, from_finalize=from_finalize,
                     start=self.segment_start, end=self.t)
        if self.utterance_end_s is not None:
            self.awaiting_utterance_end = self.last_voiced_end
        self._reset_segment()

    def _reset_segment(self) -> None:
        self.segment_start = self.t
        self.voiced_s = 0.0
        self.first_voiced = None
        self.interims = 0
        self.utterance = None

    def _result(
        self, text: str, *, is_final: bool, speech_final: bool = False, from_finalize: bool = False,
        start: float | None = None, end: float | None = None,
    ) -> None:
        start = self.segment_start if start is None else start
        end = self.t if end is None else end
        words = text.split()
        w0 = self.first_voiced if self.first_voiced is not None else start
        w1 = max(w0, self.last_voiced_end if self.last_voiced_end > w0 else end)
        step = (w1 - w0) / len(words) if words else 0.0
        msg = {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(end - start, 3),
            "start": round(start, 3),
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [{
                "transcript": text,
                "confidence": 0.99 if words else 0.0,
                "words": [
                    {"word": w.lower().strip(".,!?"), "start": round(w0 + i * step, 3),
                     "end": round(w0 + (i + 1) * step, 3), "confidence": 0.99, "punctuated_word": w}
                    for i, w in enumerate(words)
                ],
            }]},
            "metadata": {"request_id": self.request_id,
                         "model_info": {"name": self.model, "version": "fake", "arch": "fake"},
                         "model_uuid": "00000000-0000-0000-0000-000000000000"},
        }
        self._queue(msg, self.fake.final_delay if is_final else 0.0)

    def _metadata(self) -> dict[str, Any]:
        return {"type": "Metadata", "transaction_key": "deprecated", "request_id": self.request_id,
                "sha256": "0" * 64, "created": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "duration": round(self.t, 3), "channels": self.channels}

    def _queue(self, msg: dict[str, Any], delay: float = 0.0) -> None:
        self.outbox.put_nowait((asyncio.get_running_loop().time() + delay, msg))

    async def _drain(self) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.outbox.put_nowait((0.0, {"_drained": done}))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(done)

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, msg = await self.outbox.get()
            if msg is None:
                return
            if "_drained" in msg:
                fut = msg["_drained"]
                if not fut.done():
                    fut.set_result(None)
                continue
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.ws.closed or self.faulted:
                continue
            is_result = msg.get("type") == "Results"
            if is_result and self.new_utterance:
                self.new_utterance = False
                if self.behaviour is Behaviour.NORMAL and self.fake.failures != 0:
                    self.behaviour = self.fake.next_behaviour()  # a fault asked for mid-connection
            if is_result and msg["is_final"]:
                self.new_utterance = True
            try:
                if is_result and self.behaviour is Behaviour.MALFORMED:
                    # One message that does not parse, then the answer goes on.
                    self.behaviour = Behaviour.NORMAL
                    await self.ws.send_str('{"type": "Results", "channel_index": [0, 1], "channel": {"alter')
                if self.fake.record_payloads:
                    self.rec.sent.append(msg)
                await self.ws.send_str(json.dumps(msg))
            except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                return
            if is_result and self.behaviour is not Behaviour.NORMAL:
                await self._fault()
            self.fake.changed()

    async def _fault(self) -> None:
        self.faulted = True
        b = self.behaviour
        if b is Behaviour.DISCONNECT:
            if self.request.transport is not None:
                self.request.transport.abort()
        elif b is Behaviour.STREAM_ERROR or b is Behaviour.STATUS:
            await self._close(1011, "NET-0000: injected server error")
        self.fake.changed()

    async def _close(self, code: int, reason: str) -> None:
        self.rec.closed_by = self.rec.closed_by or "server"
        if not self.ws.closed:
            await self.ws.close(code=code, message=reason.encode())
        self.fake.changed()

    async def stop(self) -> None:
        self.outbox.put_nowait((0.0, None))
        if self.ws.closed:
            self.sender.cancel()  # nobody to send the rest to
        if not self.sender.done():
            try:
                await asyncio.wait_for(self.sender, 1.0)
            except (TimeoutError, asyncio.CancelledError):
                self.sender.cancel()
        self.fake.changed()
