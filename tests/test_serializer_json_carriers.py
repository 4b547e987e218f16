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

import numpy as np
import pytest
from aiohttp import ClientSession, web

from _helpers import require
from flowcat.audio import pcm16_to_alaw, read_wav, tone
from flowcat.frames import (
    InputAudioRawFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    StartFrame,
    TTSStoppedFrame,
)
from flowcat.serializers import (
    CloudonixCarrier,
    CloudonixFrameSerializer,
    ExotelFrameSerializer,
    PlivoCarrier,
    PlivoFrameSerializer,
    TelnyxCarrier,
    TelnyxFrameSerializer,
    TwilioCarrier,
    TwilioFrameSerializer,
    VobizCarrier,
    VobizFrameSerializer,
)
from flowcat.serializers._l16_byte_order import judge_l16_byte_order
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
        return await TwilioCarrier.answer(
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
    assert ser.remote_ended and ser.rest is not None
    assert ser.rest.hang_up_request(ser.call_id, ser.call_info) is not None


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
    assert CloudonixCarrier.answer_document("wss://bot.example.com/cx/1") == (
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
    assert TelnyxCarrier.answer_document("wss://bot.example.com/tx/1", codec="PCMA") == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://bot.example.com/tx/1" '
        'bidirectionalMode="rtp" bidirectionalCodec="PCMA" bidirectionalSamplingRate="8000"/></Connect></Response>'
    )

    class Req:
        headers = {"x-telnyx-streaming-auth-token": "secret-1"}

    assert TelnyxCarrier.verify_stream_token(Req(), "secret-1")  # type: ignore[arg-type]
    assert not TelnyxCarrier.verify_stream_token(Req(), "secret-2")  # type: ignore[arg-type]


def test_telnyx_ed25519_signature() -> None:
    require("cryptography")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from flowcat.serializers._signatures import validate_telnyx_ed25519

    key = Ed25519PrivateKey.generate()
    pub = base64.b64encode(key.public_key().public_bytes_raw()).decode()
    body, ts = b'{"data":{"event_type":"call.initiated"}}', "1700000000"
    sig = base64.b64encode(key.sign(ts.encode() + b"|" + body)).decode()
    assert validate_telnyx_ed25519(body, sig, ts, pub, now=1700000010) is True
    assert validate_telnyx_ed25519(body + b" ", sig, ts, pub, now=1700000010) is False
    assert validate_telnyx_ed25519(body, sig, ts, pub, now=1700009999) is False


# Telnyx L16. Its docs call the payload an RTP payload (big-endian L16 by RFC 3551)
# but never state the byte order, so both orders must decode to the same audio.

TONE_8K = tone(440, 0.2, 8000)  # little-endian, like all pipeline PCM
L16_START = (
    '{"event":"start","sequence_number":"1","stream_id":"32DE0DEA","start":{"user_id":"3E6F",'
    '"call_control_id":"v2:T02lcc","call_session_id":"ff55","from":"+13122010094","to":"+13122123456",'
    '"client_state":"aGF2","custom_parameters":{"customer_id":"c_123"},'
    '"media_format":{"encoding":"L16","sample_rate":RATE,"channels":1}}}'
)


def swap16(pcm: bytes) -> bytes:
    """The other byte order (numpy, independent of the serializer's own swap)."""
    return np.frombuffer(pcm, dtype="<i2").astype(">i2").tobytes()


def telnyx_media(payload: bytes | str) -> str:
    text = payload if isinstance(payload, str) else base64.b64encode(payload).decode()
    media = {"track": "inbound", "chunk": "2", "timestamp": "5", "payload": text}
    return json.dumps({"event": "media", "sequence_number": "4", "stream_id": "32DE0DEA", "media": media})


async def telnyx_l16(
    rate: int = 8000, pipeline_rate: int | None = None, **kwargs: Any
) -> TelnyxFrameSerializer:
    ser = TelnyxFrameSerializer(**kwargs)
    await ser.setup(StartFrame(audio_in_sample_rate=pipeline_rate or rate))
    info = await ser.handshake(L16_START.replace("RATE", str(rate)))
    assert info is not None and info.codec == "L16" and info.sample_rate == rate
    return ser


async def feed(ser: TelnyxFrameSerializer, wire: bytes, chunk: int = 320) -> bytes:
    """Send ``wire`` as media messages of ``chunk`` bytes; the decoded PCM."""
    pcm = b""
    for i in range(0, len(wire), chunk):
        frame = await ser.deserialize(telnyx_media(wire[i : i + chunk]))
        if frame is not None:
            assert isinstance(frame, InputAudioRawFrame)
            pcm += frame.audio
    return pcm


async def bot_payload(ser: TelnyxFrameSerializer) -> bytes:
    """200 ms of a 1 kHz bot tone at 24 kHz, as the payload of the one media message sent."""
    out = await ser.serialize(out_audio(200))
    assert (
        isinstance(out, str)
        and out.startswith('{"event":"media","media":{"payload":"')
        and out.endswith('"}}')
    )
    return base64.b64decode(json.loads(out)["media"]["payload"])


def peak_hz(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.argmax(np.abs(np.fft.rfft(x * np.hanning(len(x))))) * rate / len(x))


def verdicts(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "byte order detected" in r.getMessage()]


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("order", ["big", "little"])
async def test_telnyx_l16_either_byte_order_decodes_to_the_same_audio(
    order: str, rate: int, caplog: pytest.LogCaptureFixture
) -> None:
    pcm = tone(440, 0.2, rate)
    wire = swap16(pcm) if order == "big" else pcm
    ser = await telnyx_l16(rate)
    with caplog.at_level(logging.INFO, logger="flowcat.serializers"):
        decoded = await feed(ser, wire, chunk=rate // 25)  # 20 ms per message
    assert decoded == pcm  # pipeline rate = carrier rate: no resampling, exact samples
    (verdict,) = verdicts(caplog)  # decided once, with the scores
    assert f"{order}-endian" in verdict and "roughness big" in verdict and "32DE0DEA" in verdict
    assert "L16 stream: encoding 'L16', sample_rate" in caplog.text
    assert ser.bad_inputs == 0


async def test_telnyx_l16_is_resampled_to_the_pipeline_rate() -> None:
    ser = await telnyx_l16(8000, pipeline_rate=16000)
    decoded = await feed(ser, swap16(TONE_8K))
    assert len(decoded) > 0.8 * 2 * len(TONE_8K)
    assert peak_hz(decoded, 16000) == pytest.approx(440, abs=10)
    x = np.frombuffer(decoded, dtype="<i2").astype(np.float64) / 32768
    assert 20 * np.log10(np.sqrt(np.mean(x * x))) == pytest.approx(-9.0, abs=1.0)  # 0.5 peak sine


@pytest.mark.parametrize("order", ["big", "little"])
async def test_telnyx_l16_bot_audio_goes_out_in_the_detected_order(order: str) -> None:
    ser = await telnyx_l16()
    reference = await telnyx_l16(l16_byte_order=order)
    await feed(ser, swap16(TONE_8K) if order == "big" else TONE_8K)
    payload = await bot_payload(ser)
    assert payload == await bot_payload(reference)
    as_pcm = swap16(payload) if order == "big" else payload
    assert peak_hz(as_pcm, 8000) == pytest.approx(1000, abs=20)
    # Read the other way round it is not the tone.
    assert peak_hz(swap16(as_pcm), 8000) != pytest.approx(1000, abs=20)


async def test_telnyx_l16_bot_audio_is_big_endian_until_decided() -> None:
    ser = await telnyx_l16()
    payload = await bot_payload(ser)
    assert payload == await bot_payload(await telnyx_l16(l16_byte_order="big"))
    assert peak_hz(swap16(payload), 8000) == pytest.approx(1000, abs=20)


async def test_telnyx_l16_explicit_order_overrides_detection(caplog: pytest.LogCaptureFixture) -> None:
    ser = await telnyx_l16(l16_byte_order="little")
    with caplog.at_level(logging.INFO, logger="flowcat.serializers"):
        decoded = await feed(ser, swap16(TONE_8K))
    assert decoded == swap16(TONE_8K)  # taken as configured, not swapped
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "l16_byte_order='little' is configured but the caller audio looks big-endian" in warnings[0]
    assert not verdicts(caplog)
    payload = await bot_payload(ser)
    assert peak_hz(payload, 8000) == pytest.approx(1000, abs=20)  # little-endian as configured

    caplog.clear()
    ser = await telnyx_l16(l16_byte_order="big")
    with caplog.at_level(logging.INFO, logger="flowcat.serializers"):
        assert await feed(ser, swap16(TONE_8K)) == TONE_8K
    assert "caller audio confirms l16_byte_order='big'" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_telnyx_l16_silence_does_not_decide(caplog: pytest.LogCaptureFixture) -> None:
    ser = await telnyx_l16()
    undecided = [
        bytes(320),  # digital silence
        b"\xff" * 320,  # -1 reads as -1 either way
        b"\x01\x01" * 160,  # 257 reads as 257 either way
        TONE_8K[:40],  # 20 samples of tone: too few to judge
    ]
    with caplog.at_level(logging.INFO, logger="flowcat.serializers"):
        for payload in undecided:
            assert await feed(ser, swap16(payload)) == payload  # big-endian meanwhile
        assert not verdicts(caplog)
        assert await bot_payload(ser) == await bot_payload(await telnyx_l16(l16_byte_order="big"))
        # Then audio with signal, little-endian: decided, from this message on.
        assert await feed(ser, TONE_8K) == TONE_8K
    assert len(verdicts(caplog)) == 1 and "little-endian" in verdicts(caplog)[0]


async def test_telnyx_l16_malformed_payloads_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    ser = await telnyx_l16()
    with caplog.at_level(logging.WARNING, logger="flowcat.serializers"):
        assert await ser.deserialize(telnyx_media(TONE_8K[:321])) is None
        assert await ser.deserialize(telnyx_media("not base64!")) is None
    assert ser.bad_inputs == 2
    assert "L16 payload with an odd byte count (321)" in caplog.text
    assert "media payload that is not base64" in caplog.text
    # The call goes on; the odd payload was not judged (this little-endian one decides).
    assert not ser.remote_ended
    assert await feed(ser, TONE_8K) == TONE_8K
    assert ser.bad_inputs == 2


@pytest.mark.parametrize(
    ("sample_rate", "expected", "bad"),
    [(16000, 16000, 0), ("16000", 16000, 0), (24000, 24000, 0), ("fast", 8000, 1), (None, 8000, 0)],
)
async def test_telnyx_l16_rate_from_start(sample_rate: object, expected: int, bad: int) -> None:
    start = json.loads(L16_START.replace("RATE", "8000"))
    start["start"]["media_format"]["sample_rate"] = sample_rate
    ser = TelnyxFrameSerializer()
    info = await ser.handshake(json.dumps(start))
    assert info is not None and info.codec == "L16" and info.sample_rate == expected and ser.bad_inputs == bad


async def test_telnyx_l16_outbound_rate() -> None:
    # Bot audio follows the inbound L16 rate by default...
    ser = await telnyx_l16(16000, l16_byte_order="little")
    assert peak_hz(await bot_payload(ser), 16000) == pytest.approx(1000, abs=20)
    # ...or stream_bidirectional_sampling_rate when given.
    ser = await telnyx_l16(8000, l16_byte_order="little", outbound_sample_rate=24000)
    assert peak_hz(await bot_payload(ser), 24000) == pytest.approx(1000, abs=20)
    # L16 bot audio on a PCMU call: 8000 Hz (Telnyx's default), big-endian (RTP) as nothing was detected.
    ser = TelnyxFrameSerializer(outbound_codec="L16")
    assert await ser.handshake(fixture("telnyx_start.json")[1]) is not None
    assert peak_hz(swap16(await bot_payload(ser)), 8000) == pytest.approx(1000, abs=20)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"outbound_codec": "G722"},
        {"outbound_codec": "PCMU", "outbound_sample_rate": 16000},
        {"outbound_sample_rate": 11025},
        {"l16_byte_order": "native"},
    ],
)
def test_telnyx_rejects_formats_it_cannot_send(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="not"):
        TelnyxFrameSerializer(**kwargs)


