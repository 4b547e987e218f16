"""ProtobufFrameSerializer: golden bytes derived by hand from pipecat's frames.proto field
numbers, round trips of every message type, malformed input."""

from __future__ import annotations

import importlib.util
import io
import json
import struct
import wave
from pathlib import Path
from typing import Any

import pytest

from _helpers import missing
from flowcat.errors import ProtocolError
from flowcat.frames import (
    InputAudioRawFrame,
    InputTransportMessageFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
    StartFrame,
    TextFrame,
    TranscriptionFrame,
    TTSStoppedFrame,
)
from flowcat.serializers.protobuf import decode_fields, encode_varint, unwrap_wav
from flowcat.transports import ProtobufFrameSerializer, RawPCMSerializer

H = bytes.fromhex


def _ser(include_names: bool = False) -> ProtobufFrameSerializer:
    return ProtobufFrameSerializer(include_names=include_names)


def test_varints() -> None:
    assert encode_varint(0) == b"\x00"
    assert encode_varint(127) == b"\x7f"
    assert encode_varint(128) == H("8001")
    assert encode_varint(16000) == H("807d")
    assert encode_varint(300) == H("ac02")
    assert decode_fields(H("08ac02")) == {1: 300}


def test_audio_golden_bytes() -> None:
    f = OutputAudioRawFrame(audio=b"\x01\x02\x03\x04", sample_rate=16000, num_channels=1)
    f.id = 7
    # Frame.audio (2, LEN) { id(1)=7, audio(3)=4 bytes, sample_rate(4)=16000, num_channels(5)=1 }
    assert _ser().encode(f) == H("120d08071a040102030420807d2801")
    f.pts = 300
    assert _ser().encode(f) == H("121008071a040102030420807d280130ac02")


def test_text_golden_bytes_with_and_without_name() -> None:
    f = TextFrame(text="hi")
    f.id = 3
    assert _ser().encode(f) == H("0a0608031a026869")
    name = b"TextFrame#3"
    inner = H("0803") + b"\x12" + bytes([len(name)]) + name + H("1a026869")
    assert _ser(True).encode(f) == b"\x0a" + bytes([len(inner)]) + inner


def test_transcription_golden_bytes() -> None:
    f = TranscriptionFrame(text="ok", user_id="u", timestamp="t")
    f.id = 1
    assert _ser().encode(f) == H("1a0c08011a026f6b2201752a0174")


def test_message_and_interruption_golden_bytes() -> None:
    msg = OutputTransportMessageFrame(message={"a": 1})
    data = json.dumps({"a": 1}).encode()
    assert _ser().encode(msg) == H("22") + bytes([len(data) + 2]) + H("0a") + bytes([len(data)]) + data
    urgent = OutputTransportMessageUrgentFrame(message={"a": 1})
    assert _ser().encode(urgent) == _ser().encode(msg)
    intr = InterruptionFrame()
    intr.id = 9
    assert _ser().encode(intr) == H("2a020809")
    assert _ser().encode(TTSStoppedFrame()) is None


async def test_decode_each_message_type() -> None:
    s = _ser()
    audio = await s.deserialize(H("121008071a040102030420807d280130ac02"))
    assert isinstance(audio, InputAudioRawFrame)
    assert (audio.audio, audio.sample_rate, audio.num_channels, audio.pts) == (
        b"\x01\x02\x03\x04",
        16000,
        1,
        300,
    )
    text = await s.deserialize(H("0a0608031a026869"))
    assert type(text) is TextFrame and text.text == "hi"
    tr = await s.deserialize(H("1a0c08011a026f6b2201752a0174"))
    assert isinstance(tr, TranscriptionFrame) and (tr.text, tr.user_id, tr.timestamp) == ("ok", "u", "t")
    data = b'{"x": [1, 2]}'
    msg = await s.deserialize(H("22") + bytes([len(data) + 2]) + H("0a") + bytes([len(data)]) + data)
    assert isinstance(msg, InputTransportMessageFrame) and msg.message == {"x": [1, 2]}
    assert isinstance(await s.deserialize(H("2a020809")), InterruptionFrame)
    assert isinstance(await s.deserialize(H("2a00")), InterruptionFrame)


