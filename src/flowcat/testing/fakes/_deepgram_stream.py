"""One live connection of :class:`~flowcat.testing.fakes.FakeDeepgram`: results decided in
audio time, sent after the fake's delays (see :mod:`._deepgram` for the wire protocol)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import numpy as np
from aiohttp import WSMsgType, web

from ...audio import alaw_to_pcm16, ulaw_to_pcm16
from ._base import Behaviour, Received, logger

if TYPE_CHECKING:
    from ._deepgram import FakeDeepgram

__all__ = ["BYTES_PER_SAMPLE", "DeepgramStream"]

BYTES_PER_SAMPLE = {"linear16": 2, "mulaw": 1, "alaw": 1}


class DeepgramStream:
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
        self.window = max(1, self.rate // 100) * BYTES_PER_SAMPLE[self.encoding] * self.channels
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
