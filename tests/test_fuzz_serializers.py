"""Fuzzing the carrier serializers' inbound messages, the protobuf frames and AudioSocket framing.

Properties, per input:

* carriers: ``deserialize`` returns a frame or None and never raises; a rejected
  message is counted (``bad_inputs``) and logged at most once, the log rate-limited
  (:class:`flowcat._ratelimit.RateLimitedLog`); a call in progress (a valid start
  received) keeps working after any bad messages: valid media still decodes;
* protobuf: ``deserialize`` returns a frame or raises :class:`ProtocolError` only;
* AudioSocket: ``feed`` delivers whole messages or raises :class:`ProtocolError` only,
  in any read boundaries, and buffers no more than one message (``3 + max_payload``).

See tests/_fuzz.py for the settings (``FLOWCAT_FUZZ_EXAMPLES``) and the saved corpus.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from _fuzz import FUZZ, chunked, corpus, corpus_params, deep_json, messages_from
from flowcat.audio import tone
from flowcat.errors import ProtocolError
from flowcat.frames import Frame, InputAudioRawFrame, StartFrame
from flowcat.serializers import FrameSerializer, ProtobufFrameSerializer
from flowcat.transports._audiosocket_protocol import AudioSocketParser, encode_message
from test_serializer_conformance import ENCODE, SPECS, Spec

pytestmark = pytest.mark.fuzz

BY_NAME = {s.name: s for s in SPECS}
_LOOP = asyncio.new_event_loop()


@pytest.fixture(scope="module", autouse=True)
def _close_loop() -> Iterator[None]:
    yield
    _LOOP.close()


def run(coro: Any) -> Any:
    return _LOOP.run_until_complete(coro)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _seeds(spec: Spec) -> list[Any]:
    """The carrier's real messages (as JSON values) to mutate."""
    out: list[Any] = [json.loads(m) for m in spec.handshake]
    payload = ENCODE[spec.codec](tone(1000, 0.02, spec.rate))
    for msg in (spec.media_in(payload), *(spec.dtmf(d) for d in "1#" if spec.dtmf), spec.clear):
        if isinstance(msg, str):
            out.append(json.loads(msg))
    for msg in spec.bad:
        try:
            out.append(json.loads(msg))
        except ValueError:
            pass
    return out


def _binary_seeds(spec: Spec) -> list[bytes]:
    payload = ENCODE[spec.codec](tone(1000, 0.02, spec.rate))
    media = spec.media_in(payload)
    return [media] if isinstance(media, bytes) else [b"\x00", payload]


def started(spec: Spec) -> FrameSerializer:
    ser = spec.make("http://127.0.0.1:9")
    run(ser.setup(StartFrame(audio_in_sample_rate=16000, audio_out_sample_rate=24000)))
    info = None
    for msg in spec.handshake:
        info = run(ser.handshake(msg))
    assert info is not None
    ser.take_replies()
    return ser


def check_carrier(spec: Spec, garbage: list[str | bytes], *, during_handshake: bool = False) -> None:
    """Feed ``garbage`` to a serializer (in a call, or before its start) and check the properties."""
    handler = Records()
    log = logging.getLogger("flowcat.serializers")
    log.addHandler(handler)
    try:
        if during_handshake:
            ser = spec.make("http://127.0.0.1:9")
            run(ser.setup(StartFrame(audio_in_sample_rate=16000, audio_out_sample_rate=24000)))
            for msg in garbage:
                run(ser.handshake(msg))
            for msg in spec.handshake:  # a real start after the garbage still starts the call
                run(ser.handshake(msg))
            if ser.remote_ended:
                return  # the garbage held a valid stop/close: nothing more is expected
        else:
            ser = started(spec)
            for msg in garbage:
                before, logged = ser.bad_inputs, len(handler.records)
                out = run(ser.deserialize(msg))
                assert out is None or isinstance(out, Frame), out
                new = handler.records[logged:]
                if ser.bad_inputs > before:  # a rejection: counted once, logged once with context
                    assert ser.bad_inputs == before + 1
                    assert sum("skipped" in r.getMessage() for r in new) == 1, [r.getMessage() for r in new]
                    assert all(len(r.getMessage()) < 2000 for r in new)
                assert len(ser.take_replies()) <= 2
        assert len(handler.records) <= len(garbage) * 2 + 4
        info = ser.call_info
        assert info is not None
        if ser.remote_ended:
            return
        # The call goes on: valid media in the call's format still decodes.
        spec_media = spec.media_in(ENCODE[spec.codec](tone(1000, 0.06, spec.rate)))
        again = ser.call_info
        if again is None or again.codec != spec.codec or again.sample_rate != spec.rate:
            return  # a (mutated but valid) new start changed the format: media of the old one may not fit
        frames = [run(ser.deserialize(spec_media)) for _ in range(3)]
        assert any(isinstance(f, InputAudioRawFrame) and f.audio for f in frames), (spec.name, frames)
    finally:
        log.removeHandler(handler)