async def test_round_trip_out_to_in() -> None:
    s = ProtobufFrameSerializer()
    out = OutputAudioRawFrame(audio=bytes(range(200)) * 2, sample_rate=24000, num_channels=2)
    back = await s.deserialize(await s.serialize(out))  # type: ignore[arg-type]
    assert isinstance(back, InputAudioRawFrame)
    assert (back.audio, back.sample_rate, back.num_channels) == (out.audio, 24000, 2)
    for frame in (TextFrame(text="héllo ✓"), TranscriptionFrame(text="a b", user_id="42", timestamp="2026")):
        back2: Any = await s.deserialize(await s.serialize(frame))  # type: ignore[arg-type]
        assert type(back2) is type(frame) and back2.text == frame.text  # type: ignore[attr-defined]
    m: Any = await s.deserialize(await s.serialize(OutputTransportMessageFrame(message=[1, "two"])))  # type: ignore[arg-type]
    assert m.message == [1, "two"]


async def test_unknown_fields_skipped_and_last_oneof_wins() -> None:
    s = _ser()
    # unknown field 9 (varint) and field 10 (fixed64) around a text frame
    data = H("4801") + H("5100000000000000ff") + H("0a041a026869")
    f = await s.deserialize(data)
    assert isinstance(f, TextFrame) and f.text == "hi"
    # text then interruption: the last member of the oneof wins
    assert isinstance(await s.deserialize(H("0a041a0268692a00")), InterruptionFrame)


@pytest.mark.parametrize(
    "data",
    [
        H("12"),  # truncated key/length
        H("12050807"),  # length past the end
        H("12ff"),  # truncated varint length
        H("0f00"),  # wire type 7
        H("4801"),  # no known frame
        H("12041a020102"),  # audio without sample_rate
        H("12071a030102032010"),  # audio that is not whole samples
        H("22050a037b7b7b"),  # message that is not JSON
        H("0a031a01ff"),  # text that is not UTF-8
        "text message",
    ],
)
async def test_malformed_raises_protocol_error(data: bytes | str) -> None:
    with pytest.raises(ProtocolError):
        await _ser().deserialize(data)


def _pipecat_pb2() -> Any:
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        missing("pipecat-ai (model wheel)")
    path = Path(list(spec.submodule_search_locations)[0]) / "frames" / "protobufs" / "frames_pb2.py"
    if not path.exists() or importlib.util.find_spec("google.protobuf") is None:
        missing("pipecat's generated frames_pb2 or protobuf")
    mod_spec = importlib.util.spec_from_file_location("pipecat_frames_pb2_for_test", path)
    assert mod_spec is not None and mod_spec.loader is not None
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod


def test_cross_check_with_pipecats_generated_code() -> None:
    pb = _pipecat_pb2()
    f = OutputAudioRawFrame(audio=b"\x10\x20" * 80, sample_rate=8000, num_channels=1)
    f.pts = 123456789
    theirs = pb.Frame.FromString(_ser().encode(f))
    assert theirs.WhichOneof("frame") == "audio"
    assert (theirs.audio.audio, theirs.audio.sample_rate, theirs.audio.num_channels, theirs.audio.pts) == (
        f.audio,
        8000,
        1,
        123456789,
    )
    t = TranscriptionFrame(text="x", user_id="y", timestamp="z")
    theirs = pb.Frame.FromString(ProtobufFrameSerializer().encode(t))
    assert (theirs.transcription.text, theirs.transcription.name) == ("x", t.name)
    assert pb.Frame.FromString(_ser().encode(InterruptionFrame())).WhichOneof("frame") == "interruption"
    mine = pb.Frame()
    mine.message.data = json.dumps({"k": "v"})
    back = _ser().decode(mine.SerializeToString())
    assert isinstance(back, InputTransportMessageFrame) and back.message == {"k": "v"}
    mine = pb.Frame()
    mine.audio.audio = b"\x00\x01" * 4
    mine.audio.sample_rate = 16000
    mine.audio.num_channels = 1
    mine.audio.id = 99
    mine.audio.name = "AudioRawFrame#99"
    back = _ser().decode(mine.SerializeToString())
    assert isinstance(back, InputAudioRawFrame) and back.audio == b"\x00\x01" * 4