def test_telnyx_answer_and_call_control_fields_ask_for_l16() -> None:
    assert TelnyxCarrier.answer_document(
        "wss://bot.example.com/tx/1", codec="L16", sample_rate=16000
    ) == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://bot.example.com/tx/1" '
        'codec="L16" bidirectionalMode="rtp" bidirectionalCodec="L16" bidirectionalSamplingRate="16000"/>'
        "</Connect></Response>"
    )
    assert TelnyxCarrier.answer_document("wss://bot.example.com/tx/1") == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://bot.example.com/tx/1" '
        'bidirectionalMode="rtp" bidirectionalCodec="PCMU" bidirectionalSamplingRate="8000"/></Connect></Response>'
    )
    assert TelnyxCarrier.stream_fields("wss://bot.example.com/tx/1") == {
        "stream_url": "wss://bot.example.com/tx/1",
        "stream_track": "inbound_track",
        "stream_codec": "PCMU",
        "stream_bidirectional_mode": "rtp",
        "stream_bidirectional_codec": "PCMU",
        "stream_bidirectional_sampling_rate": 8000,
    }
    assert TelnyxCarrier.stream_fields(
        "wss://bot.example.com/tx/1", codec="L16", sample_rate=16000, auth_token="secret-1"
    ) == {
        "stream_url": "wss://bot.example.com/tx/1",
        "stream_track": "inbound_track",
        "stream_codec": "L16",
        "stream_bidirectional_mode": "rtp",
        "stream_bidirectional_codec": "L16",
        "stream_bidirectional_sampling_rate": 16000,
        "stream_auth_token": "secret-1",
    }
    with pytest.raises(ValueError, match="'G722'"):
        TelnyxCarrier.stream_fields("wss://x", codec="G722")
    with pytest.raises(ValueError, match="11025"):
        TelnyxCarrier.answer_document("wss://x", codec="L16", sample_rate=11025)
    with pytest.raises(ValueError, match="8000 Hz only"):
        TelnyxCarrier.stream_fields("wss://x", codec="PCMA", sample_rate=16000)