@pytest.mark.parametrize("name", [s.name for s in SPECS])
def test_carrier_survives_fuzzed_messages(name: str) -> None:
    spec = BY_NAME[name]
    seeds = _seeds(spec)
    binary = _binary_seeds(spec)
    strategy = st.lists(
        st.one_of(messages_from(seeds), st.builds(lambda b, n: b[:n], st.sampled_from(binary), st.integers(0, 700))),
        min_size=1, max_size=4,
    )

    @FUZZ
    @given(garbage=strategy)
    def prop(garbage: list[str | bytes]) -> None:
        check_carrier(spec, garbage)

    prop()


@pytest.mark.parametrize("name", [s.name for s in SPECS])
def test_carrier_handshake_survives_fuzzed_messages(name: str) -> None:
    spec = BY_NAME[name]

    @FUZZ
    @given(garbage=st.lists(messages_from(_seeds(spec)), min_size=1, max_size=3))
    def prop(garbage: list[str | bytes]) -> None:
        check_carrier(spec, garbage, during_handshake=True)

    prop()


@pytest.mark.parametrize("name", [s.name for s in SPECS])
def test_carrier_bad_input_log_is_rate_limited(name: str) -> None:
    spec = BY_NAME[name]
    handler = Records()
    logging.getLogger("flowcat.serializers").addHandler(handler)
    try:
        ser = started(spec)
        for _ in range(2000):
            assert run(ser.deserialize("{not json")) is None
    finally:
        logging.getLogger("flowcat.serializers").removeHandler(handler)
    assert ser.bad_inputs == 2000
    # The first 20 in full, then one in every 1000 (RateLimitedLog's defaults).
    assert len(handler.records) == 22
    assert all(name in r.getMessage() for r in handler.records)


def _corpus_cases() -> list[Any]:
    return [pytest.param(s.name, f, m, id=f"{s.name}-{f}")
            for s in SPECS for f, m in corpus(f"carrier-{s.name}") + corpus("carrier-any")]


@pytest.mark.parametrize(("name", "file", "message"), _corpus_cases())
def test_carrier_corpus(name: str, file: str, message: str | bytes) -> None:
    check_carrier(BY_NAME[name], [message])
    check_carrier(BY_NAME[name], [message], during_handshake=True)


# ------------------------------------------------------------------ protobuf (pipecat frames)

def _protobuf_seeds() -> list[bytes]:
    from flowcat.frames import (
        InterruptionFrame,
        OutputAudioRawFrame,
        OutputTransportMessageFrame,
        TextFrame,
        TranscriptionFrame,
    )

    ser = ProtobufFrameSerializer()
    frames = [OutputAudioRawFrame(b"\x01\x00" * 160, 16000, 1), TextFrame("hello"),
              TranscriptionFrame("hi", "user", "2024"), OutputTransportMessageFrame({"a": [1, 2]}),
              InterruptionFrame()]
    out = [ser.encode(f) for f in frames]
    return [b for b in out if b is not None]


PROTOBUF_SEEDS = _protobuf_seeds()  # once: frame ids grow with every frame made


