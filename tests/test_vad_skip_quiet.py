"""SileroVADAnalyzer(skip_quiet=True): quiet windows are scored 0 without the model, and the
VAD's decisions stay those of the model run on every window."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from _helpers import require

require("onnxruntime")

from flowcat.audio.vad import SileroVADAnalyzer, VADEvent, VADParams  # noqa: E402
from flowcat.audio.vad._volume import VolumeMeter  # noqa: E402
from test_vad_support import load  # noqa: E402

STARTED, STOPPED = VADEvent.STARTED, VADEvent.STOPPED


def _resample(pcm: bytes, rate: int, to: int) -> bytes:
    if rate == to:
        return pcm
    a = np.frombuffer(pcm, "<i2").astype(np.float64)
    f = rate // to
    return a[: a.shape[0] // f * f].reshape(-1, f).mean(axis=1).round().astype("<i2").tobytes()


def _call_audio(rate: int, noise_dbfs: float | None) -> bytes:
    """Silence, an utterance, silence, the other utterance, silence (a caller listening in between)."""
    parts = []
    for name in ("utterance_weather.wav", "utterance_booking.wav"):
        pcm, r, _ = load(name, noise_floor_dbfs=None)
        parts.append(_resample(pcm, r, rate))
    gap = np.zeros(rate, dtype="<i2")
    x = np.concatenate([gap, np.frombuffer(parts[0], "<i2"), gap, gap, np.frombuffer(parts[1], "<i2"), gap])
    if noise_dbfs is not None:
        n = np.random.default_rng(7).standard_normal(x.shape[0]) * 32768 * 10 ** (noise_dbfs / 20)
        x = np.clip(np.round(x.astype(np.float64) + n), -32768, 32767).astype("<i2")
    return x.tobytes()


async def _events(pcm: bytes, rate: int, skip: bool) -> tuple[list[tuple[VADEvent, float]], SileroVADAnalyzer]:
    vad = SileroVADAnalyzer(sample_rate=rate, skip_quiet=skip)
    vad.set_sample_rate(rate)
    events: list[tuple[VADEvent, float]] = []
    vad.set_listener(lambda e, pos: events.append((e, pos)) if e in (STARTED, STOPPED) else None)
    chunk = rate // 50 * 2
    for i in range(0, len(pcm) - chunk + 1, chunk):
        vad.feed(pcm[i : i + chunk])
        if i % (chunk * 10) == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(vad.drain(), 30)
    vad.close()
    return events, vad


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("noise_dbfs", [None, -70.0])
async def test_quiet_windows_skip_the_model_and_speech_starts_where_it_did(rate: int, noise_dbfs: float | None) -> None:
    pcm = _call_audio(rate, noise_dbfs)
    full, every = await _events(pcm, rate, skip=False)
    gated, skipping = await _events(pcm, rate, skip=True)
    assert every.gated_windows == 0
    # Most of this call is the caller listening: those windows never reach the model.
    assert skipping.gated_windows > 0.4 * skipping._scored
    # Same utterances found. The model's recurrent state saw only the last 2 of the quiet
    # windows before an utterance (they are replayed when the gate opens), so its first
    # probabilities differ a little: a start may come up to 6 windows earlier, never
    # later, and a stop within 2 windows (docs/vad.md).
    assert [e for e, _ in gated] == [e for e, _ in full] == [STARTED, STOPPED] * 2
    window = 256 / 8000 if rate == 8000 else 512 / 16000
    for (e, a), (_, b) in zip(gated, full, strict=True):
        if e == STARTED:
            assert b - 6 * window - 1e-9 <= a <= b + 1e-9
        else:
            assert abs(a - b) <= 2 * window + 1e-9


async def test_a_noisy_line_runs_the_model_on_every_window() -> None:
    pcm = _call_audio(8000, -35.0)  # background above min_volume (0.6 ≈ -50 LUFS)
    _, vad = await _events(pcm, 8000, skip=True)
    assert vad.gated_windows == 0


async def test_min_volume_zero_turns_the_skip_off() -> None:
    pcm = _call_audio(8000, None)
    vad = SileroVADAnalyzer(sample_rate=8000, params=VADParams(min_volume=0.0))
    vad.set_sample_rate(8000)
    for i in range(0, len(pcm) - 320 + 1, 320):
        vad.feed(pcm[i : i + 320])
    await asyncio.wait_for(vad.drain(), 30)
    assert vad.gated_windows == 0


def test_stays_below_looks_ahead_without_recording() -> None:
    meter = VolumeMeter(0.032)
    loud = (0.3 * 32768) ** 2  # about -11 dBFS
    assert meter.stays_below(0.0, 0.6)
    assert not meter.stays_below(loud, 0.6)  # the window itself is loud
    assert meter.volume == 0.0  # nothing recorded
    for _ in range(20):
        meter.update(loud)
    assert meter.volume > 0.6
    # A silent window right after speech: itself quiet, but the smoothed volume stays high.
    assert not meter.stays_below(0.0, 0.6)
    before = meter.volume
    assert meter.stays_below(0.0, 0.6) is False and meter.volume == before


def test_a_process_on_one_cpu_runs_batches_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowcat.audio.vad import SileroBatcher

    loop = asyncio.new_event_loop()
    try:
        monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
        assert SileroBatcher(loop).max_inline_secs == float("inf")
        monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
        assert SileroBatcher(loop).max_inline_secs == pytest.approx(0.001)
        assert SileroBatcher(loop, max_inline_secs=0.5).max_inline_secs == 0.5
    finally:
        loop.close()


async def test_replayed_quiet_windows_ride_in_the_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the gate opens, the last skipped quiet windows run before the loud one for the
    model's state: as rows of the shared batches (a row each), never as single-row ONNX calls
    of their own, and they are not scored twice: the events are those of the model run on
    every window, within the tolerance above."""
    from flowcat.audio.vad import SileroBatcher
    from flowcat.audio.vad._silero_model import SileroLane

    def no_single_calls(self: SileroLane, slots: list[int], windows: list[bytes]) -> np.ndarray:
        raise AssertionError("a fed stream ran a single-row call of its own")

    pcm = _call_audio(8000, -70.0)
    full, _ = await _events(pcm, 8000, skip=False)
    batcher = SileroBatcher.for_loop()
    rows0 = batcher.stats.rows
    monkeypatch.setattr(SileroLane, "run_sync", no_single_calls)
    gated, vad = await _events(pcm, 8000, skip=True)
    run = vad._scored - vad.gated_windows  # windows scored by the model
    replayed = batcher.stats.rows - rows0 - run
    assert 0 < replayed <= 2 * 2 * 3  # ≤ 2 per opening of the gate; two utterances, a few openings each
    assert [e for e, _ in gated] == [e for e, _ in full] == [STARTED, STOPPED] * 2
