"""AWSNovaSonicLLMService: the realtime conformance suite against a local HTTP/2 fake of
Bedrock's ``InvokeModelWithBidirectionalStream`` (SigV4 and every event signature verified
there), and the wire: the event-stream envelope signing (a known-answer vector), the session
events, the history and tool-result contents, the end of a session.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import sys
from typing import Any

import pytest

from _fake_nova_sonic import AKID, FakeNovaSonic
from _helpers import conformance_params
from _realtime_run import FAST, WEATHER, RealtimeRun
from flowcat.errors import ConfigError, MissingExtraError, ServiceAuthError
from flowcat.frames import (
    InputAudioRawFrame,
    InterruptionFrame,
    LLMContext,
    LLMContextFrame,
    LLMUsageMetricsData,
    MetricsFrame,
    TTSTextFrame,
)
from flowcat.services import close_http_sessions
from flowcat.services._eventstream import EventStreamDecoder, EventStreamMessage, encode_message
from flowcat.services._sigv4 import EventSigner, event_string_to_sign, resolve_aws_credentials, signing_key
from flowcat.services.realtime import AWSNovaSonicLLMService, NovaSonicSettings
from flowcat.services.realtime._nova_wire import EXCEPTION_STATUS, decode_chunk, input_chunk
from flowcat.testing.conformance import Behaviour, ConformanceTarget, FakeProvider, Scenario, run_scenario
from flowcat.testing.conformance._realtime import realtime_inputs, realtime_output

pytestmark = pytest.mark.usefixtures("no_outside_connections")


def make_nova(fake: FakeProvider, **kw: Any) -> AWSNovaSonicLLMService:
    return AWSNovaSonicLLMService(
        aws_access_key=AKID,
        aws_secret_key=fake.api_key,
        aws_region="us-east-1",
        endpoint_url=fake.url,
        reconnect=FAST,
        connect_timeout_secs=3.0,
        **kw,
    )


CONFORMANCE = {
    "realtime:nova_sonic": ConformanceTarget("realtime", FakeNovaSonic, make_nova),
}


@pytest.mark.parametrize(("target", "scenario"), conformance_params(CONFORMANCE))
async def test_conformance(target: ConformanceTarget, scenario: Scenario) -> None:
    await run_scenario(target, scenario)


# ------------------------------------------------------------------ signing


def test_event_string_to_sign_matches_the_aws_sdk_vector() -> None:
    """The known-answer vector of aws-sigv4's ``event_stream.rs`` (AWS's Rust SDK): a message
    with one string header and ``test payload``, at 123456789 s, after ``sha256("last message sts")``."""
    message = encode_message({"some-header": "value"}, b"test payload")
    prior = hashlib.sha256(b"last message sts").hexdigest()
    when = dt.datetime.fromtimestamp(123_456_789, dt.UTC)
    assert event_string_to_sign(message, prior, when, "us-east-1", "testservice") == (
        "AWS4-HMAC-SHA256-PAYLOAD\n"
        "19731129T213309Z\n"
        "19731129/us-east-1/testservice/aws4_request\n"
        "be1f8c7d79ef8e1abc5254a2c70e4da3bfaf4f07328f527444e1fc6ea67273e2\n"
        "0c0e3b3bf66b59b976181bd7d401927bbd624107303c713fd1e5f3d3c8dd1b1e\n"
        "f2eba0f2e95967ee9fbc6db5e678d2fd599229c0d04b11e4fc8e0f2a02a806c6"
    )


def test_event_signer_envelopes_decode_and_chain() -> None:
    creds = resolve_aws_credentials(AKID, "secret-for-the-chain-0123456789")
    signer = EventSigner(creds, "us-east-1", "bedrock", "ab" * 32)
    inner = input_chunk(b'{"event":{"sessionEnd":{}}}')
    t0 = dt.datetime(2026, 12, 7, 12, 0, 0, 750_000, tzinfo=dt.UTC)  # sub-seconds are dropped
    raw = signer.sign(inner, t0) + signer.sign(b"", t0 + dt.timedelta(seconds=1))
    first, last = EventStreamDecoder().feed(raw)
    assert list(first.headers) == [":chunk-signature", ":date"]
    assert first.headers[":date"] == t0.replace(microsecond=0) and first.payload == inner
    key = signing_key(creds.secret_access_key, "20261207", "us-east-1", "bedrock")
    prior = "ab" * 32
    for message in (first, last):
        sts = event_string_to_sign(message.payload, prior, message.headers[":date"], "us-east-1", "bedrock")
        want = hmac.new(key, sts.encode(), hashlib.sha256).digest()
        assert message.headers[":chunk-signature"] == want
        prior = want.hex()
    assert last.payload == b"" and signer.prior == prior


def test_input_chunk_and_output_decoding() -> None:
    (chunk,) = EventStreamDecoder().feed(input_chunk(b'{"event":{"promptEnd":{"promptName":"p"}}}'))
    assert chunk.headers == {
        ":message-type": "event",
        ":event-type": "chunk",
        ":content-type": "application/json",
    }
    assert json.loads(base64.b64decode(json.loads(chunk.payload)["bytes"])) == {
        "event": {"promptEnd": {"promptName": "p"}}
    }
    assert decode_chunk(chunk) == ("event", b'{"event":{"promptEnd":{"promptName":"p"}}}')
    exc = EventStreamMessage(
        {":message-type": "exception", ":exception-type": "throttlingException"},
        b'{"message":"Too many requests"}',
    )
    assert decode_chunk(exc) == ("exception", ("throttlingException", "Too many requests"))
    assert (
        EXCEPTION_STATUS["throttlingException"] == 429
        and EXCEPTION_STATUS["modelStreamErrorException"] == 424
    )
    other = EventStreamMessage({":message-type": "event", ":event-type": "initial-response"}, b"{}")
    assert decode_chunk(other) == ("bad", b"{}")
    not_b64 = EventStreamMessage(dict(chunk.headers), b'{"bytes": "!!"}')
    assert decode_chunk(not_b64) == ("bad", b'{"bytes": "!!"}')


def test_the_missing_extra_is_named_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "h2.connection", None)  # import fails
    with pytest.raises(MissingExtraError, match=r"pip install 'flowcat\[aws\]'"):
        AWSNovaSonicLLMService(aws_access_key=AKID, aws_secret_key="s")


def test_endpoint_and_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-north-1")
    svc = AWSNovaSonicLLMService(aws_access_key=AKID, aws_secret_key="secret-for-the-chain-0123456789")
    assert svc.region == "eu-north-1" and svc.max_session_secs == 450 and svc.input_sample_rate == 16000
    assert svc.socket_url() == (
        "https://bedrock-runtime.eu-north-1.amazonaws.com/model/amazon.nova-2-sonic-v1%3A0/invoke-with-bidirectional-stream"
    )
    with pytest.raises(ConfigError, match="endpoint_url"):
        AWSNovaSonicLLMService(aws_access_key=AKID, aws_secret_key="s", endpoint_url="ws://127.0.0.1:1")


def test_local_turns_are_refused() -> None:
    with pytest.raises(ConfigError, match="server_vad"):
        AWSNovaSonicLLMService(
            aws_access_key=AKID, aws_secret_key="s", settings=NovaSonicSettings(server_vad=False)
        )


# ------------------------------------------------------------------ wire


async def _fake() -> FakeNovaSonic:
    fake = FakeNovaSonic()
    await fake.start()
    return fake


def _body(conn: Any, kind: str, n: int = 0) -> dict[str, Any]:
    return [e[kind] for e in conn.events if kind in e][n]


async def test_session_events_tools_and_audio_at_16k() -> None:
    fake = await _fake()
    try:
        svc = make_nova(
            fake, settings=NovaSonicSettings(instructions="Be brief.", voice="tiffany", max_tokens=512)
        )

        async def get_weather(params: Any) -> None:
            await params.result_callback({"temp": 21})

        svc.register_function("get_weather", get_weather)
        async with RealtimeRun(svc) as run:
            await run.task.queue_frame(LLMContextFrame(LLMContext(tools=[WEATHER])))
            await run.until(lambda: svc.sessions == 2, "a fresh session with the tools")
            await run.speak()
            await run.until(lambda: realtime_output(run.down.frames) == fake.expected_text, "the answer")
            conn = fake.connections[1]
            types = conn.types()
            assert types[:6] == [
                "sessionStart",
                "promptStart",
                "contentStart",
                "textInput",
                "contentEnd",
                "contentStart",
            ]
            assert set(types[6:]) == {"audioInput"}
            assert _body(conn, "sessionStart") == {
                "inferenceConfiguration": {"maxTokens": 512, "topP": 0.9, "temperature": 0.7}
            }
            prompt = _body(conn, "promptStart")
            assert prompt["audioOutputConfiguration"] == {
                "mediaType": "audio/lpcm",
                "sampleRateHertz": 24000,
                "sampleSizeBits": 16,
                "channelCount": 1,
                "voiceId": "tiffany",
                "encoding": "base64",
                "audioType": "SPEECH",
            }
            (tool,) = prompt["toolConfiguration"]["tools"]
            assert tool["toolSpec"]["name"] == "get_weather"
            assert json.loads(tool["toolSpec"]["inputSchema"]["json"]) == WEATHER["function"]["parameters"]
            system = _body(conn, "contentStart", 0)
            assert (system["type"], system["role"], system["interactive"]) == ("TEXT", "SYSTEM", False)
            assert _body(conn, "textInput")["content"] == "Be brief."
            audio = _body(conn, "contentStart", 1)
            assert (audio["type"], audio["role"], audio["interactive"]) == ("AUDIO", "USER", True)
            assert audio["audioInputConfiguration"]["sampleRateHertz"] == 16000
            assert fake.audio_bytes_in == len(realtime_inputs(16000)) * 320 * 2  # 16 kHz PCM16, unresampled
            assert fake.auth_failures == 0 and fake.protocol_errors == []
            assert conn.headers["content-type"] == "application/vnd.amazon.eventstream"
    finally:
        await fake.close()
        await close_http_sessions()


async def test_history_goes_into_a_fresh_session_before_the_audio_and_the_end_is_polite() -> None:
    fake = await _fake()
    try:
        svc = make_nova(fake)
        messages = [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Noted, Ada."},
        ]
        async with RealtimeRun(svc) as run:
            await run.until(lambda: svc.connected, "connected")
            await run.task.queue_frame(LLMContextFrame(LLMContext(messages)))
            await run.until(lambda: len(fake.connections) == 2, "the fresh session")
            await run.until(lambda: "contentStart" in fake.connections[1].types()[-1:], "the audio content")
            conn = fake.connections[1]
            starts = [e["contentStart"] for e in conn.events if "contentStart" in e]
            assert [(s["type"], s["role"]) for s in starts] == [
                ("TEXT", "SYSTEM"),
                ("TEXT", "USER"),
                ("TEXT", "ASSISTANT"),
                ("AUDIO", "USER"),
            ]
            assert [e["textInput"]["content"] for e in conn.events if "textInput" in e] == [
                "You are terse.",
                "My name is Ada.",
                "Noted, Ada.",
            ]
            assert fake.connections[0].input_ended  # the first session was ended, not dropped
            assert fake.connections[0].types()[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]
        assert conn.types()[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]
        assert _body(conn, "contentEnd", -1)["contentName"] == starts[-1]["contentName"]
        assert conn.input_ended and fake.auth_failures == 0 and fake.protocol_errors == []
        assert not run.errors()
    finally:
        await fake.close()


async def test_a_wrong_secret_is_refused_and_not_retried() -> None:
    fake = await _fake()
    try:
        svc = AWSNovaSonicLLMService(
            aws_access_key=AKID,
            aws_secret_key="not-the-secret-0123456789",
            endpoint_url=fake.url,
            reconnect=FAST,
            connect_timeout_secs=3.0,
        )
        async with RealtimeRun(svc) as run:
            await run.until(lambda: bool(run.errors()), "the error")
            (err,) = run.errors()
            assert isinstance(err.exception, ServiceAuthError), err
            assert "InvalidSignatureException" in err.error and "signature" in err.error, err.error
            assert fake.auth_failures == 1 and len(fake.peers) == 1 and not fake.connections
            assert not svc.connected
    finally:
        await fake.close()


async def test_a_corrupt_frame_drops_the_stream_and_the_service_reconnects() -> None:
    fake = await _fake()
    try:
        svc = make_nova(fake)
        async with RealtimeRun(svc) as run:
            await run.until(lambda: svc.connected and fake.peers, "connected")
            good = encode_message({":message-type": "event", ":event-type": "chunk"}, b'{"bytes":"e30="}')
            await fake.peers[0].send(good[:-1] + bytes([good[-1] ^ 0xFF]))  # a bad message CRC
            await run.until(
                lambda: bool(run.errors()) and len(fake.connections) == 2, "the report and the reconnection"
            )
            assert "CRC" in run.errors()[0].error, run.errors()[0].error
            await run.speak()
            await run.until(lambda: realtime_output(run.down.frames) == fake.expected_text, "the answer")
    finally:
        await fake.close()


async def test_usage_is_reported_by_modality_and_stream_errors_carry_the_status() -> None:
    fake = await _fake()
    try:
        svc = make_nova(fake)
        async with RealtimeRun(svc) as run:
            await run.speak()
            await run.until(lambda: realtime_output(run.down.frames) == fake.expected_text, "the answer")

            def usage() -> list[Any]:
                return [d.value for f in run.down.frames if isinstance(f, MetricsFrame) for d in f.data
                        if isinstance(d, LLMUsageMetricsData)]  # fmt: skip

            await run.until(lambda: bool(usage()), "the usage metric (with the end of the turn)")
            u = usage()[-1]
            assert (
                u.input_audio_tokens,
                u.input_text_tokens,
                u.output_audio_tokens,
                u.output_text_tokens,
            ) == (60, 40, 50, 10)
            assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (100, 60, 160)
            fake.set(Behaviour.STREAM_ERROR, failures=1)
            await run.speak()
            await run.until(lambda: bool(run.errors()), "the error")
            assert "code 424: modelStreamErrorException: The server had an error" in run.errors()[0].error
            await run.until(lambda: svc.sessions == 2, "the reconnection")
            await run.until(lambda: "contentStart" in fake.connections[1].types()[-1:], "the session events")
            texts = fake.replayed_texts(fake.connections[1])
            assert texts[:2] == [fake.user_text, fake.expected_text], texts
    finally:
        await fake.close()


async def test_a_renewal_while_the_caller_speaks_keeps_each_session_s_names() -> None:
    """Audio keeps flowing while a fresh session opens: every audioInput names the promptName
    and audio contentName of the session it is sent on (the fake checks each event)."""
    fake = await _fake()
    try:
        svc = make_nova(fake)
        quiet = InputAudioRawFrame(b"\x00\x00" * 320, 16000)
        async with RealtimeRun(svc) as run:
            await run.until(lambda: svc.connected, "connected")
            for _ in range(3):
                for _ in range(100):
                    await run.task.queue_frame(quiet)
                await svc.renew_session()
            await run.until(lambda: svc.sessions == 4, "three renewals")
            await run.speak()
            await run.until(lambda: realtime_output(run.down.frames) == fake.expected_text, "the answer")
        assert fake.protocol_errors == []
        assert all(c.input_ended for c in fake.connections)
    finally:
        await fake.close()


async def test_a_barge_in_keeps_what_was_spoken_and_the_next_session_gets_it() -> None:
    """Nova's truncation: the server cuts its own turn; the FINAL text of the cut turn (what was
    actually spoken) is what the conversation keeps and what a fresh session is given."""
    fake = await _fake()
    fake.spoken_before_cut = "hello there"
    fake.set(Behaviour.SLOW, failures=1)
    try:
        svc = make_nova(fake)
        async with RealtimeRun(svc) as run:
            await run.speak()
            await run.until(lambda: fake.aborted.is_set(), "the barge-in")
            await run.until(
                lambda: any(isinstance(f, InterruptionFrame) for f in run.down.frames), "the interruption"
            )
            await run.until(lambda: len(svc.conversation.items) == 2, "the cut turn in the conversation")
            assert [(i.role, i.text) for i in svc.conversation.items] == [
                ("user", fake.user_text),
                ("assistant", "hello there"),
            ]
            assert not [f for f in run.down.frames if isinstance(f, TTSTextFrame) and "interrupted" in f.text]
            await svc.renew_session()
            await run.until(lambda: svc.sessions == 2, "the fresh session")
            await run.until(lambda: len(fake.replayed_texts(fake.connections[1])) == 2, "the replay")
            assert fake.replayed_texts(fake.connections[1]) == [fake.user_text, "hello there"]
    finally:
        await fake.close()


async def test_the_fake_checks_the_chain_of_envelope_signatures() -> None:
    """A broken chain (an envelope signed after the wrong prior signature) is caught."""
    fake = await _fake()
    try:
        svc = make_nova(fake)
        async with RealtimeRun(svc) as run:
            await run.until(lambda: svc.connected and fake.connections, "connected")
            await run.until(lambda: "contentStart" in fake.connections[0].types(), "the session events")
            assert fake.auth_failures == 0
            svc._ws.signer.prior = "00" * 32  # type: ignore[union-attr]
            await run.speak()
            await run.until(lambda: fake.auth_failures > 0, "the bad signature")
            assert "bad chunk signature" in fake.protocol_errors
    finally:
        await fake.close()
