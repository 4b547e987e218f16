"""The fake Deepgram live STT server, driven by a raw aiohttp WebSocket client: results
decided by audio energy and silence, Finalize, CloseStream, interim results,
UtteranceEnd, SpeechStarted, auth and faults."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest

from flowcat.audio import pcm16_to_ulaw, silence, tone
from flowcat.testing.fakes import Behaviour, FakeDeepgram

KEY = "dg-test-key-SECRET"
RATE = 16000
SPEECH = tone(440, 0.6, RATE, 0.5)
QUIET = silence(0.5, RATE)


def _frames(pcm: bytes, ms: int = 20, rate: int = RATE, width: int = 2) -> list[bytes]:
    n = rate * ms // 1000 * width
    return [pcm[i : i + n] for i in range(0, len(pcm), n)]


async def _connect(s: aiohttp.ClientSession, fake: FakeDeepgram, query: str = "", key: str = KEY) -> Any:
    q = f"encoding=linear16&sample_rate={RATE}&channels=1&model=nova-3" + (f"&{query}" if query else "")
    return await s.ws_connect(f"{fake.url.replace('http', 'ws')}/v1/listen?{q}",
                              headers={"Authorization": f"Token {key}"})


async def _send_audio(ws: Any, pcm: bytes, rate: int = RATE, width: int = 2) -> None:
    for f in _frames(pcm, rate=rate, width=width):
        await ws.send_bytes(f)


async def _until(ws: Any, pred: Any, limit: float = 5.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(limit):
        while not got or not pred(got[-1]):
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            got.append(json.loads(msg.data))
    return got


def _final(m: dict[str, Any]) -> bool:
    return m.get("type") == "Results" and m["is_final"]


async def test_speech_then_silence_gives_scripted_final() -> None:
    async with FakeDeepgram(["hello there", "how are you"], api_key=KEY) as fake, aiohttp.ClientSession() as s:
        ws = await _connect(s, fake)
        await _send_audio(ws, QUIET[:8000] + SPEECH + QUIET)
        msgs = await _until(ws, _final)
        await _send_audio(ws, SPEECH + QUIET)
        msgs2 = await _until(ws, _final)
        await ws.close()
    first = msgs[-1]
    assert first["channel"]["alternatives"][0]["transcript"] == "hello there"
    assert first["speech_final"] is True and first["from_finalize"] is False
    assert first["channel_index"] == [0, 1] and first["metadata"]["model_info"]["name"] == "nova-3"
    # The final covers everything since the start, ending 300 ms (default endpointing) after the speech.
    assert first["start"] == 0.0 and first["duration"] == pytest.approx(0.25 + 0.6 + 0.3, abs=0.011)
    words = first["channel"]["alternatives"][0]["words"]
    assert [w["word"] for w in words] == ["hello", "there"]
    assert words[0]["start"] == pytest.approx(0.25, abs=0.011) and words[-1]["end"] == pytest.approx(0.85, abs=0.011)
    assert msgs2[-1]["channel"]["alternatives"][0]["transcript"] == "how are you"
    assert msgs2[-1]["start"] == pytest.approx(first["start"] + first["duration"], abs=1e-6)
    assert not [m for m in msgs + msgs2 if m["type"] == "Results" and not m["is_final"]]  # no interim asked


async def test_interim_results_utterance_end_and_speech_started() -> None:
    fake = FakeDeepgram(["one two three four"], api_key=KEY, interim_every_ms=200)
    async with fake, aiohttp.ClientSession() as s:
        ws = await _connect(s, fake, "interim_results=true&utterance_end_ms=1000&vad_events=true&endpointing=300")
        await _send_audio(ws, SPEECH + silence(1.2, RATE))
        msgs = await _until(ws, lambda m: m["type"] == "UtteranceEnd")
        await ws.close()
    kinds = [(m["type"], m.get("is_final")) for m in msgs]
    assert kinds == [("SpeechStarted", None), ("Results", False), ("Results", False), ("Results", False),
                     ("Results", True), ("UtteranceEnd", None)]
    assert [m["channel"]["alternatives"][0]["transcript"] for m in msgs[1:5]] == [
        "one", "one two", "one two three", "one two three four"]
    assert msgs[0]["timestamp"] == 0.0
    assert msgs[-1]["last_word_end"] == pytest.approx(0.6, abs=0.011)


async def test_finalize_before_endpoint_and_when_nothing_pending() -> None:
    async with FakeDeepgram(["hi"], api_key=KEY, final_delay=0.05) as fake, aiohttp.ClientSession() as s:
        ws = await _connect(s, fake, "endpointing=2000")
        await _send_audio(ws, SPEECH + silence(0.2, RATE))
        await ws.send_str(json.dumps({"type": "Finalize"}))
        got = await _until(ws, _final)
        await ws.send_str(json.dumps({"type": "Finalize"}))
        empty = await _until(ws, _final)
        await ws.send_str(json.dumps({"type": "KeepAlive"}))
        await ws.send_str(json.dumps({"type": "CloseStream"}))
        meta = await _until(ws, lambda m: m["type"] == "Metadata")
        closed = await ws.receive()
    assert got[-1]["from_finalize"] is True and got[-1]["speech_final"] is False
    assert got[-1]["channel"]["alternatives"][0]["transcript"] == "hi"
    assert empty[-1]["from_finalize"] is True and empty[-1]["channel"]["alternatives"][0]["transcript"] == ""
    assert meta[-1]["duration"] == pytest.approx(0.8, abs=0.011) and meta[-1]["channels"] == 1
    assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 1000
    rec = fake.received[0]
    assert [m["type"] for m in rec.messages] == ["Finalize", "Finalize", "KeepAlive", "CloseStream"]
    assert len(rec.audio) == len(SPEECH) + 6400 and rec.query["sample_rate"] == str(RATE)
    assert rec.headers["Authorization"] == "<redacted>"


async def test_close_stream_flushes_pending_speech() -> None:
    async with FakeDeepgram(["pending words"], api_key=KEY) as fake, aiohttp.ClientSession() as s:
        ws = await _connect(s, fake)
        await _send_audio(ws, SPEECH)
        await ws.send_str(json.dumps({"type": "CloseStream"}))
        msgs = await _until(ws, lambda m: m["type"] == "Metadata")
    assert msgs[0]["channel"]["alternatives"][0]["transcript"] == "pending words" and msgs[0]["is_final"]


async def test_mulaw_8k() -> None:
    pcm = tone(300, 0.5, 8000, 0.5) + silence(0.4, 8000)
    async with FakeDeepgram(["mu law"], api_key=KEY) as fake, aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{fake.url.replace('http', 'ws')}/v1/listen?encoding=mulaw&sample_rate=8000",
                                headers={"Authorization": f"Token {KEY}"})
        await _send_audio(ws, pcm16_to_ulaw(pcm), rate=8000, width=1)
        msgs = await _until(ws, _final)
    assert msgs[-1]["channel"]["alternatives"][0]["transcript"] == "mu law"


async def test_quiet_noise_is_not_speech() -> None:
    async with FakeDeepgram(["never"], api_key=KEY) as fake, aiohttp.ClientSession() as s:
        ws = await _connect(s, fake)
        await _send_audio(ws, tone(440, 0.5, RATE, 0.003) + QUIET)  # about -53 dBFS
        await ws.send_str(json.dumps({"type": "Finalize"}))
        msgs = await _until(ws, _final)
    assert [m["channel"]["alternatives"][0]["transcript"] for m in msgs] == [""]


async def test_auth_refused_with_dg_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeDeepgram(api_key=KEY) as fake, aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await _connect(s, fake, key="wrong-SECRET")
        assert err.value.status == 401 and "dg-error" in {k.lower() for k in err.value.headers or {}}
        # The browser form: the key as the second subprotocol.
        ws = await s.ws_connect(f"{fake.url.replace('http', 'ws')}/v1/listen?encoding=linear16&sample_rate=16000",
                                protocols=("token", KEY))
        assert ws.protocol == "token"
        await ws.close()
    assert fake.auth_failures == 1
    assert all("SECRET" not in r.getMessage() for r in caplog.records)
    assert all(r.headers.get("Sec-WebSocket-Protocol", "<redacted>") == "<redacted>" for r in fake.received)


async def test_injected_faults() -> None:
    async with FakeDeepgram(["x"], api_key=KEY) as fake, aiohttp.ClientSession() as s:
        fake.set(Behaviour.STATUS, failures=1, status=429)
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await _connect(s, fake)
        assert err.value.status == 429

        fake.set(Behaviour.STREAM_ERROR, failures=1)
        ws = await _connect(s, fake)
        await _send_audio(ws, SPEECH + QUIET)
        await _until(ws, _final)  # the first result goes out, then the close
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1011 and "NET-0000" in msg.extra

        fake.set(Behaviour.MALFORMED, failures=1)
        ws = await _connect(s, fake)
        await _send_audio(ws, SPEECH + QUIET)
        bad = await ws.receive()  # one message that does not parse, then the answer goes on
        with pytest.raises(ValueError):
            json.loads(bad.data)
        assert (await _until(ws, _final))[-1]["channel"]["alternatives"][0]["transcript"] == "x"
        await ws.close()

        fake.set(Behaviour.DISCONNECT, failures=1)
        ws = await _connect(s, fake)
        await _send_audio(ws, SPEECH + QUIET)
        await _until(ws, _final)
        gone = await ws.receive()
        assert gone.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)


async def test_idle_timeout_closes_net_0001_and_empty_frame_closes() -> None:
    async with FakeDeepgram(api_key=KEY, idle_timeout=0.2) as fake, aiohttp.ClientSession() as s:
        ws = await _connect(s, fake)
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1011 and "NET-0001" in msg.extra
        ws = await _connect(s, fake)
        await ws.send_bytes(b"")
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1011


async def test_each_connection_walks_the_script_from_the_start() -> None:
    async with FakeDeepgram(["first", "second"], api_key=KEY) as fake, aiohttp.ClientSession() as s:
        a = await _connect(s, fake)
        b = await _connect(s, fake)
        texts = []
        for ws in (a, b, a):
            await _send_audio(ws, SPEECH + QUIET)
            texts.append((await _until(ws, _final))[-1]["channel"]["alternatives"][0]["transcript"])
    assert texts == ["first", "first", "second"]


async def test_aborted_when_the_client_ends_its_stream_either_way() -> None:
    for close_stream in (True, False):
        async with FakeDeepgram(api_key=KEY) as fake, aiohttp.ClientSession() as s:
            ws = await _connect(s, fake)
            await _send_audio(ws, SPEECH)
            assert not fake.aborted.is_set()
            if close_stream:
                await ws.send_str(json.dumps({"type": "CloseStream"}))
            else:
                await ws.close()
            await fake.wait_until(fake.aborted.is_set)


async def test_a_fault_set_mid_connection_hits_the_next_utterance() -> None:
    async with FakeDeepgram(["one", "two"], api_key=KEY) as fake, aiohttp.ClientSession() as s:
        ws = await _connect(s, fake)
        await _send_audio(ws, SPEECH + QUIET)
        assert (await _until(ws, _final))[-1]["channel"]["alternatives"][0]["transcript"] == "one"
        fake.set(Behaviour.STREAM_ERROR, failures=1)
        await _send_audio(ws, SPEECH + QUIET)
        assert (await _until(ws, _final))[-1]["channel"]["alternatives"][0]["transcript"] == "two"
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1011
    assert fake.requests == 2  # the handshake and the utterance that took the fault


async def test_record_payloads_off_counts_audio_without_keeping_it() -> None:
    async with FakeDeepgram(["x"], api_key=KEY, record_payloads=False) as fake, aiohttp.ClientSession() as s:
        ws = await _connect(s, fake)
        await _send_audio(ws, SPEECH + QUIET)
        await _until(ws, _final)
        await ws.close()
    rec = fake.received[0]
    assert rec.audio_bytes == len(SPEECH + QUIET) and not rec.audio and not rec.sent
