"""The conformance suite run against three toy providers and their fakes.

The toys show how a real provider plugs in (one service module + one fake + the
suite): an OpenAI-like SSE LLM, a streaming-HTTP TTS and a WebSocket STT, each with
a fake on 127.0.0.1 that the suite drives through every scenario.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from flowcat.errors import (
    ServiceAuthError,
    ServiceConnectionError,
    ServiceProtocolError,
    ServiceRateLimitError,
    ServiceStatusError,
)
from flowcat.frames import CancelFrame, EndFrame, LLMContext, LLMTokenUsage
from flowcat.runtime import FrameProcessor
from flowcat.services import (
    AudioContexts,
    Backoff,
    LLMChunk,
    LLMService,
    LLMTextDelta,
    ServiceCapabilities,
    ServiceSettings,
    STTService,
    TTSAudio,
    TTSChunk,
    TTSService,
    connection_error,
    http_session,
    iter_sse,
    raise_for_status,
    redact,
    resolve_api_key,
)
from flowcat.testing.conformance import (
    Behaviour,
    ConformanceTarget,
    FakeProvider,
    Scenario,
    run_scenario,
    scenarios,
)

logger = logging.getLogger("tests.toy_providers")

FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=4)

# ----------------------------------------------------------------------------- LLM


class ToyLLM(LLMService):
    """An OpenAI-Chat-Completions-like SSE client (the shape of a real provider module)."""

    def __init__(self, base_url: str, api_key: str | None = None, **kw: Any) -> None:
        super().__init__(api_key=resolve_api_key("toy", api_key), settings=ServiceSettings(model="toy-1"), **kw)
        self.base_url = base_url

    async def run_inference(self, context: LLMContext) -> AsyncGenerator[LLMChunk, None]:
        assert self._api_key is not None
        session = await http_session()
        body = {"model": self.settings.model, "stream": True, "messages": context.get_messages()}
        headers = {"Authorization": f"Bearer {self._api_key.reveal()}"}
        async with session.post(f"{self.base_url}/chat/completions", json=body, headers=headers) as resp:
            await raise_for_status(resp, self.name, self._api_key)
            async for event in iter_sse(resp.content):
                if event.data == "[DONE]":
                    return
                obj = json.loads(event.data)
                if "error" in obj:
                    raise ServiceStatusError(self.redact(str(obj["error"].get("message"))), 500)
                for choice in obj["choices"]:
                    text = choice["delta"].get("content")
                    if text:
                        yield LLMTextDelta(text)
                usage = obj.get("usage")
                if usage:
                    yield LLMTokenUsage(usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"])
        raise ServiceConnectionError(f"{self.name}: the stream ended without [DONE]")


class FakeLLM(FakeProvider):
    expected_text = "Hello from the fake — café ☕."

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/chat/completions", self.completions)

    @staticmethod
    def event(obj: Any) -> bytes:
        return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"

    def chunk(self, text: str) -> bytes:
        return self.event({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        if not self.key_ok(request.headers.get("Authorization", "").removeprefix("Bearer ")):
            return web.json_response(self.error_body(), status=401)
        await request.json()
        b = self.next_behaviour()
        if b is Behaviour.STATUS:
            return web.json_response(self.error_body(), status=self.status)
        if b is Behaviour.HANG:
            await self.wait_client_gone(request)
            return web.Response()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        words = ["Hello", " from", " the fake", " — café", " ☕."]
        if b is Behaviour.SLOW:
            await resp.write(b": keep-alive\n\n" + self.chunk(words[0]))
            await self.wait_client_gone(request)
            return resp
        if b is Behaviour.DISCONNECT:
            await resp.write(self.chunk(words[0]))
            assert request.transport is not None
            request.transport.close()
            return resp
        if b is Behaviour.MALFORMED:
            await resp.write(self.chunk(words[0]) + b"data: {not json\n\n")
            return resp
        payload = b"".join(self.chunk(w) for w in words)
        payload += self.event({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 5,
                                                        "total_tokens": 10}})
        payload += b"data: [DONE]\n\n"
        for i in range(0, len(payload), 7):  # cut anywhere, inside UTF-8 sequences too
            await resp.write(payload[i : i + 7])
        return resp


def make_llm(fake: FakeProvider) -> FrameProcessor:
    return ToyLLM(fake.url, fake.api_key, request_timeout_secs=0.5, chunk_timeout_secs=0.5, retry=FAST)


# ----------------------------------------------------------------------------- TTS


class ToyTTS(TTSService):
    """A streaming-HTTP TTS: POST text, read raw PCM16 back in chunks."""

    def __init__(self, base_url: str, api_key: str | None = None, **kw: Any) -> None:
        super().__init__(api_key=resolve_api_key("toy", api_key), sample_rate=16000, **kw)
        self.base_url = base_url

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[TTSChunk, None]:
        assert self._api_key is not None
        session = await http_session()
        body = {"text": text, "sample_rate": self.sample_rate}
        async with session.post(f"{self.base_url}/tts", json=body,
                                headers={"X-API-Key": self._api_key.reveal()}) as resp:
            await raise_for_status(resp, self.name, self._api_key)
            if resp.content_type != "audio/pcm":
                raise ServiceProtocolError(f"{self.name}: unexpected content type {resp.content_type!r}")
            async for data in resp.content.iter_any():
                yield TTSAudio(data)


class FakeTTS(FakeProvider):
    expected_audio = bytes(range(256)) * 8  # 2048 bytes

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/tts", self.tts)

    async def tts(self, request: web.Request) -> web.StreamResponse:
        if not self.key_ok(request.headers.get("X-API-Key")):
            return web.json_response(self.error_body(), status=401)
        await request.json()
        b = self.next_behaviour()
        if b is Behaviour.STATUS:
            return web.json_response(self.error_body(), status=self.status)
        if b is Behaviour.HANG:
            await self.wait_client_gone(request)
            return web.Response()
        if b is Behaviour.MALFORMED:
            return web.Response(text="<html>oops</html>", content_type="text/html")
        resp = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await resp.prepare(request)
        audio = self.expected_audio
        if b is Behaviour.SLOW:
            await resp.write(audio[:333])
            await self.wait_client_gone(request)
            return resp
        if b is Behaviour.DISCONNECT:
            await resp.write(audio[:333])
            assert request.transport is not None
            request.transport.close()
            return resp
        for i in range(0, len(audio), 333):  # odd sizes: the base re-frames on samples
            await resp.write(audio[i : i + 333])
            await asyncio.sleep(0)
        return resp


def make_tts(fake: FakeProvider) -> FrameProcessor:
    return ToyTTS(fake.url, fake.api_key, request_timeout_secs=0.5, chunk_timeout_secs=0.5, retry=FAST)


# ----------------------------------------------------------------------------- WebSocket TTS


class ToyWsTTS(TTSService):
    """A multiplexed WebSocket TTS: one socket, text and audio tagged with a context id,
    ``done`` per context, ``cancel`` to stop one (the shape of Cartesia/ElevenLabs clients)."""

    capabilities = ServiceCapabilities(context_ids=True, transport="websocket")

    def __init__(self, base_url: str, api_key: str | None = None, **kw: Any) -> None:
        super().__init__(api_key=resolve_api_key("toy", api_key), sample_rate=16000, **kw)
        self.url = base_url.replace("http://", "ws://") + "/stream"
        self.contexts = AudioContexts()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._recv: asyncio.Task[None] | None = None
        self._wire: dict[str, str] = {}  # utterance context -> wire context of the unit in flight
        self._units = 0
        self._sent_cancel: set[str] = set()

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is not None and not self._ws.closed:
            return self._ws
        assert self._api_key is not None
        session = await http_session()
        try:
            ws = await session.ws_connect(self.url, headers={"X-API-Key": self._api_key.reveal()})
        except aiohttp.WSServerHandshakeError as exc:
            msg = redact(f"{self.name}: handshake refused", self._api_key)
            if exc.status in (401, 403):
                raise ServiceAuthError(msg, exc.status) from None
            if exc.status == 429:
                raise ServiceRateLimitError(msg) from None
            raise ServiceStatusError(msg, exc.status) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise connection_error(exc, self.name, self._api_key) from None
        self._ws = ws
        self._recv = self.create_task(self._read_socket(ws), "tts_receive")
        return ws

    async def _read_socket(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            try:
                obj = json.loads(msg.data)
                cid = obj["context_id"]
                if obj.get("done"):
                    self.contexts.finish(cid)
                else:
                    self.contexts.put(cid, TTSAudio(base64.b64decode(obj["audio"])))
            except (ValueError, KeyError, TypeError):
                self.bad_input("a message that is not the expected JSON", msg.data)
        if self._ws is ws:
            self._ws = None
        self.contexts.fail_all(ServiceConnectionError(f"{self.name}: closed by the server"))

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[TTSChunk, None]:
        ws = await self._connect()
        self._units += 1
        wire = f"{context_id}-{self._units}"
        self.contexts.open(wire)
        self._wire[context_id] = wire
        finished = False
        try:
            await ws.send_json({"context_id": wire, "text": text})
            async with contextlib.aclosing(self.contexts.items(wire)) as items:
                async for item in items:
                    yield item
            finished = True
        finally:
            if not finished:  # interrupted, timed out or failed: tell the server
                await self._cancel(wire)

    async def on_context_interrupted(self, context_id: str) -> None:
        wire = self._wire.pop(context_id, None)
        if wire is not None and self.contexts.is_open(wire):
            await self._cancel(wire)

    async def _cancel(self, wire: str) -> None:
        if wire in self._sent_cancel:
            return
        self._sent_cancel.add(wire)
        self.contexts.cancel(wire)
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                await self._ws.send_json({"context_id": wire, "cancel": True})

    async def _close(self) -> None:
        ws, self._ws = self._ws, None
        if self._recv is not None:
            await self.cancel_task(self._recv)
        if ws is not None:
            await ws.close()

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        await self._close()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._close()


class FakeWsTTS(FakeProvider):
    expected_audio = bytes(range(256)) * 8

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/stream", self.stream)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        if not self.key_ok(request.headers.get("X-API-Key")):
            return web.json_response(self.error_body(), status=401)
        b = self.next_behaviour()
        if b is Behaviour.STATUS:
            return web.json_response(self.error_body(), status=self.status)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        cancelled: set[str] = set()
        tasks: list[asyncio.Task[None]] = []
        try:
            async for msg in ws:
                obj = json.loads(msg.data)
                cid = obj["context_id"]
                if obj.get("cancel"):
                    cancelled.add(cid)
                    self.aborted.set()
                    continue
                tasks.append(asyncio.get_running_loop().create_task(self.speak(ws, cid, b, cancelled)))
                b = self.next_behaviour() if b is not Behaviour.NORMAL else Behaviour.NORMAL
        finally:
            self.aborted.set()
            for t in tasks:
                t.cancel()
        return ws

    async def speak(self, ws: web.WebSocketResponse, cid: str, b: Behaviour, cancelled: set[str]) -> None:
        audio = self.expected_audio
        pieces = [audio[i : i + 333] for i in range(0, len(audio), 333)]

        async def send(piece: bytes) -> None:
            await ws.send_json({"context_id": cid, "audio": base64.b64encode(piece).decode()})

        if b is Behaviour.HANG:
            return
        if b is Behaviour.DISCONNECT:
            await send(pieces[0])
            await ws.close()
            return
        if b is Behaviour.SLOW:
            # Audio keeps coming, also for a while after the client cancelled the context.
            for _ in range(50):
                await send(pieces[0])
                await asyncio.sleep(0.02)
            return
        if b is Behaviour.MALFORMED:
            await ws.send_str("{not json")
        for piece in pieces:
            await send(piece)
        await ws.send_json({"context_id": cid, "done": True})


def make_ws_tts(fake: FakeProvider) -> FrameProcessor:
    return ToyWsTTS(fake.url, fake.api_key, request_timeout_secs=0.5, chunk_timeout_secs=0.5, retry=FAST)


# ----------------------------------------------------------------------------- STT


class ToySTT(STTService):
    """A WebSocket streaming STT: binary audio up, JSON results down, Finalize at end of speech."""

    def __init__(self, base_url: str, api_key: str | None = None, **kw: Any) -> None:
        super().__init__(api_key=resolve_api_key("toy", api_key), **kw)
        self.url = base_url.replace("http://", "ws://") + "/listen"
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._recv: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        assert self._api_key is not None
        session = await http_session()
        try:
            ws = await session.ws_connect(self.url, headers={"Authorization": f"Token {self._api_key.reveal()}"},
                                          params={"sample_rate": str(self.sample_rate)})
        except aiohttp.WSServerHandshakeError as exc:
            msg = redact(f"{self.name}: handshake refused", self._api_key)
            if exc.status in (401, 403):
                raise ServiceAuthError(msg, exc.status) from None
            if exc.status == 429:
                raise ServiceRateLimitError(msg) from None
            raise ServiceStatusError(msg, exc.status) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise connection_error(exc, self.name, self._api_key) from None
        self._ws = ws
        self._recv = self.create_task(self._read_socket(ws), "stt_receive")

    async def disconnect(self) -> None:
        ws, self._ws = self._ws, None
        if self._recv is not None:
            await self.cancel_task(self._recv)
            self._recv = None
        if ws is not None:
            await ws.close()

    async def send_audio(self, audio: bytes) -> None:
        if self._ws is None:
            raise ServiceConnectionError(f"{self.name}: not connected")
        try:
            await self._ws.send_bytes(audio)
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise connection_error(exc, self.name, self._api_key) from None

    async def finalize(self) -> None:
        if self._ws is not None:
            try:
                await self._ws.send_str('{"type": "Finalize"}')
            except (aiohttp.ClientError, ConnectionError) as exc:
                raise connection_error(exc, self.name, self._api_key) from None

    async def _read_socket(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            try:
                obj = json.loads(msg.data)
                text, final = obj["transcript"], bool(obj["is_final"])
            except (ValueError, KeyError, TypeError):
                self.bad_input("a result that is not the expected JSON", msg.data)
                continue
            await self.push_transcription(text, final=final)
        if self._ws is ws:
            self.connection_lost(ServiceConnectionError(f"{self.name}: closed by the server"))


class FakeSTT(FakeProvider):
    expected_text = "hello from the fake"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/listen", self.listen)

    async def listen(self, request: web.Request) -> web.StreamResponse:
        if not self.key_ok(request.headers.get("Authorization", "").removeprefix("Token ")):
            return web.json_response(self.error_body(), status=401)
        b = self.next_behaviour()
        if b is Behaviour.STATUS:
            return web.json_response(self.error_body(), status=self.status)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        received = 0
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.BINARY:
                    received += len(msg.data)
                    if b is Behaviour.DISCONNECT:
                        assert request.transport is not None
                        request.transport.close()
                        return ws
                    await ws.send_json({"transcript": "hel", "is_final": False})
                elif msg.type is aiohttp.WSMsgType.TEXT and json.loads(msg.data).get("type") == "Finalize":
                    if b is Behaviour.SLOW or not received:
                        continue
                    if b is Behaviour.MALFORMED:
                        await ws.send_str("{not json")
                        b = Behaviour.NORMAL
                    received = 0
                    await ws.send_json({"transcript": self.expected_text, "is_final": True})
        finally:
            self.aborted.set()  # the client closed the socket
        return ws


def make_stt(fake: FakeProvider) -> FrameProcessor:
    return ToySTT(fake.url, fake.api_key, retry=FAST, reconnect_timeout_secs=2.0)


# ----------------------------------------------------------------------------- the suite

TARGETS = {
    "llm": ConformanceTarget("llm", FakeLLM, make_llm),
    "tts": ConformanceTarget("tts", FakeTTS, make_tts),
    "stt": ConformanceTarget("stt", FakeSTT, make_stt),
    "tts-ws": ConformanceTarget("tts", FakeWsTTS, make_ws_tts),
}


@pytest.mark.parametrize(
    ("kind", "scenario"),
    [pytest.param(k, s, id=f"{k}-{s}") for k in TARGETS for s in scenarios(TARGETS[k].kind)],
)
async def test_conformance(kind: str, scenario: Scenario) -> None:
    await run_scenario(TARGETS[kind], scenario)


def test_scenario_sets_per_kind() -> None:
    names = {k: [s.name for s in scenarios(k)] for k in ("llm", "tts", "stt")}
    assert "interruption_mid_stream" in names["llm"] and "interruption_mid_stream" not in names["stt"]
    assert len(names["llm"]) == 10 and len(names["stt"]) == 8


@pytest.mark.leaks_secret  # on purpose: the suite must catch it
async def test_the_suite_catches_a_key_in_a_log_line() -> None:
    class LeakyLLM(ToyLLM):
        async def run_inference(self, context: LLMContext) -> AsyncGenerator[LLMChunk, None]:
            assert self._api_key is not None
            logger.debug("calling with key %s", self._api_key.reveal())
            async for c in super().run_inference(context):
                yield c

    target = ConformanceTarget("llm", FakeLLM, lambda f: LeakyLLM(f.url, f.api_key, retry=FAST))
    with pytest.raises(AssertionError, match="API key appears"):
        await run_scenario(target, scenarios("llm")[0])


async def test_the_suite_catches_a_client_that_retries_a_400() -> None:
    class Stubborn(ToyLLM):
        async def run_inference(self, context: LLMContext) -> AsyncGenerator[LLMChunk, None]:
            try:
                async for c in super().run_inference(context):
                    yield c
            except ServiceStatusError as exc:
                exc.retryable = True  # wrong on purpose
                raise

    target = ConformanceTarget("llm", FakeLLM, lambda f: Stubborn(f.url, f.api_key, retry=FAST))
    scenario = next(s for s in scenarios("llm") if s.name == "status_400_not_retried")
    with pytest.raises(AssertionError, match="must not be retried"):
        await run_scenario(target, scenario)