def check_protobuf(data: str | bytes) -> None:
    ser = ProtobufFrameSerializer()
    try:
        frame = run(ser.deserialize(data))
    except ProtocolError:
        return
    assert isinstance(frame, Frame)


@st.composite
def _protobuf_inputs(draw: st.DrawFn) -> bytes | str:
    seeds = PROTOBUF_SEEDS
    kind = draw(st.sampled_from(["flip", "flip", "truncate", "splice", "random", "text", "message"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "text":
        return draw(st.text(max_size=50))
    if kind == "message":  # a transport message whose JSON is anything
        body = draw(st.one_of(st.text(max_size=40), st.just(deep_json(100_000)))).encode()
        inner = b"\x0a" + _varint(len(body)) + body
        return b"\x22" + _varint(len(inner)) + inner  # field 4: a transport message
    data = bytearray(draw(st.sampled_from(seeds)))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data)))])
    if kind == "splice":
        at = draw(st.integers(0, len(data)))
        return bytes(data[:at] + draw(st.binary(min_size=1, max_size=12)) + data[at:])
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    return bytes(data)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


@FUZZ
@given(data=_protobuf_inputs())
def test_protobuf_raises_only_protocol_error(data: str | bytes) -> None:
    check_protobuf(data)


@pytest.mark.parametrize(("file", "message"), corpus_params("protobuf"))
def test_protobuf_corpus(file: str, message: str | bytes) -> None:
    check_protobuf(message)


# ------------------------------------------------------------------ AudioSocket framing

MAX = 640


def check_audiosocket(stream: bytes, seed: int) -> None:
    got: list[tuple[int, bytes]] = []
    parser = AudioSocketParser(lambda kind, payload: got.append((kind, payload)), max_payload=MAX)
    failed = False
    for chunk in chunked(stream, seed):
        try:
            parser.feed(chunk)
        except ProtocolError:
            failed = True
            break
        assert parser.buffered <= 3 + MAX + len(chunk)  # one incomplete message at most
    # Whatever was delivered is exactly the stream's leading whole messages.
    pos = 0
    for kind, payload in got:
        assert stream[pos] == kind
        n = (stream[pos + 1] << 8) | stream[pos + 2]
        assert payload == stream[pos + 3 : pos + 3 + n]
        pos += 3 + n
    if not failed:
        assert parser.buffered == len(stream) - pos
        assert parser.buffered < 3 + MAX


@st.composite
def _audiosocket_streams(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        choice = draw(st.sampled_from(["uuid", "audio", "dtmf", "hangup", "error", "odd", "random", "big"]))
        if choice == "uuid":
            parts.append(encode_message(0x01, draw(st.binary(min_size=0, max_size=20))))
        elif choice == "audio":
            parts.append(encode_message(draw(st.integers(0x10, 0x18)), draw(st.binary(max_size=MAX))))
        elif choice == "dtmf":
            parts.append(encode_message(0x03, draw(st.binary(max_size=3))))
        elif choice == "hangup":
            parts.append(b"\x00\x00\x00")
        elif choice == "error":
            parts.append(encode_message(0xFF, draw(st.binary(max_size=2))))
        elif choice == "odd":
            parts.append(encode_message(draw(st.integers(0, 255)), draw(st.binary(max_size=40))))
        elif choice == "big":
            parts.append(bytes((0x10,)) + draw(st.integers(MAX + 1, 0xFFFF)).to_bytes(2, "big"))
        else:
            parts.append(draw(st.binary(max_size=50)))
    return b"".join(parts)


@FUZZ
@given(stream=_audiosocket_streams(), seed=st.integers(0, 1000))
def test_audiosocket_parser_raises_only_protocol_error(stream: bytes, seed: int) -> None:
    check_audiosocket(stream, seed)


@pytest.mark.parametrize(("file", "message"), corpus_params("audiosocket"))
def test_audiosocket_corpus(file: str, message: str | bytes) -> None:
    assert isinstance(message, bytes)
    for seed in range(3):
        check_audiosocket(message, seed)

