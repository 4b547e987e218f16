"""LoopingFileMixer: background sound under the bot's audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowcat.audio import LoopingFileMixer, WavWriter, apply_gain, rms_dbfs, silence, tone
from flowcat.frames import MixerEnableFrame, MixerUpdateSettingsFrame
from flowcat.testing import run_virtual

RATE = 16000


def _wav(path: Path, pcm: bytes, rate: int, channels: int = 1) -> Path:
    w = WavWriter(path, rate, channels)
    w.write(pcm)
    w.close()
    return path


def _spectrum_peaks(pcm: bytes, rate: int, k: int) -> list[float]:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    hz = np.fft.rfftfreq(len(x), 1 / rate)
    order = np.argsort(spec)[::-1]
    peaks: list[float] = []
    for i in order:  # k distinct peaks, at least 50 Hz apart
        if all(abs(hz[i] - p) > 50 for p in peaks):
            peaks.append(float(hz[i]))
        if len(peaks) == k:
            break
    return sorted(peaks)


@pytest.fixture
def sounds(tmp_path: Path) -> dict[str, Path]:
    return {
        # 0.25 s of 200 Hz at 8 kHz (whole periods, so the loop is continuous).
        "hum": _wav(tmp_path / "hum.wav", tone(200.0, 0.25, 8000, 0.5), 8000),
        "beep": _wav(tmp_path / "beep.wav", tone(2000.0, 0.3, RATE, 0.5), RATE),
    }


def _run(mixer: LoopingFileMixer, chunks: list[bytes]) -> bytes:
    async def main() -> bytes:
        await mixer.start(RATE)
        out = b"".join(mixer.mix(c) for c in chunks)
        await mixer.stop()
        return out

    return run_virtual(main())


def test_mixed_output_contains_both_signals(sounds: dict[str, Path]) -> None:
    voice = tone(700.0, 1.0, RATE, 0.3)
    mixer = LoopingFileMixer(sounds, "hum", volume=0.4)
    out = _run(mixer, [voice[i : i + 640] for i in range(0, len(voice), 640)])
    assert len(out) == len(voice)
    assert _spectrum_peaks(out, RATE, 2) == pytest.approx([200.0, 700.0], abs=3)
    # The sound is resampled 8 -> 16 kHz and scaled by the volume: 0.5 * 0.4 = 0.2 peak.
    bg = np.frombuffer(_run(LoopingFileMixer(sounds, "hum", volume=0.4), [silence(1.0, RATE)]), "<i2")
    assert rms_dbfs(bg[RATE // 10 :].tobytes()) == pytest.approx(20 * np.log10(0.2) - 3.01, abs=0.1)


def test_background_plays_over_silence_and_volume_frames_change_level(sounds: dict[str, Path]) -> None:
    mixer = LoopingFileMixer(sounds, "beep", volume=0.4)

    async def main() -> tuple[float, float, float]:
        await mixer.start(RATE)
        a = mixer.mix(silence(0.2, RATE))
        await mixer.process_frame(MixerUpdateSettingsFrame(settings={"volume": 0.1}))
        b = mixer.mix(silence(0.2, RATE))
        await mixer.process_frame(MixerUpdateSettingsFrame(settings={"volume": 0.0}))
        c = mixer.mix(silence(0.2, RATE))
        return rms_dbfs(a), rms_dbfs(b), rms_dbfs(c)

    a, b, c = run_virtual(main())
    assert a == pytest.approx(20 * np.log10(0.2) - 3.01, abs=0.1)
    assert a - b == pytest.approx(12.04, abs=0.1)  # 0.4 -> 0.1
    assert c == -np.inf


def test_disable_returns_input_unchanged_and_enable_resumes(sounds: dict[str, Path]) -> None:
    mixer = LoopingFileMixer(sounds, "hum")
    voice = tone(700.0, 0.02, RATE, 0.3)

    async def main() -> None:
        await mixer.start(RATE)
        await mixer.process_frame(MixerEnableFrame(enable=False))
        assert mixer.mix(voice) is voice
        await mixer.process_frame(MixerEnableFrame(enable=True))
        assert mixer.mix(voice) != voice

    run_virtual(main())


def test_switching_sound_and_looping_wraps_seamlessly(sounds: dict[str, Path]) -> None:
    mixer = LoopingFileMixer(sounds, "hum", volume=1.0)

    async def main() -> tuple[bytes, bytes]:
        await mixer.start(RATE)
        await mixer.process_frame(MixerUpdateSettingsFrame(settings={"sound": "beep", "volume": 0.5}))
        # 1 s in odd-sized chunks over a 0.3 s sound: wraps three times, mid-chunk.
        out = b"".join(mixer.mix(silence(0.0137, RATE)) for _ in range(73))
        return out, mixer.mix(b"")

    out, empty = run_virtual(main())
    assert empty == b""
    expected = np.tile(np.frombuffer(apply_gain(tone(2000.0, 0.3, RATE, 0.5), factor=0.5), "<i2"), 4)
    got = np.frombuffer(out, "<i2")
    # Same rate, so no resampling: the output is exactly the sound repeated.
    assert np.max(np.abs(got.astype(int) - expected[: len(got)])) <= 1


def test_no_loop_plays_once(sounds: dict[str, Path]) -> None:
    mixer = LoopingFileMixer(sounds, "beep", loop=False)
    quiet = silence(0.02, RATE)
    out = _run(mixer, [quiet] * 25)  # 0.5 s over a 0.3 s sound
    x = np.frombuffer(out, "<i2")
    assert rms_dbfs(x[: int(0.3 * RATE)].tobytes()) > -20
    assert not x[int(0.3 * RATE) :].any()


def test_stereo_file_downmixed_and_bad_default(tmp_path: Path, sounds: dict[str, Path]) -> None:
    mono = np.frombuffer(tone(500.0, 0.5, RATE, 0.5), "<i2")
    st = _wav(tmp_path / "st.wav", np.column_stack([mono, mono]).astype("<i2").tobytes(), RATE, 2)
    out = _run(LoopingFileMixer({"st": st}, "st", volume=1.0), [silence(0.5, RATE)])
    assert out == mono.tobytes()
    with pytest.raises(ValueError):
        LoopingFileMixer(sounds, "nope")
