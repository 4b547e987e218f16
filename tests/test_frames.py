"""Frame taxonomy: kinds, interruptibility, ids, slots."""

from __future__ import annotations

import pytest

import flowcat.frames as F


def test_kinds_follow_pipecat() -> None:
    assert F.InputAudioRawFrame(b"", 16000).kind == F.SYSTEM
    assert F.OutputAudioRawFrame(b"", 16000).kind == F.DATA
    assert F.TTSAudioRawFrame(b"", 16000).kind == F.DATA
    assert F.EndFrame().kind == F.CONTROL
    assert F.StartFrame().kind == F.SYSTEM
    assert F.InterruptionFrame().kind == F.SYSTEM
    assert F.TranscriptionFrame("hi").kind == F.DATA
    assert F.HeartbeatFrame().kind == F.CONTROL


@pytest.mark.parametrize(
    ("frame", "interruptible"),
    [
        (F.TextFrame("x"), True),
        (F.OutputAudioRawFrame(b"", 8000), True),
        (F.LLMFullResponseStartFrame(), True),
        (F.EndFrame(), False),
        (F.StopFrame(), False),
        (F.FunctionCallResultFrame("f", "1", {}, "ok"), False),
        (F.FunctionCallInProgressFrame("f", "1"), False),
        (F.LLMUpdateSettingsFrame(settings={}), False),
        (F.TTSUpdateSettingsFrame(settings={}), False),
        (F.VADParamsUpdateFrame(), False),
        (F.MixerEnableFrame(), False),
    ],
)
def test_interruptible_rule(frame: F.Frame, interruptible: bool) -> None:
    assert frame.interruptible is interruptible


def test_ids_increase_and_names_are_lazy() -> None:
    a, b = F.TextFrame("a"), F.TextFrame("b")
    assert b.id > a.id
    assert a.name == f"TextFrame#{a.id}"
    assert str(a) == a.name


def test_frames_have_slots() -> None:
    frame = F.OutputAudioRawFrame(b"\0\0" * 160, 8000)
    assert not hasattr(frame, "__dict__")
    with pytest.raises(AttributeError):
        frame.not_a_field = 1  # type: ignore[attr-defined]
    assert frame.num_frames == 160


def test_metadata_created_on_demand() -> None:
    frame = F.TextFrame("a")
    assert frame._metadata is None
    frame.metadata["k"] = 1
    assert frame.metadata == {"k": 1}


def test_every_exported_frame_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "frames.md").read_text()
    frame_names = [
        n for n in F.__all__ if isinstance(getattr(F, n), type) and issubclass(getattr(F, n), F.Frame)
    ]
    missing = [n for n in frame_names if f"`{n}`" not in doc]
    assert not missing, f"frames missing from docs/frames.md: {missing}"


def test_audio_frames_repr_size_and_format_not_bytes() -> None:
    from flowcat.frames import InputAudioRawFrame, OutputAudioRawFrame

    fin = InputAudioRawFrame(bytes(320), 16000)
    fout = OutputAudioRawFrame(bytes(8), 8000, 2)
    assert repr(fin) == f"{fin.name}(size: 320, frames: 160, sample_rate: 16000, channels: 1)"
    assert repr(fout) == f"{fout.name}(size: 8, frames: 2, sample_rate: 8000, channels: 2)"
