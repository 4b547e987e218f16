"""The fake Cartesia TTS socket, driven by a raw aiohttp client: contexts, continue,
flush, cancel, timestamps, tone audio that decodes back to the text, auth, faults."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import aiohttp
import pytest

from flowcat.audio import ulaw_to_pcm16
from flowcat.testing.fakes import Behaviour, FakeCartesia, decode_tones, synthesize_tones

KEY = "cartesia-key-SECRET"
HEADERS = {"X-API-Key": KEY, "Cartesia-Version": "2025-04-16"}


def _gen(ctx: str, text: str, cont: bool = True, **kw: Any) -> dict[str, Any]:
    return {"model_id": "sonic-3", "transcript": text, "voice": {"mode": "id", "id": "v"}, "language": "en",
            "context_id": ctx, "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 8000},
            "add_timestamps": True, "continue": cont, **kw}


async def _connect(s: aiohttp.ClientSession, fake: FakeCartesia, headers: dict[str, str] = HEADERS,
                   query: str = "") -> Any:
    return await s.ws_connect(f"{fake.url.replace('http', 'ws')}/tts/websocket{query}", headers=headers)


async def _until(ws: Any, pred: Any, limit: float = 5.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(limit):
        while not got or not pred(got[-1]):
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            got.append(json.loads(msg.data))
    return got


def _audio(msgs: list[dict[str, Any]], ctx: str | None = None) -> bytes:
    return b"".join(base64.b64decode(m["data"]) for m in msgs
                    if m["type"] == "chunk" and (ctx is None or m["context_id"] == ctx))


def test_tones_round_trip() -> None:
    for rate in (8000, 16000, 24000):
        pcm = synthesize_tones("Hello, world! 42", rate)
        assert len(pcm) == 16 * rate // 50 * 2
        assert decode_tones(pcm, rate) == "hello, world! 42"
    assert decode_tones(synthesize_tones("é#", 8000), 8000) == "??"


async def test_context_continue_flush_done_and_timestamps() -> None:
    async with FakeCartesia(api_key=KEY) as fake, aiohttp.ClientSession() as s:
        ws = await _connect(s, fake)
        await ws.send_json(_gen("c1", "Hello there. "))
        await ws.send_json(_gen("c1", "Bye now.", flush=True))
        await ws.send_json(_gen("c1", "", cont=False))
        msgs = await _until(ws, lambda m: m["type"] == "done")
        await ws.close()
    assert {m["context_id"] for m in msgs} == {"c1"}
    assert decode_tones(_audio(msgs), 8000) == "hello there. bye now."
    assert _audio(msgs) == fake.audio_for("Hello there. Bye now.", 8000)
    ts = [m["word_timestamps"] for m in msgs if m["type"] == "timestamps"]
    assert ts[0] == {"words": ["Hello", "there."], "start": [0.0, 0.12], "end": [0.1, 0.24]}
    assert ts[1]["words"] == ["Bye", "now."] and ts[1]["start"][0] == pytest.approx(0.26)  # offset by 13 chars
    kinds = [m["type"] for m in msgs]
    assert kinds.index("flush_done") > max(i for i, k in enumerate(kinds) if k == "chunk")
    flush = next(m for m in msgs if m["type"] == "flush_done")
    assert flush["flush_id"] == 1 and flush["flush_done"] is True
    assert kinds[-1] == "done" and msgs[-1]["done"] is True
    chunk = next(m for m in msgs if m["type"] == "chunk")
    assert chunk["status_code"] == 206 and chunk["done"] is False and len(base64.b64decode(chunk["data"])) == 640
    assert fake.transcripts == {"c1": "Hello there. Bye now."}


async def test_two_contexts_and_cancel() -> None:
    async with FakeCartesia(api_key=KEY, chunk_interval=0.01) as fake, aiohttp.ClientSession() as s:
        ws = await _connect(s, fake)
        await ws.send_json(_gen("old", "a long sentence that will be cut off " * 4))
        first = await _until(ws, lambda m: m["type"] == "chunk")
        await ws.send_json({"context_id": "old", "cancel": True})
        await ws.send_json(_gen("new", "fresh", cont=False))
        msgs = await _until(ws, lambda m: m["type"] == "done")
        await ws.close()
    after_cancel = [m for m in msgs if m["context_id"] == "old"]
    total_old = len(fake.audio_for("a long sentence that will be cut off " * 4, 8000))
    assert len(_audio(first + after_cancel, "old")) < total_old // 2  # generation stopped
    assert decode_tones(_audio(msgs, "new"), 8000) == "fresh"
    assert fake.cancelled == ["old"]


async def test_mulaw_output_and_reuse_of_ended_context() -> None:
    async with FakeCartesia(api_key=KEY) as fake, aiohttp.ClientSession() as s:
        ws = await _connect(s, fake)
        fmt = {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000}
        await ws.send_json(_gen("m", "ok", cont=False, output_format=fmt))
        msgs = await _until(ws, lambda m: m["type"] == "done")
        await ws.send_json(_gen("m", "again"))
        err = await _until(ws, lambda m: m["type"] == "error")
        await ws.send_json(_gen("x", "bad", model_id=""))
        err2 = await _until(ws, lambda m: m["type"] == "error")
        await ws.close()
    assert decode_tones(ulaw_to_pcm16(_audio(msgs)), 8000) == "ok"
    assert err[-1]["status_code"] == 400 and err[-1]["context_id"] == "m"
    assert "model_id" in err2[-1]["message"]


async def test_auth_forms_and_refusals(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeCartesia(api_key=KEY) as fake, aiohttp.ClientSession() as s:
        ws = await _connect(s, fake, {}, f"?api_key={KEY}&cartesia_version=2025-04-16")
        await ws.close()
        ws = await _connect(s, fake, {"Authorization": f"Bearer {KEY}", "Cartesia-Version": "2025-04-16"})
        await ws.close()
        for headers, status in (({"X-API-Key": "nope-SECRET", "Cartesia-Version": "v"}, 401),
                                ({"X-API-Key": KEY}, 400)):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await _connect(s, fake, headers)
            assert err.value.status == status
    assert fake.auth_failures == 1
    assert fake.received[0].query["api_key"] == "<redacted>"
    assert all("SECRET" not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("behaviour", [Behaviour.STREAM_ERROR, Behaviour.DISCONNECT])
async def test_faults_after_first_chunk(behaviour: Behaviour) -> None:
    async with FakeCartesia(api_key=KEY) as fake, aiohttp.ClientSession() as s:
        fake.set(behaviour, failures=1)
        ws = await _connect(s, fake)
        await ws.send_json(_gen("c", "some words here", cont=False))
        first = await _until(ws, lambda m: m["type"] == "chunk")
        assert first[-1]["context_id"] == "c"
        msg = await ws.receive(timeout=5)
        if behaviour is Behaviour.STREAM_ERROR:
            m = json.loads(msg.data)
            if m["type"] == "timestamps":
                m = json.loads((await ws.receive(timeout=5)).data)
            assert m["type"] == "error" and m["status_code"] == 500 and m["context_id"] == "c"
        else:
            while msg.type is aiohttp.WSMsgType.TEXT:
                msg = await ws.receive(timeout=5)
            assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)


async def test_ttfa_delay() -> None:
    async with FakeCartesia(api_key=KEY, ttfa=0.2) as fake, aiohttp.ClientSession() as s:
        ws = await _connect(s, fake)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await ws.send_json(_gen("c", "hi", cont=False))
        await _until(ws, lambda m: m["type"] == "chunk")
        assert loop.time() - t0 >= 0.2
        await ws.close()


async def test_query_version_wins_and_access_token_and_bad_rate() -> None:
    async with FakeCartesia(api_key=KEY) as fake, aiohttp.ClientSession() as s:
        ws = await _connect(s, fake, {}, f"?access_token={KEY}&cartesia_version=2026-03-01")
        await ws.send_json(_gen("r", "x", output_format={"container": "raw", "encoding": "pcm_s16le",
                                                         "sample_rate": 11025}))
        err = await _until(ws, lambda m: m["type"] == "error")
        await ws.close()
    assert "sample_rate" in err[-1]["message"]
    assert fake.received[0].query == {"access_token": "<redacted>", "cartesia_version": "2026-03-01"}


async def test_conformance_surface_and_aborted_on_cancel() -> None:
    fake = FakeCartesia(api_key=KEY, chunk_interval=0.01)
    assert decode_tones(fake.expected_audio, fake.sample_rate) == fake.expected_text.lower()
    async with fake, aiohttp.ClientSession() as s:
        ws = await _connect(s, fake)
        await ws.send_json(_gen("done-one", "ok", cont=False))
        await _until(ws, lambda m: m["type"] == "done")
        await ws.send_json({"context_id": "done-one", "cancel": True})  # already over: nothing to abort
        await ws.send_json(_gen("live", "a long enough sentence to be cut"))
        await _until(ws, lambda m: m["type"] == "chunk" and m["context_id"] == "live")
        assert not fake.aborted.is_set()
        await ws.send_json({"context_id": "live", "cancel": True})
        await fake.wait_until(fake.aborted.is_set)
        await ws.close()


async def test_faults_per_context_malformed_status_and_slow_with_late_audio() -> None:
    async with FakeCartesia(api_key=KEY, chunk_ms=20, echo_key_in_errors=True) as fake, aiohttp.ClientSession() as s:
        ws = await _connect(s, fake)
        await ws.send_json(_gen("ok", "fine", cont=False))
        assert decode_tones(_audio(await _until(ws, lambda m: m["type"] == "done")), 8000) == "fine"

        fake.set(Behaviour.MALFORMED, failures=1)  # set after the connection: the next context takes it
        await ws.send_json(_gen("bad", "still spoken", cont=False))
        raw = await ws.receive(timeout=5)
        with pytest.raises(ValueError):
            json.loads(raw.data)
        assert decode_tones(_audio(await _until(ws, lambda m: m["type"] == "done")), 8000) == "still spoken"

        fake.set(Behaviour.STATUS, failures=1, status=429)
        await ws.send_json(_gen("limited", "no", cont=False))
        err = (await _until(ws, lambda m: m["type"] == "error"))[-1]
        assert err["status_code"] == 429 and err["context_id"] == "limited" and KEY in err["message"]

        fake.set(Behaviour.SLOW, failures=1)
        await ws.send_json(_gen("slow", "a sentence long enough to stall", cont=False))
        first = await _until(ws, lambda m: m["type"] == "chunk")
        await ws.send_json({"context_id": "slow", "cancel": True})
        late: list[dict[str, Any]] = []
        while len([m for m in late if m["type"] == "chunk"]) < fake.late_chunks:
            late.append(json.loads((await ws.receive(timeout=5)).data))
        assert {m["context_id"] for m in late} == {"slow"} and fake.aborted.is_set()
        assert decode_tones(_audio(first + late), 8000) == "a sentence long enough to stall"[:3]

        await ws.send_json(_gen("after", "normal again", cont=False))
        assert decode_tones(_audio(await _until(ws, lambda m: m["type"] == "done")), 8000) == "normal again"
        await ws.close()
    assert fake.requests == 4  # the handshake, then one per context that took a fault
