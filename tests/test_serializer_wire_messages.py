"""Typed carrier control messages: documented payloads parse, malformed ones are refused
with ProtocolError, and a serializer that meets one logs it and keeps the call going."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from flowcat.errors import ProtocolError
from flowcat.frames import InputAudioRawFrame, InputDTMFFrame
from flowcat.serializers import (
    ExotelFrameSerializer,
    GenesysFrameSerializer,
    PlivoFrameSerializer,
    TelnyxFrameSerializer,
    TwilioFrameSerializer,
    VobizFrameSerializer,
    VonageFrameSerializer,
)
from flowcat.serializers._exotel_messages import ExotelStart
from flowcat.serializers._genesys_messages import (
    GenesysClose,
    GenesysDtmf,
    GenesysError,
    GenesysMedia,
    GenesysOpen,
    GenesysParticipant,
)
from flowcat.serializers._plivo_messages import (
    PlivoClearedAudio,
    PlivoDtmf,
    PlivoMediaFormat,
    PlivoPlayedStream,
    PlivoStart,
)
from flowcat.serializers._telnyx_messages import TelnyxError, TelnyxStart
from flowcat.serializers._twilio_messages import (
    TwilioClear,
    TwilioConnected,
    TwilioDtmf,
    TwilioMark,
    TwilioMarkOut,
    TwilioMediaFormat,
    TwilioStart,
    TwilioStop,
)
from flowcat.serializers._vonage_messages import VonageConnected, VonageDtmf, VonageNotify, VonageNotifyOut

# Example payloads of /work/shared/research/carrier-protocols.md (ids shortened).
TW_START = (
    '{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"accountSid":"AC1","streamSid":"MZ1",'
    '"callSid":"CA1","tracks":["inbound"],"customParameters":{"tenant":"acme"},'
    '"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}'
)
TX_START = (
    '{"event":"start","sequence_number":"1","stream_id":"32DE","start":{"user_id":"3E6F","call_control_id":'
    '"v2:T02l","call_session_id":"ff55","from":"+13122010094","to":"+13122123456","tags":["TAG1"],'
    '"client_state":"aGF2","custom_parameters":{"customer_id":"c_123"},'
    '"media_format":{"encoding":"PCMU","sample_rate":8000,"channels":1}}}'
)
EX_START = (
    '{"event":"start","sequence_number":"1","stream_sid":"MZ9","start":{"stream_sid":"MZ9","call_sid":"CA9",'
    '"account_sid":"AC9","from":"+9198","to":"+9180","custom_parameters":{"key1":"value1"},'
    '"media_format":{"encoding":"audio/x-raw","sample_rate":"8000","bit_rate":"16"}}}'
)


def test_twilio_documented_messages_parse() -> None:
    assert TwilioConnected.from_json(
        json.loads('{"event":"connected","protocol":"Call","version":"1.0.0"}')
    ) == TwilioConnected("Call", "1.0.0")
    assert TwilioStart.from_json(json.loads(TW_START)) == TwilioStart(
        stream_sid="MZ1",
        call_sid="CA1",
        account_sid="AC1",
        tracks=("inbound",),
        custom_parameters={"tenant": "acme"},
        media_format=TwilioMediaFormat("audio/x-mulaw", 8000, 1),
    )
    dtmf = (
        '{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}'
    )
    assert TwilioDtmf.from_json(json.loads(dtmf)) == TwilioDtmf("1", "inbound_track")
    mark = '{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"utt-7"}}'
    assert TwilioMark.from_json(json.loads(mark)) == TwilioMark("utt-7")
    stop = (
        '{"event":"stop","sequenceNumber":"5","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}'
    )
    assert TwilioStop.from_json(json.loads(stop)) == TwilioStop("AC1", "CA1")


def test_twilio_outbound_round_trip() -> None:
    out = TwilioMarkOut("utt-7", "MZ1").to_json()
    assert out == '{"event":"mark","streamSid":"MZ1","mark":{"name":"utt-7"}}'
    assert TwilioMark.from_json(json.loads(out)).name == "utt-7"
    assert TwilioClear("MZ1").to_json() == '{"event":"clear","streamSid":"MZ1"}'
    # Telnyx: no stream id on outbound messages.
    assert TwilioMarkOut("a", None, None).to_json() == '{"event":"mark","mark":{"name":"a"}}'
    assert TwilioClear(None, None).to_json() == '{"event":"clear"}'


def test_start_message_is_frozen_and_slotted() -> None:
    start = TwilioStart.from_json(json.loads(TW_START))
    with pytest.raises(AttributeError):
        start.call_sid = "x"  # type: ignore[misc]
    assert not hasattr(start, "__dict__")


def test_telnyx_and_exotel_documented_starts_parse() -> None:
    tx = TelnyxStart.from_json(json.loads(TX_START))
    assert (tx.stream_id, tx.call_control_id, tx.call_session_id, tx.user_id) == (
        "32DE",
        "v2:T02l",
        "ff55",
        "3E6F",
    )
    assert (tx.from_number, tx.to_number, tx.tags, tx.client_state) == (
        "+13122010094",
        "+13122123456",
        ("TAG1",),
        "aGF2",
    )
    assert tx.custom_parameters == {"customer_id": "c_123"}
    assert (tx.media_format.encoding, tx.media_format.sample_rate, tx.media_format.channels) == (
        "PCMU",
        8000,
        1,
    )
    assert TelnyxError.from_json({"event": "error", "payload": {"code": 1}}).payload == {"code": 1}
    ex = ExotelStart.from_json(json.loads(EX_START))
    assert (ex.stream_sid, ex.call_sid, ex.account_sid, ex.from_number, ex.to_number) == (
        "MZ9",
        "CA9",
        "AC9",
        "+9198",
        "+9180",
    )
    assert ex.custom_parameters == {"key1": "value1"}
    assert (ex.media_format.encoding, ex.media_format.sample_rate) == ("audio/x-raw", "8000")


def _bad(base: str | dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    msg = json.loads(base if isinstance(base, str) else json.dumps(base))
    node = msg
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return msg


@pytest.mark.parametrize(
    ("cls", "msg", "reason"),
    [
        (TwilioStart, _bad(TW_START, ("start",), "nope"), "start without a start object"),
        (TwilioStart, _bad(TW_START, ("start",), KeyError), "start without a start object"),
        (TwilioStart, _bad(TW_START, ("start", "callSid"), 5), "callSid is not a string"),
        (TwilioStart, _bad(TW_START, ("streamSid",), ["MZ"]), "streamSid is not a string"),
        (TwilioStart, _bad(TW_START, ("start", "tracks"), "inbound"), "tracks is not a list of strings"),
        (
            TwilioStart,
            _bad(TW_START, ("start", "customParameters"), "a=b"),
            "customParameters is not an object",
        ),
        (TwilioStart, _bad(TW_START, ("start", "mediaFormat"), 8000), "mediaFormat is not an object"),
        (
            TwilioStart,
            _bad(TW_START, ("start", "mediaFormat", "sampleRate"), "fast"),
            "sampleRate is not an int",
        ),
        (TwilioStart, _bad(TW_START, ("start", "mediaFormat", "channels"), True), "channels is not an int"),
        (TwilioStart, [1, 2], "start that is not a JSON object"),
        (TwilioMark, {"event": "mark", "mark": {}}, "mark without a name"),
        (TwilioMark, {"event": "mark", "mark": {"name": 7}}, "mark without a name"),
        (TwilioDtmf, {"event": "dtmf"}, "dtmf without a valid digit"),
        (TwilioDtmf, {"event": "dtmf", "dtmf": {"digit": 1}}, "dtmf without a valid digit"),
        (TwilioStop, {"event": "stop", "stop": "x"}, "stop is not an object"),
        (TwilioConnected, {"event": "connected", "version": 1}, "version is not a string"),
        (TelnyxStart, _bad(TX_START, ("start", "call_control_id"), 1), "call_control_id is not a string"),
        (TelnyxStart, _bad(TX_START, ("start", "media_format"), []), "media_format is not an object"),
        (TelnyxStart, _bad(TX_START, ("start",), None), "start without a start object"),
        (ExotelStart, _bad(EX_START, ("start", "call_sid"), {}), "call_sid is not a string"),
        (
            ExotelStart,
            _bad(EX_START, ("start", "custom_parameters"), "k=v"),
            "custom_parameters is not an object",
        ),
    ],
)
def test_malformed_messages_raise_protocol_error(cls: Any, msg: Any, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason) as info:
        cls.from_json(msg)
    assert info.value.raw is not None  # the offending message travels with the error


def test_decimal_string_sample_rate_is_read() -> None:
    msg = _bad(TW_START, ("start", "mediaFormat", "sampleRate"), "16000")
    assert TwilioStart.from_json(msg).media_format.sample_rate == 16000


async def test_twilio_malformed_start_is_reported_then_a_good_one_starts_the_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ser = TwilioFrameSerializer()
    with caplog.at_level(logging.WARNING, logger="flowcat.serializers"):
        assert await ser.handshake(json.dumps(_bad(TW_START, ("start", "callSid"), 5))) is None
        assert (
            await ser.handshake(json.dumps(_bad(TW_START, ("start", "mediaFormat", "sampleRate"), "x")))
            is None
        )
    assert ser.bad_inputs == 2 and ser.call_info is None
    assert "start whose callSid is not a string" in caplog.text
    assert "mediaFormat whose sampleRate is not an integer" in caplog.text
    info = await ser.handshake(TW_START)
    assert info is not None and info.call_id == "CA1" and info.stream_id == "MZ1"
    assert info.custom_parameters == {"tenant": "acme"} and info.extra["tracks"] == ["inbound"]


async def test_malformed_control_messages_mid_call_are_survived(caplog: pytest.LogCaptureFixture) -> None:
    ser = TwilioFrameSerializer()
    assert await ser.handshake(TW_START) is not None
    with caplog.at_level(logging.WARNING, logger="flowcat.serializers"):
        assert await ser.deserialize('{"event":"mark","mark":{"name":7}}') is None
        assert await ser.deserialize('{"event":"dtmf","dtmf":{"digit":1}}') is None
        assert await ser.deserialize('{"event":"connected","version":1}') is None
        assert await ser.deserialize(TW_START.replace('"tracks":["inbound"]', '"tracks":"x"')) is None
    assert ser.bad_inputs == 4
    assert "mark without a name" in caplog.text and "dtmf without a valid digit" in caplog.text
    # The call goes on: same call, audio and DTMF still flow, the stream has not ended.
    assert ser.call_info is not None and ser.call_info.call_id == "CA1" and not ser.remote_ended
    audio = await ser.deserialize('{"event":"media","streamSid":"MZ1","media":{"payload":"/////w=="}}')
    assert isinstance(audio, InputAudioRawFrame)
    dtmf = await ser.deserialize('{"event":"dtmf","dtmf":{"track":"inbound_track","digit":"#"}}')
    assert isinstance(dtmf, InputDTMFFrame) and dtmf.button.value == "#"


async def test_stop_ends_the_stream_even_when_malformed() -> None:
    ser = TwilioFrameSerializer()
    assert await ser.handshake(TW_START) is not None
    assert await ser.deserialize('{"event":"stop","stop":"gone"}') is None
    assert ser.remote_ended and ser.bad_inputs == 1


async def test_telnyx_and_exotel_malformed_start_survived() -> None:
    tx = TelnyxFrameSerializer()
    assert await tx.handshake(json.dumps(_bad(TX_START, ("start", "call_control_id"), 1))) is None
    assert tx.bad_inputs == 1 and tx.call_info is None
    info = await tx.handshake(TX_START)
    assert info is not None and info.call_id == "v2:T02l" and info.extra["client_state"] == "aGF2"
    ex = ExotelFrameSerializer()
    assert await ex.handshake(json.dumps(_bad(EX_START, ("start", "from"), 919800))) is None
    assert ex.bad_inputs == 1 and ex.call_info is None
    info = await ex.handshake(EX_START)
    assert info is not None and info.call_id == "CA9" and info.from_number == "+9198"


PL_START = (
    '{"event":"start","sequenceNumber":1,"start":{"callId":"1234","streamId":"8765","accountId":"MA1",'
    '"tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000}},'
    '"extra_headers":"userId=12345;sessionId=abc-xyz"}'
)


def test_plivo_documented_messages_parse() -> None:
    start = PlivoStart.from_json(json.loads(PL_START))
    assert start == PlivoStart(
        stream_id="8765",
        call_id="1234",
        account_id="MA1",
        tracks=("inbound",),
        media_format=PlivoMediaFormat("audio/x-mulaw", 8000),
        extra_headers={"userId": "12345", "sessionId": "abc-xyz"},
    )
    # Vobiz: numeric accountId, extra_headers "{}".
    vobiz = _bad(_bad(PL_START, ("start", "accountId"), 42), ("extra_headers",), "{}")
    assert PlivoStart.from_json(vobiz).account_id == "42" and PlivoStart.from_json(vobiz).extra_headers == {}
    played = PlivoPlayedStream.from_json(
        json.loads('{"event":"playedStream","streamId":"8765","name":"utt-7"}')
    )
    assert played == PlivoPlayedStream("utt-7", "playedStream", "8765")
    cleared = '{"event":"clearedAudio","sequenceNumber":43,"streamId":"8765"}'
    assert PlivoClearedAudio.from_json(json.loads(cleared)) == PlivoClearedAudio("8765")
    assert PlivoDtmf.from_json({"event": "dtmf", "dtmf": {"digit": "5"}}) == PlivoDtmf("5", "dtmf.digit")
    assert PlivoDtmf.from_json({"event": "dtmf", "digit": 7}) == PlivoDtmf("7", "top-level digit")
    assert PlivoDtmf.from_json({"event": "dtmf", "dtmf": "#"}) == PlivoDtmf("#", "string dtmf")


@pytest.mark.parametrize(
    ("cls", "msg", "reason"),
    [
        (PlivoStart, _bad(PL_START, ("start",), []), "start without a start object"),
        (PlivoStart, _bad(PL_START, ("start", "callId"), 1234), "callId is not a string"),
        (PlivoStart, _bad(PL_START, ("start", "accountId"), {}), "accountId is not a string or number"),
        (
            PlivoStart,
            _bad(PL_START, ("start", "mediaFormat", "sampleRate"), "x"),
            "sampleRate is not an integer",
        ),
        (PlivoDtmf, {"event": "dtmf"}, "dtmf without a valid digit"),
        (PlivoDtmf, {"event": "dtmf", "dtmf": {"digit": None}}, "dtmf without a valid digit"),
        (PlivoPlayedStream, {"event": "playedStream"}, "checkpoint acknowledgement without a name"),
        (PlivoClearedAudio, {"event": "clearedAudio", "streamId": 1}, "streamId is not a string"),
    ],
)
def test_plivo_malformed_messages_raise_protocol_error(cls: Any, msg: Any, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        cls.from_json(msg)


@pytest.mark.parametrize("make", [PlivoFrameSerializer, VobizFrameSerializer])
async def test_plivo_malformed_start_and_checkpoint_are_survived(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ser = make()
    with caplog.at_level(logging.WARNING, logger="flowcat.serializers"):
        assert await ser.handshake(json.dumps(_bad(PL_START, ("start", "callId"), 1234))) is None
        assert ser.call_info is None
        info = await ser.handshake(PL_START)
        assert info is not None and info.call_id == "1234" and info.custom_parameters["userId"] == "12345"
        assert await ser.deserialize('{"event":"playedStream","name":5}') is None
        assert await ser.deserialize('{"event":"dtmf","dtmf":{"digit":null}}') is None
    assert ser.bad_inputs == 3 and not ser.remote_ended
    assert "start whose callId is not a string" in caplog.text
    assert "checkpoint acknowledgement without a name" in caplog.text
    dtmf = await ser.deserialize('{"event":"dtmf","digit":"9"}')
    assert isinstance(dtmf, InputDTMFFrame) and dtmf.button.value == "9"


VG_CONNECTED = '{"event":"websocket:connected","content-type":"audio/l16;rate=16000","call_ref":"8f3c"}'


def test_vonage_documented_messages_parse_and_round_trip() -> None:
    hello = VonageConnected.from_json(json.loads(VG_CONNECTED))
    assert hello == VonageConnected("audio/l16;rate=16000", {"call_ref": "8f3c"}, None)
    with_uuid = VonageConnected.from_json({"event": "websocket:connected", "uuid": "u-1"})
    assert with_uuid.call_uuid == "u-1" and with_uuid.content_type is None
    dtmf = VonageDtmf.from_json(json.loads('{"event":"websocket:dtmf","digit":"5","duration":260}'))
    assert dtmf == VonageDtmf("5", 260)
    out = VonageNotifyOut("utt-7").to_json()
    assert out == '{"action":"notify","payload":{"name":"utt-7"}}'
    echoed = {"event": "websocket:notify", "payload": json.loads(out)["payload"]}
    assert VonageNotify.from_json(echoed) == VonageNotify("utt-7", {"name": "utt-7"})


@pytest.mark.parametrize(
    ("cls", "msg", "reason"),
    [
        (
            VonageConnected,
            {"event": "websocket:connected", "content-type": 16000},
            "content-type is not a string",
        ),
        (VonageConnected, {"event": "websocket:connected", "call_uuid": ["x"]}, "call_uuid is not a string"),
        (VonageDtmf, {"event": "websocket:dtmf"}, "dtmf without a valid digit"),
        (
            VonageDtmf,
            {"event": "websocket:dtmf", "digit": "5", "duration": "long"},
            "duration is not an integer",
        ),
        (VonageNotify, {"event": "websocket:notify", "payload": "utt-7"}, "payload is not an object"),
        (VonageNotify, {"event": "websocket:notify", "payload": {}}, "notify without payload.name"),
    ],
)
def test_vonage_malformed_messages_raise_protocol_error(cls: Any, msg: Any, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        cls.from_json(msg)


async def test_vonage_malformed_messages_are_survived(caplog: pytest.LogCaptureFixture) -> None:
    ser = VonageFrameSerializer()
    with caplog.at_level(logging.WARNING, logger="flowcat.serializers"):
        bad_hello = (
            '{"event":"websocket:connected","content-type":"audio/l16;rate=16000","call_uuid":{"x":1}}'
        )
        assert await ser.handshake(bad_hello) is None
        assert ser.call_info is None
        info = await ser.handshake(VG_CONNECTED.replace('"call_ref"', '"call_uuid":"vg-1","call_ref"'))
        assert info is not None and info.call_id == "vg-1" and info.sample_rate == 16000
        assert info.custom_parameters == {"call_uuid": "vg-1", "call_ref": "8f3c"}
        assert await ser.deserialize('{"event":"websocket:notify","payload":"x"}') is None
        assert await ser.deserialize('{"event":"websocket:dtmf","digit":"5","duration":"long"}') is None
    assert ser.bad_inputs == 3
    assert "websocket:connected whose call_uuid is not a string" in caplog.text
    assert "websocket:notify whose payload is not an object" in caplog.text
    dtmf = await ser.deserialize('{"event":"websocket:dtmf","digit":"5","duration":260}')
    assert isinstance(dtmf, InputDTMFFrame) and dtmf.button.value == "5"
    assert isinstance(await ser.deserialize(b"\x00\x01" * 320), InputAudioRawFrame)


GN_OPEN = (
    '{"version":"2","type":"open","seq":1,"serverseq":0,"id":"30b0e395","position":"PT0S","parameters":'
    '{"organizationId":"d793","conversationId":"090e","participant":{"id":"883e","ani":"+13175550000",'
    '"aniName":"John Doe","dnis":"+18005550000"},"media":[{"type":"audio","format":"PCMU",'
    '"channels":["external"],"rate":8000}],"language":"en-US","inputVariables":{"tenant":"acme"}}}'
)


def test_genesys_documented_messages_parse() -> None:
    open_ = GenesysOpen.from_json(json.loads(GN_OPEN))
    assert open_ == GenesysOpen(
        session_id="30b0e395",
        conversation_id="090e",
        organization_id="d793",
        participant=GenesysParticipant("883e", "+13175550000", "John Doe", "+18005550000"),
        media=(GenesysMedia("PCMU", "audio", ("external",), 8000),),
        language="en-US",
        input_variables={"tenant": "acme"},
    )
    assert open_.media[0].to_json() == {
        "type": "audio",
        "format": "PCMU",
        "channels": ["external"],
        "rate": 8000,
    }
    assert open_.participant.to_json() == json.loads(GN_OPEN)["parameters"]["participant"]
    dtmf = '{"version":"2","type":"dtmf","seq":7,"serverseq":3,"id":"30b0e395","position":"PT4.2S","parameters":{"digit":"5"}}'
    assert GenesysDtmf.from_json(json.loads(dtmf)) == GenesysDtmf("5")
    error = {"type": "error", "parameters": {"code": 429, "message": "slow down", "retryAfter": "PT2S"}}
    assert GenesysError.from_json(error) == GenesysError(429, "slow down", "PT2S")
    assert GenesysClose.from_json({"type": "close", "parameters": {"reason": "end"}}) == GenesysClose("end")
    # Malformed offers are left out; the well-formed one stays.
    offers = _bad(GN_OPEN, ("parameters", "media"), ["x", {"rate": 8000}, {"format": "L16", "rate": "fast"}])
    assert GenesysOpen.from_json(offers).media == ()


@pytest.mark.parametrize(
    ("cls", "msg", "reason"),
    [
        (GenesysOpen, _bad(GN_OPEN, ("parameters", "participant"), "John"), "participant is not an object"),
        (GenesysOpen, _bad(GN_OPEN, ("parameters", "organizationId"), 7), "organizationId is not a string"),
        (GenesysOpen, _bad(GN_OPEN, ("parameters", "media"), {"format": "PCMU"}), "media is not a list"),
        (GenesysOpen, _bad(GN_OPEN, ("parameters",), "x"), "parameters is not an object"),
        (GenesysOpen, _bad(GN_OPEN, ("id",), 30), "id is not a string"),
        (GenesysDtmf, {"type": "dtmf", "parameters": {}}, "dtmf without a valid digit"),
        (GenesysClose, {"type": "close", "parameters": {"reason": 1}}, "reason is not a string"),
    ],
)
def test_genesys_malformed_messages_raise_protocol_error(cls: Any, msg: Any, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        cls.from_json(msg)


async def test_genesys_malformed_open_is_reported_and_a_good_one_opens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(json.loads(message))

    ser = GenesysFrameSerializer()
    ser.sender = send
    with caplog.at_level(logging.WARNING, logger="flowcat.serializers"):
        bad = json.dumps(_bad(GN_OPEN, ("parameters", "organizationId"), 7))
        assert await ser.handshake(bad) is None
        assert ser.call_info is None and sent == []  # no "opened" for a malformed open
        info = await ser.handshake(GN_OPEN)
        assert info is not None and info.call_id == "090e" and info.from_number == "+13175550000"
        assert info.custom_parameters == {"tenant": "acme"} and info.extra["language"] == "en-US"
        assert [m["type"] for m in sent] == ["opened"]
        assert sent[0]["parameters"]["media"] == [
            {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}
        ]
        assert await ser.deserialize('{"version":"2","type":"dtmf","seq":2,"parameters":{"digit":5}}') is None
    assert ser.bad_inputs == 2 and not ser.remote_ended
    assert "open whose organizationId is not a string" in caplog.text
    frame = await ser.deserialize('{"version":"2","type":"dtmf","seq":3,"parameters":{"digit":"5"}}')
    assert isinstance(frame, InputDTMFFrame) and frame.button.value == "5"


async def test_plivo_cleared_audio_with_a_bad_stream_id_is_reported() -> None:
    ser = PlivoFrameSerializer()
    assert await ser.handshake(PL_START) is not None
    assert await ser.deserialize('{"event":"clearedAudio","sequenceNumber":43,"streamId":"8765"}') is None
    assert ser.bad_inputs == 0
    assert await ser.deserialize('{"event":"clearedAudio","streamId":8765}') is None
    assert ser.bad_inputs == 1 and not ser.remote_ended