async def test_raw_pcm_serializer() -> None:
    s = RawPCMSerializer()
    await s.setup(StartFrame(audio_in_sample_rate=8000))
    f = await s.deserialize(b"\x01\x00\x02\x00")
    assert isinstance(f, InputAudioRawFrame) and f.sample_rate == 8000 and f.audio == b"\x01\x00\x02\x00"
    with pytest.raises(ProtocolError):
        await s.deserialize(b"\x01\x00\x02")
    with pytest.raises(ProtocolError):
        await s.deserialize("hello")
    assert await s.serialize(OutputAudioRawFrame(audio=b"\x05\x00", sample_rate=8000)) == b"\x05\x00"
    assert await s.serialize(InterruptionFrame()) is None
    total = 0
    for _ in range(10):  # 1 s at 16 kHz -> about 1 s at 8 kHz (minus the resampler's delay)
        out = await s.serialize(OutputAudioRawFrame(audio=bytes(3200), sample_rate=16000))
        total += len(out or b"")
    assert 14000 <= total <= 16000


def _wav(pcm: bytes, rate: int, channels: int = 1, width: int = 2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def _audio_message(audio: bytes, rate: int, channels: int = 1) -> bytes:
    # pipecat.Frame{audio: AudioRawFrame{audio=3, sample_rate=4, num_channels=5}}
    body = (
        b"\x1a"
        + encode_varint(len(audio))
        + audio
        + b"\x20"
        + encode_varint(rate)
        + b"\x28"
        + encode_varint(channels)
    )
    return b"\x12" + encode_varint(len(body)) + body


async def test_audio_in_a_wav_container_is_unwrapped() -> None:
    """pipecat's WebsocketClientTransport sends each chunk as a WAV file (add_wav_header=True)."""
    pcm = bytes(range(256)) * 5
    frame = await _ser().deserialize(_audio_message(_wav(pcm, 16000), 16000))
    assert isinstance(frame, InputAudioRawFrame)
    assert (frame.audio, frame.sample_rate, frame.num_channels) == (pcm, 16000, 1)
    # The container's format wins over the message fields.
    frame = await _ser().deserialize(_audio_message(_wav(pcm, 24000, channels=2), 16000))
    assert isinstance(frame, InputAudioRawFrame)
    assert (frame.audio, frame.sample_rate, frame.num_channels) == (pcm, 24000, 2)


def test_unwrap_wav_accepts_only_complete_pcm16_wav() -> None:
    pcm = b"\x01\x02" * 100
    wav = _wav(pcm, 8000)
    assert unwrap_wav(wav) == (pcm, 8000, 1)
    # A chunk before the data (LIST) and an odd-sized chunk (padded) are skipped.
    listed = wav[:36] + b"LIST" + struct.pack("<I", 3) + b"abc\x00" + wav[36:]
    listed = listed[:4] + struct.pack("<I", len(listed) - 8) + listed[8:]
    assert unwrap_wav(listed) == (pcm, 8000, 1)
    # A streaming writer's data size (0xFFFFFFFF): up to the end.
    streaming = wav[:40] + b"\xff\xff\xff\xff" + wav[44:]
    assert unwrap_wav(streaming) == (pcm, 8000, 1)
    # Not WAV, or not PCM16: None (raw PCM that starts with "RIFF" stays raw).
    assert unwrap_wav(b"RIFF" + pcm) is None
    assert unwrap_wav(_wav(b"\x01" * 100, 8000, width=1)) is None
    assert unwrap_wav(wav[:40]) is None  # cut inside the header
    no_fmt = wav[:12] + wav[36:]
    assert unwrap_wav(no_fmt) is None


async def test_raw_audio_that_starts_with_riff_is_kept_as_it_is() -> None:
    audio = b"RIFF" + b"\x00" * 60
    frame = await _ser().deserialize(_audio_message(audio, 8000))
    assert isinstance(frame, InputAudioRawFrame)
    assert frame.audio == audio