def _speech_chunks() -> list[bytes]:
    pcm, rate, _ = read_wav(Path(__file__).parent / "fixtures" / "speech" / "two_utterances_8k.wav")
    assert rate == 8000
    chunks = [pcm[i : i + 320] for i in range(0, len(pcm) - 320, 320)]
    return [c for c in chunks if np.abs(np.frombuffer(c, dtype="<i2")).max() > 300][:40]


_RNG = np.random.default_rng(7)
JUDGED = {
    "440 Hz half scale": tone(440, 0.02, 8000),
    "1 kHz at 16 kHz, -26 dBFS": tone(1000, 0.02, 16000, amplitude=0.05),
    "2 kHz loud": tone(2000, 0.02, 8000, amplitude=0.3),
    "near silence ±200": _RNG.integers(-200, 201, 160).astype("<i2").tobytes(),
    "dither ±1": _RNG.integers(-1, 2, 160).astype("<i2").tobytes(),
    "line noise ±3000": _RNG.integers(-3000, 3001, 160).astype("<i2").tobytes(),
}


@pytest.mark.parametrize("name", list(JUDGED))
def test_judge_l16_byte_order_on_tones_and_noise(name: str) -> None:
    pcm = JUDGED[name]
    assert judge_l16_byte_order(pcm)[0] == "little"
    assert judge_l16_byte_order(swap16(pcm))[0] == "big"


