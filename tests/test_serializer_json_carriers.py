"""Carrier-specific behaviour of the JSON carriers: Twilio, Cloudonix, Telnyx, Plivo, Vobiz, Exotel.

Answer documents (exact), webhook signatures (valid and tampered, through a real
aiohttp server on 127.0.0.1), marks/checkpoints and the clear that voids them,
framing rules and the unconfirmed field variants that must both be accepted.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from flowcat.audio import pcm16_to_alaw, tone
from flowcat.frames import InputAudioRawFrame, InterruptionFrame, OutputAudioRawFrame, TTSStoppedFrame
from flowcat.serializers import (
    CloudonixFrameSerializer,
    ExotelFrameSerializer,
    PlivoFrameSerializer,
    TelnyxFrameSerializer,
    TwilioFrameSerializer,
    VobizFrameSerializer,
)
from flowcat.serializers._signatures import plivo_v3_signature, twilio_signature, validate_plivo_v3

FIXTURES = Path(__file__).parent / "fixtures" / "carriers"


def fixture(name: str) -> list[str]:
    return [json.dumps(m) for m in json.loads((FIXTURES / name).read_text())]


async def ready(ser: Any, name: str) -> Any:
    for msg in fixture(name):
        await ser.handshake(msg)
    assert ser.call_info is not None
    return ser


def out_audio(ms: int = 20, rate: int = 24000) -> OutputAudioRawFrame:
    return OutputAudioRawFrame(audio=tone(1000, ms / 1000, rate), sample_rate=rate)


async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------- Twilio


def test_twilio_signature_matches_published_example() -> None:
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    assert (
        twilio_signature("https://mycompany.com/myapp.php?foo=1&bar=2", params, "12345")
        == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    )


TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://bot.example.com/tw/abc">'
    '<Parameter name="tenant" value="acme &amp; co"/></Stream></Connect></Response>'
)


async def test_twilio_answer_webhook_verifies_signature() -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        return await TwilioFrameSerializer.answer(
            request,
            "wss://bot.example.com/tw/abc",
            parameters={"tenant": "acme & co"},
            auth_token="tw-secret",
        )

    runner, base = await serve(answer)
    try:
        form = {"CallSid": "CA9", "From": "+15550001", "To": "+15550002"}
        url = base + "/voice?x=1"
        good = twilio_signature(url, form, "tw-secret")
        async with ClientSession() as http:
            async with http.post(url, data=form, headers={"X-Twilio-Signature": good}) as resp:
                assert resp.status == 200 and resp.content_type == "application/xml"
                assert await resp.text() == TWIML
            tampered = {**form, "To": "+15559999"}
            async with http.post(url, data=tampered, headers={"X-Twilio-Signature": good}) as resp:
                assert resp.status == 403
            async with http.post(url, data=form) as resp:
                assert resp.status == 403
    finally:
        await runner.cleanup()


async def test_twilio_marks_track_playback_and_clear_voids_them() -> None:
    ser = await ready(TwilioFrameSerializer(), "twilio_start.json")
    played: list[tuple[str, float]] = []
    ser.marks.on_played = lambda name, pos: played.append((name, pos))
    for _ in range(25):
        await ser.serialize(out_audio())
    sent = ser.marks.sent_up_to
    assert sent > 0.3
    assert (
        await ser.serialize(TTSStoppedFrame())
        == '{"event":"mark","streamSid":"MZ0001","mark":{"name":"fc-1"}}'
    )
    assert (
        await ser.deserialize(json.dumps({"event": "mark", "streamSid": "MZ0001", "mark": {"name": "fc-1"}}))
        is None
    )
    assert played == [("fc-1", pytest.approx(sent))] and ser.marks.played_up_to == pytest.approx(sent)
    await ser.serialize(out_audio(200))
    assert json.loads(ser.mark("utt-3"))["mark"] == {"name": "utt-3"}
    assert await ser.serialize(InterruptionFrame()) == '{"event":"clear","streamSid":"MZ0001"}'
    # Twilio echoes the marks it flushed on clear: they must not count as played.
    await ser.deserialize(json.dumps({"event": "mark", "streamSid": "MZ0001", "mark": {"name": "utt-3"}}))
    assert ser.marks.played_up_to == pytest.approx(sent) and ser.marks.voided >= 1


async def test_twilio_periodic_marks_follow_media() -> None:
    ser = await ready(TwilioFrameSerializer(mark_every_ms=100), "twilio_start.json")
    outs: list[Any] = []
    for _ in range(40):
        out = await ser.serialize(out_audio())
        outs += out if isinstance(out, list) else [out] if out else []
    events = [json.loads(m)["event"] for m in outs]
    assert events.count("mark") >= 5
    assert events[0] == "media" and all(events[i - 1] == "media" for i, e in enumerate(events) if e == "mark")


async def test_twilio_stop_means_no_hang_up_and_unsupported_codec_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ser = TwilioFrameSerializer(account_sid="AC1", auth_token="t", api_base="http://127.0.0.1:9")
    start = json.loads(fixture("twilio_start.json")[1])
    start["start"]["mediaFormat"]["encoding"] = "audio/x-opus"
    with caplog.at_level(logging.WARNING, logger="flowcat.serializers"):
        info = await ser.handshake(json.dumps(start))
    assert info is not None and info.codec == "PCMU" and ser.bad_inputs == 1
    assert "audio/x-opus" in caplog.text
    await ser.deserialize(
        '{"event":"stop","sequenceNumber":"5","streamSid":"MZ0001","stop":{"callSid":"CA0001"}}'
    )
    assert ser.remote_ended and ser.hang_up_request() is not None


# ---------------------------------------------------------------- Cloudonix


async def test_cloudonix_accepts_both_session_fields(caplog: pytest.LogCaptureFixture) -> None:
    start = json.loads(fixture("cloudonix_start.json")[1])
    del start["start"]["session"]
    start["start"]["sessionToken"] = "tok-9"
    ser = CloudonixFrameSerializer()
    with caplog.at_level(logging.INFO, logger="flowcat.serializers"):
        info = await ser.handshake(json.dumps(start))
    assert info is not None and info.extra["session"] == "tok-9" and ser.session_token == "tok-9"
    assert "start.sessionToken" in caplog.text
    # Marks are not sent at end of batch (support unconfirmed).
    await ser.serialize(out_audio(200))
    assert await ser.serialize(TTSStoppedFrame()) is None


def test_cloudonix_answer_document() -> None:
    assert CloudonixFrameSerializer.answer_document("wss://bot.example.com/cx/1") == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://bot.example.com/cx/1"/></Connect>'
        "<Hangup/></Response>"
    )


# ---------------------------------------------------------------- Telnyx


async def test_telnyx_pcma_both_ways_without_stream_id() -> None:
    start = json.loads(fixture("telnyx_start.json")[1])
    start["start"]["media_format"]["encoding"] = "PCMA"
    ser = TelnyxFrameSerializer()
    info = await ser.handshake(json.dumps(start))
    assert info is not None and info.codec == "PCMA"
    payload = base64.b64encode(pcm16_to_alaw(tone(1000, 0.1, 8000))).decode()
    frame = await ser.deserialize(
        json.dumps({"event": "media", "stream_id": "32DE0DEA", "media": {"payload": payload}})
    )
    assert isinstance(frame, InputAudioRawFrame)
    out = await ser.serialize(out_audio(200))
    assert isinstance(out, str) and out.startswith('{"event":"media","media":{"payload":"')
    assert json.loads(ser.mark("m1")) == {"event": "mark", "mark": {"name": "m1"}}


def test_telnyx_answer_texml_and_stream_token() -> None:
    assert TelnyxFrameSerializer.answer_document("wss://bot.example.com/tx/1", codec="PCMA") == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://bot.example.com/tx/1" '
        'bidirectionalMode="rtp" bidirectionalCodec="PCMA" bidirectionalSamplingRate="8000"/></Connect></Response>'
    )

    class Req:
        headers = {"x-telnyx-streaming-auth-token": "secret-1"}

    assert TelnyxFrameSerializer.verify_stream_token(Req(), "secret-1")  # type: ignore[arg-type]
    assert not TelnyxFrameSerializer.verify_stream_token(Req(), "secret-2")  # type: ignore[arg-type]


def test_telnyx_ed25519_signature() -> None:
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from flowcat.serializers._signatures import validate_telnyx_ed25519

    key = Ed25519PrivateKey.generate()
    pub = base64.b64encode(key.public_key().public_bytes_raw()).decode()
    body, ts = b'{"data":{"event_type":"call.initiated"}}', "1700000000"
    sig = base64.b64encode(key.sign(ts.encode() + b"|" + body)).decode()
    assert validate_telnyx_ed25519(body, sig, ts, pub, now=1700000010) is True
    assert validate_telnyx_ed25519(body + b" ", sig, ts, pub, now=1700000010) is False
    assert validate_telnyx_ed25519(body, sig, ts, pub, now=1700009999) is False


# ---------------------------------------------------------------- Plivo / Vobiz

PLIVO_XML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Stream bidirectional="true" keepCallAlive="true" '
    'contentType="audio/x-mulaw;rate=8000" extraHeaders="tenant=acme">wss://bot.example.com/pl/abc</Stream></Response>'
)


async def test_plivo_answer_webhook_verifies_v3_signature() -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        return await PlivoFrameSerializer.answer(
            request, "wss://bot.example.com/pl/abc", extra_headers={"tenant": "acme"}, auth_token="pl-secret"
        )

    runner, base = await serve(answer)
    try:
        form = {"CallUUID": "cu-1", "From": "+15550001", "To": "+15550002"}
        url = base + "/answer?b=2&a=1"
        sig = plivo_v3_signature("POST", url, form, "nonce-1", "pl-secret")
        headers = {"X-Plivo-Signature-V3": "other," + sig, "X-Plivo-Signature-V3-Nonce": "nonce-1"}
        async with ClientSession() as http:
            async with http.post(url, data=form, headers=headers) as resp:
                assert resp.status == 200 and await resp.text() == PLIVO_XML
            async with http.post(url, data={**form, "CallUUID": "cu-2"}, headers=headers) as resp:
                assert resp.status == 403
            bad_nonce = {**headers, "X-Plivo-Signature-V3-Nonce": "nonce-2"}
            async with http.post(url, data=form, headers=bad_nonce) as resp:
                assert resp.status == 403
    finally:
        await runner.cleanup()


def test_plivo_v3_string_to_sign() -> None:
    # GET folds the query into sorted k=v pairs; POST appends sorted name+value form params after a dot.
    get = plivo_v3_signature("GET", "https://a.example/x?b=2&a=1", None, "n", "tok")
    assert validate_plivo_v3("GET", "https://a.example/x?a=1&b=2", None, "n", get, "tok")
    post = plivo_v3_signature("POST", "https://a.example/x", {"B": "2", "A": "1"}, "n", "tok")
    assert not validate_plivo_v3("POST", "https://a.example/x", {"B": "2", "A": "9"}, "n", post, "tok")


async def test_plivo_checkpoints_clear_and_played_variants(caplog: pytest.LogCaptureFixture) -> None:
    ser = await ready(PlivoFrameSerializer(), "plivo_start.json")
    await ser.serialize(out_audio(200))
    assert (
        await ser.serialize(TTSStoppedFrame())
        == '{"event":"checkpoint","streamId":"stream-pl-1","name":"fc-1"}'
    )
    with caplog.at_level(logging.INFO, logger="flowcat.serializers"):
        await ser.deserialize('{"event":"played","streamId":"stream-pl-1","name":"fc-1"}')
    assert "'played'" in caplog.text and ser.marks.played_up_to > 0.1
    await ser.serialize(out_audio(200))
    ser.mark("cp-2")
    assert await ser.serialize(InterruptionFrame()) == '{"event":"clearAudio","streamId":"stream-pl-1"}'
    assert (
        await ser.deserialize('{"event":"clearedAudio","sequenceNumber":43,"streamId":"stream-pl-1"}') is None
    )
    assert ser.marks.outstanding == [] and ser.bad_inputs == 0


async def test_vobiz_played_stream_without_stream_id_and_stop() -> None:
    ser = await ready(VobizFrameSerializer(), "vobiz_start.json")
    await ser.serialize(out_audio(200))
    ser.mark("v1")
    await ser.deserialize('{"event":"playedStream","name":"v1"}')
    assert ser.marks.played_up_to > 0.1
    assert VobizFrameSerializer.answer_document("wss://x.example/vb") == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Stream bidirectional="true" keepCallAlive="true" '
        'contentType="audio/x-mulaw;rate=8000">wss://x.example/vb</Stream></Response>'
    )


# ---------------------------------------------------------------- Exotel


async def test_exotel_holds_back_to_100ms_multiples_of_320_and_flushes_before_mark() -> None:
    ser = await ready(ExotelFrameSerializer(), "exotel_start.json")
    sizes: list[int] = []
    for _ in range(3):  # 60 ms: below Exotel's 100 ms minimum, nothing goes out
        assert await ser.serialize(out_audio()) is None
    for _ in range(10):
        out = await ser.serialize(out_audio())
        if out is not None:
            sizes.append(len(base64.b64decode(json.loads(out)["media"]["payload"])))  # type: ignore[arg-type]
    assert sizes and all(s >= 1600 and s % 320 == 0 for s in sizes)
    tail = await ser.serialize(TTSStoppedFrame())
    assert isinstance(tail, list) and [json.loads(m)["event"] for m in tail] == ["media", "mark"]
    last = base64.b64decode(json.loads(tail[0])["media"]["payload"])
    assert len(last) == 1600  # padded with silence up to 100 ms
    assert json.loads(tail[1]) == {"event": "mark", "stream_sid": "MZex01", "mark": {"name": "fc-1"}}
    await ser.deserialize(
        '{"event":"mark","sequence_number":"15","stream_sid":"MZex01","mark":{"name":"fc-1"}}'
    )
    assert ser.marks.played_up_to == pytest.approx(ser.marks.sent_up_to)


async def test_exotel_16k_start_and_bad_rate() -> None:
    start = json.loads(fixture("exotel_start.json")[1])
    start["start"]["media_format"]["sample_rate"] = "16000"
    ser = ExotelFrameSerializer()
    assert (await ser.handshake(json.dumps(start))).sample_rate == 16000  # type: ignore[union-attr]
    start["start"]["media_format"]["sample_rate"] = "11025"
    ser2 = ExotelFrameSerializer()
    info = await ser2.handshake(json.dumps(start))
    assert info is not None and info.sample_rate == 8000 and ser2.bad_inputs == 1
