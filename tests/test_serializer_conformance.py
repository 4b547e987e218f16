"""Shared conformance suite: every carrier serializer against the same behaviours.

Each carrier is described by a :class:`Spec` (how its handshake, media, DTMF and
control messages look on the wire); the tests below run on every spec: handshake
parsing, caller audio decoded to the right tone and level, bot audio encoded to the
carrier's exact message shape and the right tone, DTMF, clear on interruption, the
REST hang-up received by a local fake API, and malformed input skipped and logged.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from flowcat.audio import alaw_to_pcm16, pcm16_to_alaw, pcm16_to_ulaw, tone, ulaw_to_pcm16
from flowcat.frames import (
    EndFrame,
    InputAudioRawFrame,
    InputDTMFFrame,
    InterruptionFrame,
    KeypadEntry,
    OutputAudioRawFrame,
    StartFrame,
)
from flowcat.serializers import (
    AsteriskFrameSerializer,
    CloudonixFrameSerializer,
    ExotelFrameSerializer,
    FrameSerializer,
    GenesysFrameSerializer,
    PlivoFrameSerializer,
    TelnyxFrameSerializer,
    TwilioFrameSerializer,
    VobizFrameSerializer,
    VonageFrameSerializer,
)

FIXTURES = Path(__file__).parent / "fixtures" / "carriers"

ENCODE = {"PCMU": pcm16_to_ulaw, "PCMA": pcm16_to_alaw, "L16": lambda b: b}
DECODE = {"PCMU": ulaw_to_pcm16, "PCMA": alaw_to_pcm16, "L16": lambda b: b}


def fixture(name: str) -> list[str]:
    return [json.dumps(m) for m in json.loads((FIXTURES / name).read_text())]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def peak_hz(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def level_dbfs(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    return float(20 * np.log10(np.sqrt(np.mean(x * x)) + 1e-12))


def messages(out: Any) -> list[str | bytes]:
    if out is None:
        return []
    return list(out) if isinstance(out, list) else [out]


@dataclass
class Spec:
    name: str
    make: Callable[[str], FrameSerializer]
    handshake: list[str]
    info: dict[str, Any]
    codec: str
    rate: int
    media_in: Callable[[bytes], str | bytes]
    media_out: Callable[[str | bytes], bytes | None]  # payload of an outgoing media message, shape asserted
    dtmf: Callable[[str], str] | None
    clear: str | None
    hang_up: dict[str, Any] | None = None
    end_message: Any = None
    env: dict[str, str] = field(default_factory=dict)
    bad: list[str | bytes] = field(default_factory=list)
    replies: int = 0  # replies the handshake produces


def _json_media_out(template: dict[str, Any], path: tuple[str, ...]) -> Callable[[str | bytes], bytes | None]:
    def unwrap(msg: str | bytes) -> bytes | None:
        assert isinstance(msg, str)
        obj = json.loads(msg)
        if obj.get("event") not in ("media", "playAudio"):
            return None
        node = obj
        for key in path[:-1]:
            node = node[key]
        payload = node[path[-1]]
        node[path[-1]] = "<payload>"
        assert obj == template
        return base64.b64decode(payload)

    return unwrap


def _binary_out(msg: str | bytes) -> bytes | None:
    return msg if isinstance(msg, bytes) else None


GENERIC_BAD: list[str | bytes] = ["{not json", "[1,2]", '{"event":"nonsense"}', "null"]

SPECS = [
    Spec(
        name="twilio",
        make=lambda base: TwilioFrameSerializer(api_base=base),
        handshake=fixture("twilio_start.json"),
        info={
            "stream_id": "MZ0001",
            "call_id": "CA0001",
            "codec": "PCMU",
            "custom_parameters": {"tenant": "acme"},
        },
        codec="PCMU",
        rate=8000,
        media_in=lambda p: json.dumps(
            {
                "event": "media",
                "streamSid": "MZ0001",
                "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": b64(p)},
            }
        ),
        media_out=_json_media_out(
            {"event": "media", "streamSid": "MZ0001", "media": {"payload": "<payload>"}}, ("media", "payload")
        ),
        dtmf=lambda d: json.dumps(
            {"event": "dtmf", "streamSid": "MZ0001", "dtmf": {"track": "inbound_track", "digit": d}}
        ),
        clear='{"event":"clear","streamSid":"MZ0001"}',
        hang_up={
            "method": "POST",
            "path": "/2010-04-01/Accounts/AC0001/Calls/CA0001.json",
            "auth": "Basic " + base64.b64encode(b"AC0001:tw-token").decode(),
            "body": "Status=completed",
        },
        env={"TWILIO_ACCOUNT_SID": "AC0001", "TWILIO_AUTH_TOKEN": "tw-token"},
        bad=[
            b'{"event":"media"}',
            '{"event":"media","media":{"payload":"@@not base64@@"}}',
            '{"event":"media","media":{}}',
        ],
    ),
    Spec(
        name="cloudonix",
        make=lambda base: CloudonixFrameSerializer(api_base=base),
        handshake=fixture("cloudonix_start.json"),
        info={"stream_id": "MZcx01", "call_id": "CAcx01", "codec": "PCMU"},
        codec="PCMU",
        rate=8000,
        media_in=lambda p: json.dumps(
            {"event": "media", "streamSid": "MZcx01", "media": {"payload": b64(p)}}
        ),
        media_out=_json_media_out(
            {"event": "media", "streamSid": "MZcx01", "media": {"payload": "<payload>"}}, ("media", "payload")
        ),
        dtmf=lambda d: json.dumps({"event": "dtmf", "streamSid": "MZcx01", "dtmf": {"digit": d}}),
        clear='{"event":"clear","streamSid":"MZcx01"}',
        hang_up={
            "method": "DELETE",
            "path": "/customers/self/domains/example.cx/sessions/sess-123",
            "auth": "Bearer cx-key",
            "body": "",
        },
        env={"CLOUDONIX_API_KEY": "cx-key", "CLOUDONIX_DOMAIN": "example.cx"},
        bad=[b"\x00\x01", '{"event":"media","media":{"payload":"%%%"}}'],
    ),
    Spec(
        name="telnyx",
        make=lambda base: TelnyxFrameSerializer(api_base=base),
        handshake=fixture("telnyx_start.json"),
        info={
            "stream_id": "32DE0DEA",
            "call_id": "v2:T02lcc",
            "codec": "PCMU",
            "from_number": "+13122010094",
        },
        codec="PCMU",
        rate=8000,
        media_in=lambda p: json.dumps(
            {"event": "media", "stream_id": "32DE0DEA", "media": {"track": "inbound", "payload": b64(p)}}
        ),
        media_out=_json_media_out(
            {"event": "media", "media": {"payload": "<payload>"}}, ("media", "payload")
        ),
        dtmf=lambda d: json.dumps({"event": "dtmf", "stream_id": "32DE0DEA", "dtmf": {"digit": d}}),
        clear='{"event":"clear"}',
        hang_up={
            "method": "POST",
            "path": "/v2/calls/v2:T02lcc/actions/hangup",
            "auth": "Bearer tx-key",
            "body": "{}",
        },
        env={"TELNYX_API_KEY": "tx-key"},
        bad=[b"\xff\xfe", '{"event":"media","media":{"payload":"a"}}'],
    ),
    Spec(
        name="plivo",
        make=lambda base: PlivoFrameSerializer(api_base=base),
        handshake=fixture("plivo_start.json"),
        info={
            "stream_id": "stream-pl-1",
            "call_id": "call-pl-1",
            "codec": "L16",
            "custom_parameters": {"userId": "12345", "sessionId": "abc"},
        },
        codec="L16",
        rate=8000,
        media_in=lambda p: json.dumps(
            {
                "event": "media",
                "sequenceNumber": 3,
                "streamId": "stream-pl-1",
                "media": {"track": "inbound", "payload": b64(p)},
            }
        ),
        media_out=_json_media_out(
            {
                "event": "playAudio",
                "streamId": "stream-pl-1",
                "media": {"contentType": "audio/x-l16", "sampleRate": 8000, "payload": "<payload>"},
            },
            ("media", "payload"),
        ),
        dtmf=lambda d: json.dumps({"event": "dtmf", "streamId": "stream-pl-1", "dtmf": {"digit": d}}),
        clear='{"event":"clearAudio","streamId":"stream-pl-1"}',
        hang_up={
            "method": "DELETE",
            "path": "/v1/Account/MA0001/Call/call-pl-1/",
            "auth": "Basic " + base64.b64encode(b"MA0001:pl-token").decode(),
            "body": "",
        },
        env={"PLIVO_AUTH_ID": "MA0001", "PLIVO_AUTH_TOKEN": "pl-token"},
        bad=[
            b"{}",
            json.dumps({"event": "media", "media": {"payload": b64(b"\x01\x02\x03")}}),
        ],  # odd L16 length
    ),
    Spec(
        name="vobiz",
        make=lambda base: VobizFrameSerializer(api_base=base),
        handshake=fixture("vobiz_start.json"),
        info={"stream_id": "stream-vb-1", "call_id": "call-vb-1", "codec": "PCMU", "account_id": "12345"},
        codec="PCMU",
        rate=8000,
        media_in=lambda p: json.dumps(
            {
                "event": "media",
                "streamId": "stream-vb-1",
                "media": {"track": "inbound", "chunk": 1, "payload": b64(p)},
            }
        ),
        media_out=_json_media_out(
            {
                "event": "playAudio",
                "streamId": "stream-vb-1",
                "media": {"contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": "<payload>"},
            },
            ("media", "payload"),
        ),
        dtmf=lambda d: json.dumps({"event": "dtmf", "streamId": "stream-vb-1", "digit": d}),
        clear='{"event":"clearAudio","streamId":"stream-vb-1"}',
        hang_up={
            "method": "DELETE",
            "path": "/v1/Account/VB01/Call/call-vb-1/",
            "auth": None,
            "body": "",
            "headers": {"X-Auth-ID": "VB01", "X-Auth-Token": "vb-token"},
        },
        end_message='{"event":"stop","streamId":"stream-vb-1"}',
        env={"VOBIZ_AUTH_ID": "VB01", "VOBIZ_AUTH_TOKEN": "vb-token"},
        bad=['{"event":"playedStream"}'],
    ),
    Spec(
        name="exotel",
        make=lambda base: ExotelFrameSerializer(api_base=base),
        handshake=fixture("exotel_start.json"),
        info={
            "stream_id": "MZex01",
            "call_id": "CAex01",
            "codec": "L16",
            "sample_rate": 8000,
            "custom_parameters": {"key1": "value1"},
        },
        codec="L16",
        rate=8000,
        media_in=lambda p: json.dumps(
            {
                "event": "media",
                "sequence_number": "3",
                "stream_sid": "MZex01",
                "media": {"chunk": "2", "timestamp": "200", "payload": b64(p)},
            }
        ),
        media_out=_json_media_out(
            {"event": "media", "stream_sid": "MZex01", "media": {"payload": "<payload>"}},
            ("media", "payload"),
        ),
        dtmf=lambda d: json.dumps(
            {
                "event": "dtmf",
                "sequence_number": "7",
                "stream_sid": "MZex01",
                "dtmf": {"digit": d, "duration": "100"},
            }
        ),
        clear='{"event":"clear","stream_sid":"MZex01"}',
        bad=['{"event":"dtmf","dtmf":{"digit":"X"}}', '{"event":"mark","mark":{}}'],
    ),
    Spec(
        name="vonage",
        make=lambda base: VonageFrameSerializer(api_base=base),
        handshake=fixture("vonage_connected.json"),
        info={
            "call_id": "vg-uuid-1",
            "codec": "L16",
            "sample_rate": 16000,
            "custom_parameters": {"call_uuid": "vg-uuid-1", "tenant": "acme"},
        },
        codec="L16",
        rate=16000,
        media_in=lambda p: p,
        media_out=_binary_out,
        dtmf=lambda d: json.dumps({"event": "websocket:dtmf", "digit": d, "duration": 260}),
        clear='{"action":"clear"}',
        hang_up={
            "method": "PUT",
            "path": "/v1/calls/vg-uuid-1",
            "auth": "Bearer vg.jwt.token",
            "body": '{"action": "hangup"}',
        },
        env={"VONAGE_JWT": "vg.jwt.token"},
        bad=[b"\x01\x02\x03", b"", '{"event":"websocket:notify"}'],
    ),
    Spec(
        name="genesys",
        make=lambda base: GenesysFrameSerializer(api_base=base),
        handshake=fixture("genesys_open.json"),
        info={
            "stream_id": "30b0e395-0001",
            "call_id": "conv-1",
            "codec": "PCMU",
            "custom_parameters": {"tenant": "acme"},
            "from_number": "+13175550000",
        },
        codec="PCMU",
        rate=8000,
        media_in=lambda p: p,
        media_out=_binary_out,
        dtmf=lambda d: json.dumps(
            {
                "version": "2",
                "type": "dtmf",
                "seq": 7,
                "serverseq": 1,
                "id": "30b0e395-0001",
                "position": "PT4.2S",
                "parameters": {"digit": d},
            }
        ),
        clear='{"version":"2","type":"event","seq":2,"clientseq":1,"id":"30b0e395-0001","parameters":{"entities":[{"type":"barge_in","data":{}}]}}',
        end_message='{"version":"2","type":"disconnect","seq":2,"clientseq":1,"id":"30b0e395-0001","parameters":{"reason":"completed"}}',
        bad=[b"", '{"version":"2","seq":3}', '{"version":"2","type":"mystery","seq":3}'],
        replies=1,
    ),
    Spec(
        name="asterisk",
        make=lambda base: AsteriskFrameSerializer(api_base=base),
        handshake=fixture("asterisk_media_start.json"),
        info={
            "stream_id": "e226e283-0001",
            "call_id": "pbx1-123.999",
            "codec": "PCMU",
            "custom_parameters": {"TENANT": "acme"},
        },
        codec="PCMU",
        rate=8000,
        media_in=lambda p: p,
        media_out=_binary_out,
        dtmf=lambda d: json.dumps({"event": "DTMF_END", "channel_id": "pbx1-123.999", "digit": d}),
        clear='{"command":"FLUSH_MEDIA"}',
        end_message='{"command":"HANGUP"}',
        bad=[b"", "lowercase garbage", '{"command":"NOPE"}'],
    ),
]

IDS = [s.name for s in SPECS]


@pytest.fixture(params=SPECS, ids=IDS)
def spec(request: pytest.FixtureRequest) -> Spec:
    return request.param  # type: ignore[no-any-return]


async def started(spec: Spec, base: str = "http://127.0.0.1:9") -> FrameSerializer:
    ser = spec.make(base)
    await ser.setup(StartFrame(audio_in_sample_rate=16000, audio_out_sample_rate=24000))
    info = None
    for msg in spec.handshake:
        info = await ser.handshake(msg)
    assert info is not None
    return ser


async def test_handshake_parses_call_info(spec: Spec) -> None:
    ser = spec.make("http://127.0.0.1:9")
    infos = [await ser.handshake(m) for m in spec.handshake]
    assert all(i is None for i in infos[:-1])
    info = infos[-1]
    assert info is not None and info.carrier == spec.name
    for key, value in spec.info.items():
        assert getattr(info, key) == value, key
    assert ser.call_info is info
    assert len(ser.take_replies()) == spec.replies
    assert ser.bad_inputs == 0


async def test_media_in_decodes_tone(spec: Spec) -> None:
    ser = await started(spec)
    pcm = tone(1000, 0.6, spec.rate, amplitude=0.5)
    wire = ENCODE[spec.codec](pcm)
    step = spec.rate // 50 * (2 if spec.codec == "L16" else 1)  # 20 ms packets
    frames = [await ser.deserialize(spec.media_in(wire[i : i + step])) for i in range(0, len(wire), step)]
    got = [f for f in frames if f is not None]
    assert got and all(
        isinstance(f, InputAudioRawFrame) and f.sample_rate == 16000 and f.num_channels == 1 for f in got
    )
    audio = b"".join(f.audio for f in got if isinstance(f, InputAudioRawFrame))
    assert len(audio) >= 0.5 * 16000 * 2
    body = audio[3200:]  # skip the resampler's start-up transient
    assert abs(peak_hz(body, 16000) - 1000) < 10
    assert abs(level_dbfs(body) - level_dbfs(pcm)) < 1.0
    assert ser.bad_inputs == 0


async def test_media_out_encodes_tone_in_carrier_shape(spec: Spec) -> None:
    ser = await started(spec)
    pcm = tone(1000, 0.6, 24000, amplitude=0.5)
    outs: list[str | bytes] = []
    for i in range(0, len(pcm), 960):
        outs += messages(await ser.serialize(OutputAudioRawFrame(audio=pcm[i : i + 960], sample_rate=24000)))
    payloads = [p for p in (spec.media_out(m) for m in outs) if p is not None]
    assert payloads and len(payloads) == len(outs)
    if spec.name == "vonage":
        assert {len(p) for p in payloads} == {640}
    if spec.name == "asterisk":
        assert all(len(p) % 160 == 0 for p in payloads)
    if spec.name == "exotel":
        assert all(len(p) >= 1600 and len(p) % 320 == 0 for p in payloads)
    audio = DECODE[spec.codec](b"".join(payloads))
    assert len(audio) >= 0.4 * spec.rate * 2
    body = audio[spec.rate // 10 :]
    assert abs(peak_hz(body, spec.rate) - 1000) < 15
    assert abs(level_dbfs(body) - level_dbfs(pcm)) < 1.0


async def test_dtmf_in(spec: Spec) -> None:
    ser = await started(spec)
    assert spec.dtmf is not None
    for digit, key in (("5", KeypadEntry.FIVE), ("#", KeypadEntry.POUND), ("*", KeypadEntry.STAR)):
        frame = await ser.deserialize(spec.dtmf(digit))
        assert isinstance(frame, InputDTMFFrame) and frame.button is key


async def test_interruption_sends_clear(spec: Spec) -> None:
    ser = await started(spec)
    out = await ser.serialize(InterruptionFrame())
    assert out == spec.clear


async def test_malformed_input_is_skipped_and_logged(spec: Spec, caplog: pytest.LogCaptureFixture) -> None:
    ser = await started(spec)
    caplog.set_level(logging.WARNING, logger="flowcat.serializers")
    bad = ([] if spec.name in ("vonage", "genesys", "asterisk") else GENERIC_BAD) + spec.bad
    if spec.name in ("vonage", "genesys", "asterisk"):
        bad += ["{not json"]
    for n, msg in enumerate(bad, 1):
        caplog.clear()
        assert await ser.deserialize(msg) is None
        assert ser.bad_inputs == n, msg
        assert len(caplog.records) == 1 and spec.name in caplog.records[0].getMessage()
    # The call goes on: a valid media message and a DTMF still decode.
    payload = ENCODE[spec.codec](tone(1000, 0.2, spec.rate))
    frames = [await ser.deserialize(spec.media_in(payload)) for _ in range(3)]
    assert any(isinstance(f, InputAudioRawFrame) for f in frames)
    assert spec.dtmf is not None and isinstance(await ser.deserialize(spec.dtmf("1")), InputDTMFFrame)


class FakeAPI:
    """A carrier REST API on 127.0.0.1 that records every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 204
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "body": (await request.read()).decode(),
            }
        )
        return web.Response(status=self.status, text="{}")

    async def __aenter__(self) -> FakeAPI:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def fake_api() -> Any:
    async with FakeAPI() as api:
        yield api


