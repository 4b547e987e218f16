"""AudioRecorder: a scripted call on the virtual clock, checked in the WAV files."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from flowcat import FrameDirection, FrameProcessor
from flowcat.audio import AudioRecorder, recording_path, tone
from flowcat.errors import ConfigError
from flowcat.frames import (
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    TextFrame,
    TTSAudioRawFrame,
)
from flowcat.testing import SleepFrame, run_test, run_virtual

RATE = 16000


def _read(path: Path) -> tuple[np.ndarray, int, int]:
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int64)
        return data.reshape(-1, w.getnchannels()), w.getframerate(), w.getnchannels()


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec)) * rate / len(x)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0


def _frames(pcm: bytes, rate: int, cls, paced: bool, ms: int = 20) -> list[Frame]:
    step = 2 * rate * ms // 1000
    out: list[Frame] = []
    for i in range(0, len(pcm), step):
        out.append(cls(audio=pcm[i : i + step], sample_rate=rate))
        if paced:
            out.append(SleepFrame(sleep=ms / 1000))
    return out


def test_scripted_call_two_legs_on_one_timeline(tmp_path: Path) -> None:
    mono, stereo = tmp_path / "mono.wav", tmp_path / "stereo.wav"
    # User speaks 0-1 s (real-time 20 ms frames at 8 kHz); silence; at 1.5 s the bot's
    # TTS audio (24 kHz) arrives in one burst and lasts 1 s.
    user = _frames(tone(440.0, 1.0, 8000, 0.5), 8000, InputAudioRawFrame, paced=True)
    bot = _frames(tone(1000.0, 1.0, 24000, 0.5), 24000, TTSAudioRawFrame, paced=False)
    script = [*user, SleepFrame(sleep=0.5), TextFrame(text="hi"), *bot]
    rec = AudioRecorder(mono, stereo, sample_rate=RATE)

    async def main():
        return await run_test(rec, frames_to_send=script)

    down, _ = run_virtual(main())
    # Every frame passes through unchanged (same objects, same order).
    sent = [f for f in script if not isinstance(f, SleepFrame)]
    assert down[: len(sent)] == sent and all(a is b for a, b in zip(down, sent, strict=False))

    st, rate, ch = _read(stereo)
    assert (rate, ch) == (RATE, 2)
    assert len(st) == pytest.approx(2.5 * RATE, abs=0.03 * RATE)
    left, right = st[:, 0], st[:, 1]
    s = RATE // 10  # 100 ms of slack around the edges (resampler delay, frame pacing)
    assert abs(_peak_hz(left[s : RATE - s], RATE) - 440.0) < 2
    assert _rms(left[s : RATE - s]) == pytest.approx(0.5 * 32767 / np.sqrt(2), rel=0.03)
    assert _rms(right[: int(1.5 * RATE) - s]) == 0.0  # bot silent until 1.5 s
    assert _rms(left[RATE + s :]) == 0.0  # user silent after 1 s
    assert _rms(np.concatenate([left, right])[int(1.1 * RATE) : int(1.4 * RATE)]) == 0.0
    b = right[int(1.5 * RATE) + s : int(2.5 * RATE) - s]
    assert abs(_peak_hz(b, RATE) - 1000.0) < 2
    assert _rms(b) == pytest.approx(0.5 * 32767 / np.sqrt(2), rel=0.03)
    # Onsets land where they happened on the call's clock (within a frame).
    assert np.flatnonzero(np.abs(left) > 500)[0] < 0.02 * RATE
    assert abs(np.flatnonzero(np.abs(right) > 500)[0] / RATE - 1.5) < 0.02

    m, rate, ch = _read(mono)
    assert (rate, ch) == (RATE, 1) and len(m) == len(st)
    np.testing.assert_array_equal(m[:, 0], np.clip(left + right, -32768, 32767))


def test_overlapping_speech_is_mixed(tmp_path: Path) -> None:
    mono = tmp_path / "mono.wav"
    user = _frames(tone(500.0, 0.4, RATE, 0.3), RATE, InputAudioRawFrame, paced=True)
    bot = _frames(tone(1500.0, 0.4, RATE, 0.3), RATE, OutputAudioRawFrame, paced=False)
    rec = AudioRecorder(mono, sample_rate=RATE)
    run_virtual(run_test(rec, frames_to_send=[*bot, *user]))  # bot burst at t=0, user live 0-0.4 s
    m = _read(mono)[0][:, 0]
    seg = m[int(0.05 * RATE) : int(0.35 * RATE)]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    hz = np.fft.rfftfreq(len(seg), 1 / RATE)
    peaks = sorted(hz[np.argsort(spec)[-2:]])
    assert abs(peaks[0] - 500) < 5 and abs(peaks[1] - 1500) < 5


def test_interruption_drops_unplayed_bot_audio(tmp_path: Path) -> None:
    stereo = tmp_path / "s.wav"
    bot = _frames(tone(1000.0, 2.0, RATE, 0.3), RATE, TTSAudioRawFrame, paced=False)
    rec = AudioRecorder(stereo_path=stereo, sample_rate=RATE)
    run_virtual(run_test(rec, frames_to_send=[*bot, SleepFrame(sleep=0.5), InterruptionFrame()]))
    right = _read(stereo)[0][:, 1]
    assert len(right) == pytest.approx(0.5 * RATE, abs=0.02 * RATE)  # 1.5 s never played


class _Probe(FrameProcessor):
    def __init__(self, rec: AudioRecorder) -> None:
        super().__init__()
        self.rec = rec
        self.max_buffered = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        self.max_buffered = max(self.max_buffered, self.rec.buffered_bytes)
        await self.push_frame(frame, direction)


@pytest.mark.parametrize("seconds", [5, 40])
def test_memory_bounded_for_long_calls(tmp_path: Path, seconds: int) -> None:
    from flowcat import Pipeline

    path = tmp_path / "long.wav"
    rec = AudioRecorder(path, sample_rate=RATE)
    probe = _Probe(rec)
    chunk = tone(300.0, 0.02, RATE, 0.2)
    script: list[Frame] = []
    for _ in range(seconds * 50):
        script += [InputAudioRawFrame(audio=chunk, sample_rate=RATE), SleepFrame(sleep=0.02)]
    run_virtual(run_test(Pipeline([rec, probe]), frames_to_send=script, timeout=seconds + 30))
    assert len(_read(path)[0]) == pytest.approx(seconds * RATE, abs=0.03 * RATE)
    # block (0.5 s) + margin (0.25 s) + one frame, per leg: does not grow with the call.
    assert 0 < probe.max_buffered <= 2 * int(0.8 * RATE)
    assert rec.buffered_bytes == 0 and not rec.recording


def test_cancel_patches_header(tmp_path: Path) -> None:
    path = tmp_path / "c.wav"
    user = _frames(tone(440.0, 0.6, RATE), RATE, InputAudioRawFrame, paced=True)
    run_virtual(run_test(AudioRecorder(path, sample_rate=RATE), frames_to_send=user, send_end_frame=False))
    data = _read(path)[0]
    assert len(data) == pytest.approx(0.6 * RATE, abs=0.03 * RATE)
    assert path.stat().st_size == 44 + 2 * len(data)


def test_needs_a_path() -> None:
    with pytest.raises(ValueError):
        AudioRecorder()


@pytest.mark.parametrize("call_id", [
    "../../etc/passwd", "..", ".", "/etc/passwd", "/tmp/x", "a/../../b", "..\\..\\win.ini", "nul\x00byte",
    "", "x" * 5000, "CA\u2215evil", "dot.file", ".hidden", "~root", "a\nb", "\udcff-surrogate",
])
def test_recording_path_never_escapes_its_directory(tmp_path: Path, call_id: str) -> None:
    rec_dir = tmp_path / "recordings"
    path = recording_path(rec_dir, call_id)
    assert path.parent == rec_dir.resolve()
    assert path.name.endswith(".wav") and "\x00" not in str(path) and len(path.name) <= 96 + 13 + 4
    assert path.name[0] not in "./~"
    # a changed id carries a digest: ids that look alike never share a file
    assert path != recording_path(rec_dir, call_id + "/")


def test_recording_path_keeps_plain_ids_and_refuses_odd_suffixes(tmp_path: Path) -> None:
    assert recording_path(tmp_path, "CA0123abcd_ef-9") == tmp_path.resolve() / "CA0123abcd_ef-9.wav"
    assert recording_path(tmp_path, "c1", ".mono.wav").name == "c1.mono.wav"
    for bad in ("/../x.wav", ".wav/../../x", "", "wav", ".w\x00v"):
        with pytest.raises(ConfigError):
            recording_path(tmp_path, "c1", bad)


def test_recorder_for_call_writes_inside_the_directory(tmp_path: Path) -> None:
    rec_dir = tmp_path / "rec"
    rec_dir.mkdir()
    rec = AudioRecorder.for_call(rec_dir, "../../escape", mono=True, sample_rate=RATE)
    user = _frames(tone(440.0, 0.2, RATE), RATE, InputAudioRawFrame, paced=True)
    run_virtual(run_test(rec, frames_to_send=user))
    written = sorted(p.name for p in rec_dir.iterdir())
    assert len(written) == 2 and all(n.startswith("______escape-") for n in written)
    assert not list(tmp_path.glob("escape*")) and sorted(p.name for p in tmp_path.iterdir()) == ["rec"]