def test_judge_l16_byte_order_on_speech() -> None:
    chunks = _speech_chunks()
    assert len(chunks) == 40
    assert [judge_l16_byte_order(c)[0] for c in chunks] == ["little"] * 40
    assert [judge_l16_byte_order(swap16(c))[0] for c in chunks] == ["big"] * 40


def test_judge_l16_byte_order_withholds_a_verdict() -> None:
    assert judge_l16_byte_order(bytes(320)) == (None, ())
    assert judge_l16_byte_order(tone(440, 0.002, 8000)) == (None, ())  # 16 samples
    # A loud tone near Nyquist is rough the right way round but quiet only that way:
    # the tests disagree, so no verdict rather than a wrong one.
    loud = tone(3500, 0.02, 8000, amplitude=0.9)
    assert judge_l16_byte_order(loud)[0] is None and judge_l16_byte_order(swap16(loud))[0] is None


# ---------------------------------------------------------------- Plivo / Vobiz

PLIVO_XML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Stream bidirectional="true" keepCallAlive="true" '
    'contentType="audio/x-mulaw;rate=8000" extraHeaders="tenant=acme">wss://bot.example.com/pl/abc</Stream></Response>'
)


async def test_plivo_answer_webhook_verifies_v3_signature() -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        return await PlivoCarrier.answer(
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
    assert VobizCarrier.answer_document("wss://x.example/vb") == (
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


@pytest.mark.parametrize("make", [lambda: TwilioFrameSerializer(), lambda: PlivoFrameSerializer()])
async def test_unknown_event_and_start_without_object_are_reported_and_survived(
    make: Callable[[], Any], caplog: pytest.LogCaptureFixture
) -> None:
    ser = make()
    with caplog.at_level(logging.WARNING, logger="flowcat.serializers"):
        assert ser._deserialize('{"event":"bogus"}') is None
        assert ser._deserialize('{"event":"start","start":"nope"}') is None
    assert ser.bad_inputs == 2 and ser.call_info is None
    assert "unknown event 'bogus'" in caplog.text and "start without a start object" in caplog.text