async def test_end_frame_hangs_up(spec: Spec, fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in spec.env.items():
        monkeypatch.setenv(key, value)
    ser = await started(spec, fake_api.url)
    out = await ser.serialize(EndFrame())
    assert out == spec.end_message
    if spec.hang_up is None:
        assert fake_api.requests == []
        return
    assert len(fake_api.requests) == 1
    req = fake_api.requests[0]
    assert (req["method"], req["path"]) == (spec.hang_up["method"], spec.hang_up["path"])
    if spec.hang_up["auth"] is not None:
        assert req["headers"]["Authorization"] == spec.hang_up["auth"]
    for key, value in spec.hang_up.get("headers", {}).items():
        assert req["headers"][key] == value
    assert req["body"] == spec.hang_up["body"]
    # Only once, even if a CancelFrame follows.
    assert not await ser.hang_up()
    assert len(fake_api.requests) == 1


async def test_no_hang_up_after_remote_end_or_without_credentials(spec: Spec, fake_api: FakeAPI) -> None:
    ser = await started(spec, fake_api.url)  # no credentials in the environment
    await ser.serialize(EndFrame())
    assert fake_api.requests == []


async def test_fast_path_agrees_with_the_async_interface(spec: Spec) -> None:
    """The FastSerializer sub-contract: ``serialize_audio`` and ``deserialize_now`` give
    what ``serialize`` and ``deserialize`` give (two serializers fed the same messages)."""
    from flowcat.serializers import FastSerializer

    async def at_carrier_rate() -> FrameSerializer:
        # (At the carrier's own rate: soxr's output is not bit-exact from run to run.)
        ser = spec.make("http://127.0.0.1:9")
        await ser.setup(StartFrame(audio_in_sample_rate=spec.rate, audio_out_sample_rate=spec.rate))
        for msg in spec.handshake:
            await ser.handshake(msg)
        assert ser.call_info is not None
        return ser

    fast, slow = await at_carrier_rate(), await at_carrier_rate()
    assert isinstance(fast, FastSerializer)
    pcm = tone(700, 0.2, spec.rate, amplitude=0.4)
    step = spec.rate // 50 * 2
    for i in range(0, len(pcm), step):
        frame = OutputAudioRawFrame(audio=pcm[i : i + step], sample_rate=spec.rate)
        assert fast.serialize_audio(frame) == await slow.serialize(frame)
    wire = ENCODE[spec.codec](tone(700, 0.1, spec.rate, amplitude=0.4))
    n = 320 if spec.codec == "L16" else 160
    for msg in [spec.media_in(wire[:n]), spec.media_in(wire[n : 2 * n]), *GENERIC_BAD]:
        now = fast.deserialize_now(msg)
        if now is not None and not isinstance(now, InputAudioRawFrame | InputDTMFFrame):
            now = await now  # type: ignore[misc]  # a message answered first (Genesys)
        later = await slow.deserialize(msg)
        assert type(now) is type(later)
        if isinstance(now, InputAudioRawFrame):
            assert isinstance(later, InputAudioRawFrame)
            assert (now.audio, now.sample_rate, now.num_channels) == (
                later.audio,
                later.sample_rate,
                later.num_channels,
            )
    # Carrier formats are not passthrough: the transports must call the serializer.
    assert fast.passthrough_rate is None and fast.passthrough_input is None
