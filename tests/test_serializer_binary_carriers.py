"""Carrier-specific behaviour of the binary-audio carriers: Vonage, Genesys AudioHook, Asterisk.

Exact control messages (NCCO, opened/pong/closed/event/disconnect with seq and
clientseq bookkeeping, chan_websocket commands in JSON and plain text), exact
binary framing, playback acknowledgements, and the marks/frame-size helpers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flowcat.audio import tone
from flowcat.frames import (
    EndFrame,
    InputAudioRawFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    TTSStoppedFrame,
)
from flowcat.serializers import (
    AsteriskFrameSerializer,
    GenesysFrameSerializer,
    MarkTracker,
    VonageCarrier,
    VonageFrameSerializer,
)
from flowcat.serializers._framer import Framer

FIXTURES = Path(__file__).parent / "fixtures" / "carriers"


def fixture(name: str) -> list[str]:
    return [json.dumps(m) for m in json.loads((FIXTURES / name).read_text())]


def out_audio(ms: int = 20, rate: int = 24000) -> OutputAudioRawFrame:
    return OutputAudioRawFrame(audio=tone(1000, ms / 1000, rate), sample_rate=rate)


def flat(out: Any) -> list[Any]:
    return [] if out is None else out if isinstance(out, list) else [out]


# ---------------------------------------------------------------- Vonage


def test_vonage_ncco_carries_call_uuid() -> None:
    class Req:
        query = {"uuid": "vg-uuid-7", "from": "447700900000"}

    doc = VonageCarrier.answer_document(
        "wss://bot.example.com/vg/abc",
        request=Req(),
        headers={"tenant": "acme"},
        event_url="https://bot.example.com/ev",
    )
    assert doc == (
        '[{"action":"connect","endpoint":[{"type":"websocket","uri":"wss://bot.example.com/vg/abc",'
        '"content-type":"audio/l16;rate=16000","headers":{"tenant":"acme","call_uuid":"vg-uuid-7"}}],'
        '"eventType":"synchronous","eventUrl":["https://bot.example.com/ev"]}]'
    )


async def test_vonage_exact_640_byte_messages_notify_and_cleared() -> None:
    ser = VonageFrameSerializer()
    await ser.handshake(fixture("vonage_connected.json")[0])
    outs: list[Any] = []
    for _ in range(11):
        outs += flat(await ser.serialize(out_audio(30)))  # 30 ms frames do not divide 20 ms messages
    assert len(outs) == 16 and all(isinstance(m, bytes) and len(m) == 640 for m in outs)
    tail = flat(await ser.serialize(TTSStoppedFrame()))  # 330 ms: the last 10 ms padded to 20
    assert len(tail[0]) == 640 and tail[-1] == '{"action":"notify","payload":{"name":"fc-1"}}'
    await ser.deserialize('{"event":"websocket:notify","payload":{"name":"fc-1"}}')
    assert ser.marks.played_up_to == pytest.approx(ser.marks.sent_up_to) and ser.marks.played_up_to > 0.2
    assert await ser.serialize(InterruptionFrame()) == '{"action":"clear"}'
    assert await ser.deserialize('{"event":"websocket:cleared"}') is None and ser.bad_inputs == 0


async def test_vonage_8k_and_unsupported_content_type() -> None:
    ser = VonageFrameSerializer()
    info = await ser.handshake(
        '{"event":"websocket:connected","content-type":"audio/l16;rate=8000","uuid":"u-8"}'
    )
    assert info is not None and info.sample_rate == 8000 and info.call_id == "u-8"
    frame = await ser.deserialize(tone(500, 0.02, 8000))
    assert isinstance(frame, InputAudioRawFrame) and frame.sample_rate == 16000
    outs = flat(await ser.serialize(out_audio(100)))
    assert all(len(m) == 320 for m in outs)
    ser2 = VonageFrameSerializer()
    info2 = await ser2.handshake('{"event":"websocket:connected","content-type":"audio/pcmu;rate=8000"}')
    assert info2 is not None and info2.sample_rate == 16000 and ser2.bad_inputs == 1


# ---------------------------------------------------------------- Genesys

SID = "30b0e395-0001"


def gmsg(type_: str, seq: int, **params: Any) -> str:
    return json.dumps(
        {
            "version": "2",
            "type": type_,
            "seq": seq,
            "serverseq": 1,
            "id": SID,
            "position": "PT1.5S",
            "parameters": params,
        }
    )


async def test_genesys_open_opened_ping_pong_and_seq_bookkeeping() -> None:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    ser = GenesysFrameSerializer()
    ser.sender = send
    await ser.handshake(fixture("genesys_open.json")[0])
    assert sent == [
        '{"version":"2","type":"opened","seq":1,"clientseq":1,"id":"30b0e395-0001","parameters":{"startPaused":false,'
        '"media":[{"type":"audio","format":"PCMU","channels":["external"],"rate":8000}]}}'
    ]
    await ser.deserialize(gmsg("ping", 2, rtt="PT0.05S"))
    assert (
        sent[-1] == '{"version":"2","type":"pong","seq":2,"clientseq":2,"id":"30b0e395-0001","parameters":{}}'
    )
    assert ser.position == "PT1.5S"
    await ser.deserialize(gmsg("paused", 3))
    assert ser.paused
    await ser.deserialize(gmsg("resumed", 4))
    await ser.deserialize(gmsg("update", 5, language="es-ES"))
    assert (
        not ser.paused
        and ser.call_info is not None
        and ser.call_info.extra["updates"] == [{"language": "es-ES"}]
    )
    await ser.deserialize(gmsg("error", 6, code=429, message="Too many requests", retryAfter="PT1S"))
    assert (await ser.serialize(InterruptionFrame())) == (
        '{"version":"2","type":"event","seq":3,"clientseq":6,"id":"30b0e395-0001",'
        '"parameters":{"entities":[{"type":"barge_in","data":{}}]}}'
    )
    assert ser.bad_inputs == 0


async def test_genesys_audio_out_playback_and_disconnect_with_outputs() -> None:
    ser = GenesysFrameSerializer(output_variables={"intent": "billing"})
    await ser.handshake(fixture("genesys_open.json")[0])
    assert len(ser.take_replies()) == 1
    outs = flat(await ser.serialize(out_audio(200)))
    assert outs and all(isinstance(m, bytes) for m in outs)
    await ser.deserialize(gmsg("playback_started", 2))
    await ser.deserialize(gmsg("playback_completed", 3))
    assert ser.marks.played_up_to == pytest.approx(ser.marks.sent_up_to)
    assert await ser.serialize(EndFrame()) == (
        '{"version":"2","type":"disconnect","seq":2,"clientseq":3,"id":"30b0e395-0001",'
        '"parameters":{"reason":"completed","outputVariables":{"intent":"billing"}}}'
    )
    assert await ser.serialize(EndFrame()) is None  # only once


async def test_genesys_close_is_answered_and_ends_the_session() -> None:
    ser = GenesysFrameSerializer()
    await ser.handshake(fixture("genesys_open.json")[0])
    await ser.deserialize(gmsg("close", 2, reason="end"))
    assert (
        ser.take_replies()[-1]
        == '{"version":"2","type":"closed","seq":2,"clientseq":2,"id":"30b0e395-0001","parameters":{}}'
    )
    assert ser.remote_ended
    assert await ser.serialize(InterruptionFrame()) is None
    assert await ser.serialize(EndFrame()) is None


async def test_genesys_rejects_audio_before_open() -> None:
    ser = GenesysFrameSerializer()
    assert await ser.deserialize(b"\xff" * 160) is None and ser.bad_inputs == 1
    await ser.handshake(fixture("genesys_open.json")[0])
    frames = [await ser.deserialize(b"\xff" * 160) for _ in range(3)]
    assert any(isinstance(f, InputAudioRawFrame) for f in frames) and ser.bad_inputs == 1


# ---------------------------------------------------------------- Asterisk


async def test_asterisk_plain_text_control_and_slin16() -> None:
    ser = AsteriskFrameSerializer()
    info = await ser.handshake(
        "MEDIA_START connection_id:c-1 channel:WebSocket/x channel_id:ch-9 format:slin16 optimal_frame_size:640 ptime:20"
    )
    assert info is not None and (info.codec, info.sample_rate, info.call_id) == ("L16", 16000, "ch-9")
    assert await ser.serialize(InterruptionFrame()) == "FLUSH_MEDIA"
    outs = flat(await ser.serialize(out_audio(100)))
    assert outs and all(isinstance(m, bytes) and len(m) % 640 == 0 for m in outs)
    assert flat(await ser.serialize(TTSStoppedFrame()))[-1] == "MARK_MEDIA correlation_id:fc-1"
    await ser.deserialize("MEDIA_MARK_PROCESSED channel_id:ch-9 correlation_id:fc-1")
    assert ser.marks.played_up_to == pytest.approx(ser.marks.sent_up_to)
    frame = await ser.deserialize("DTMF_END channel_id:ch-9 digit:7")
    assert frame is not None and frame.button.value == "7"  # type: ignore[attr-defined]
    assert await ser.serialize(EndFrame()) == "HANGUP"


async def test_asterisk_json_flow_control_and_oversize_split() -> None:
    ser = AsteriskFrameSerializer()
    await ser.handshake(fixture("asterisk_media_start.json")[0])
    await ser.deserialize('{"event":"MEDIA_XOFF","channel_id":"pbx1-123.999"}')
    assert ser.xoff
    await ser.deserialize('{"event":"MEDIA_XON","channel_id":"pbx1-123.999"}')
    assert not ser.xoff
    outs = flat(await ser.serialize(out_audio(10_000)))  # 10 s at once: 80,000 μ-law bytes
    assert len(outs) >= 2 and all(len(m) <= 65_500 and len(m) % 160 == 0 for m in outs)
    assert json.loads(flat(ser.mark("bye"))[-1]) == {"command": "MARK_MEDIA", "correlation_id": "bye"}
    await ser.deserialize('{"event":"QUEUE_DRAINED","channel_id":"pbx1-123.999"}')
    assert ser.marks.played_up_to == pytest.approx(ser.marks.sent_up_to)
    assert ser.bad_inputs == 0


async def test_asterisk_unsupported_format_is_logged() -> None:
    ser = AsteriskFrameSerializer()
    info = await ser.handshake(
        '{"event":"MEDIA_START","connection_id":"c","channel_id":"ch","format":"opus","optimal_frame_size":0}'
    )
    assert info is not None and info.codec == "PCMU" and ser.bad_inputs == 1


# ---------------------------------------------------------------- helpers


def test_mark_tracker_orders_and_voids() -> None:
    t = MarkTracker()
    t.sent(800, 8000)
    a = t.place()
    t.sent(800, 8000)
    b = t.place("b")
    seen: list[tuple[str, float]] = []
    t.on_played = lambda n, s: seen.append((n, s))
    assert t.echoed(b) and seen == [("b", 0.2)] and t.outstanding == []
    assert not t.echoed(a)  # already covered by the later echo
    t.sent(800, 8000)
    t.place("c")
    t.cleared()
    assert not t.echoed("c") and t.voided == 1 and t.played_up_to == pytest.approx(0.2)


def test_framer_units_minimum_and_padding() -> None:
    f = Framer(320, min_bytes=3200, max_bytes=6400, silence=0, pad_to_min=True)
    assert f.push(b"\x01" * 3000) == []
    out = f.push(b"\x01" * 7000)
    assert [len(c) for c in out] == [6400, 3520] and f.buffered == 80
    assert f.flush() == b"\x01" * 80 + b"\x00" * 3120
    g = Framer(160, silence=0xFF)
    assert g.push(b"\x00" * 100) == [] and g.flush() == b"\x00" * 100 + b"\xff" * 60
