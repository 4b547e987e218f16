"""Smart-turn v3: features vs references, real speech, batching, one session per process."""

from __future__ import annotations

import asyncio
import os
import wave

import numpy as np
import pytest

from _helpers import missing, require

require("onnxruntime")

from flowcat.frames import (  # noqa: E402
    InputAudioRawFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from flowcat.testing import SleepFrame, run_test  # noqa: E402
from flowcat.turns import (  # noqa: E402
    SmartTurnAnalyzer,
    TurnAnalyzerUserTurnStopStrategy,
    UserTurnProcessor,
    default_smart_turn_model_path,
    log_mel_features,
)

try:
    default_smart_turn_model_path()
except ImportError:
    missing("smart-turn model (pipecat-ai wheel)")

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "turns")
COMPLETE = ["complete_weather", "complete_booking"]
TRUNCATED = ["truncated_weather", "truncated_um"]


def load(name: str) -> bytes:
    with wave.open(os.path.join(FIXTURES, name + ".wav")) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        return w.readframes(w.getnframes())


def as_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0


@pytest.fixture(scope="module")
def analyzer() -> SmartTurnAnalyzer:
    return SmartTurnAnalyzer()


# -------------------------------------------------------------------- features


def test_model_io_matches_features(analyzer: SmartTurnAnalyzer) -> None:
    inp = analyzer.session.get_inputs()[0]
    assert inp.name == "input_features"
    assert inp.shape[1:] == [80, 800]
    assert log_mel_features([np.zeros(1000, np.float32)]).shape == (1, 80, 800)


def test_features_match_whisper_feature_extractor() -> None:
    """Against transformers' WhisperFeatureExtractor(chunk_length=8), stored as a fixture."""
    ref = np.load(os.path.join(FIXTURES, "complete_weather_whisper_features.npz"))["every_8th_frame"]
    mine = log_mel_features([as_float(load("complete_weather"))])[0][:, ::8]
    assert np.abs(mine - ref).max() < 1e-5


def _naive_reference(audio: np.ndarray) -> np.ndarray:
    """Same recipe, computed independently: explicit DFT matrix, per-filter triangles in Hz."""
    x = np.zeros(128000)
    x[128000 - len(audio) :] = audio[-128000:]
    x = x.astype(np.float32)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    x = np.concatenate([x[200:0:-1], x, x[-2:-202:-1]]).astype(np.float64)  # reflect padding
    n = np.arange(400)
    window = np.sin(np.pi * n / 400) ** 2  # periodic Hann
    k = np.arange(201)[:, None]
    cos, sin = np.cos(2 * np.pi * k * n / 400), np.sin(2 * np.pi * k * n / 400)
    frames = np.stack([x[i * 160 : i * 160 + 400] * window for i in range(801)])
    power = (frames @ cos.T) ** 2 + (frames @ sin.T) ** 2  # (801, 201)

    def mel(f: float) -> float:
        return f * 3 / 200 if f < 1000 else 15 + 27 * np.log(f / 1000) / np.log(6.4)

    def hz(m: float) -> float:
        return m * 200 / 3 if m < 15 else 1000 * np.exp((m - 15) * np.log(6.4) / 27)

    edges = [hz(m) for m in np.linspace(mel(0), mel(8000), 82)]
    freqs = np.arange(201) * 8000 / 200
    bank = np.zeros((80, 201))
    for i in range(80):
        lo, c, hi = edges[i], edges[i + 1], edges[i + 2]
        for j, f in enumerate(freqs):
            if lo < f < hi:
                bank[i, j] = ((f - lo) / (c - lo) if f <= c else (hi - f) / (hi - c)) * 2 / (hi - lo)
    logmel = np.log10(np.maximum(bank @ power.T, 1e-10))[:, :800]
    logmel = np.maximum(logmel, logmel.max() - 8)
    return (logmel + 4) / 4


def test_features_match_naive_reference() -> None:
    audio = as_float(load("truncated_um"))
    assert np.abs(log_mel_features([audio])[0] - _naive_reference(audio)).max() < 1e-4


def test_long_audio_keeps_last_8_seconds() -> None:
    rng = np.random.default_rng(1)
    tail = rng.standard_normal(128000).astype(np.float32) * 0.1
    long = np.concatenate([rng.standard_normal(50000).astype(np.float32), tail])
    assert np.array_equal(log_mel_features([long]), log_mel_features([tail]))


# ---------------------------------------------------------------- real speech


def test_complete_scores_above_truncated(analyzer: SmartTurnAnalyzer) -> None:
    complete = [analyzer.predict(load(n)) for n in COMPLETE]
    truncated = [analyzer.predict(load(n)) for n in TRUNCATED]
    assert all(p.is_complete and p.probability > 0.8 for p in complete), complete
    assert all(not p.is_complete and p.probability < 0.2 for p in truncated), truncated
    assert min(p.probability for p in complete) > max(p.probability for p in truncated)
    assert all(p.inference_ms > 0 for p in complete + truncated)


def test_batched_equals_single(analyzer: SmartTurnAnalyzer) -> None:
    names = COMPLETE + TRUNCATED
    single = [analyzer.predict(load(n)).probability for n in names]
    batched = [p.probability for p in analyzer.predict_batch([load(n) for n in names])]
    assert np.allclose(single, batched, atol=1e-4)


def test_resampled_input(analyzer: SmartTurnAnalyzer) -> None:
    """8 kHz telephony audio is resampled to 16 kHz and still scores the same way."""
    import soxr

    pcm8 = soxr.resample(as_float(load("complete_weather")), 16000, 8000)
    p = analyzer.predict(np.asarray(pcm8, dtype=np.float32), sample_rate=8000)
    assert p.is_complete


def test_one_session_shared(analyzer: SmartTurnAnalyzer) -> None:
    others = [SmartTurnAnalyzer(stop_secs=1.0) for _ in range(3)]
    assert all(o.session is analyzer.session for o in others)
    assert SmartTurnAnalyzer.sessions_created() == 1


def test_async_checks_batched_across_calls(analyzer: SmartTurnAnalyzer) -> None:
    """10 calls asking in the same loop iteration → one ONNX run; same results as single."""
    names = (COMPLETE + TRUNCATED) * 3
    audios = [load(n) for n in names[:10]]
    expected = [analyzer.predict(a).probability for a in audios]

    async def go() -> list[float]:
        before = analyzer.stats
        results = await asyncio.gather(*(analyzer.analyze(a) for a in audios))
        after = analyzer.stats
        assert after[0] - before[0] == 1 and after[1] - before[1] == 10
        return [r.probability for r in results]

    assert np.allclose(asyncio.run(go()), expected, atol=1e-4)


# --------------------------------------------------------- with the processor


def _speech_frames(pcm: bytes) -> list:
    chunk = 640  # 20 ms at 16 kHz; the fixtures end with 0.3 s of silence, like a VAD stop
    frames: list = [VADUserStartedSpeakingFrame(start_secs=0.2)]
    for i in range(0, len(pcm), chunk):
        frames.append(InputAudioRawFrame(audio=pcm[i : i + chunk], sample_rate=16000))
    frames.append(VADUserStoppedSpeakingFrame(stop_secs=0.2))
    return frames


@pytest.mark.parametrize(("name", "complete"), [("complete_weather", True), ("truncated_um", False)])
def test_processor_stops_on_model_result(analyzer: SmartTurnAnalyzer, name: str, complete: bool) -> None:
    """Real loop, real inference: "complete" ends the turn right after the VAD stop;
    "incomplete" waits for the fallback (stop_secs, 0.8 s here)."""
    quick = SmartTurnAnalyzer(stop_secs=0.8)
    strategy = TurnAnalyzerUserTurnStopStrategy(quick, wait_for_transcript=False)
    proc = UserTurnProcessor(stop_strategies=[strategy], user_turn_stop_timeout=10.0)
    stopped_at: list[float] = []
    proc.add_event_handler(
        "on_user_turn_stopped", lambda p, s: stopped_at.append(asyncio.get_running_loop().time())
    )
    vad_stop_at: list[float] = []

    async def go() -> None:
        frames = _speech_frames(load(name))
        frames.append(SleepFrame(sleep=1.5))
        vad_stop = frames[-2]
        orig = proc.process_frame

        async def spy(frame, direction):  # type: ignore[no-untyped-def]
            if frame is vad_stop:
                vad_stop_at.append(asyncio.get_running_loop().time())
            await orig(frame, direction)

        proc.process_frame = spy  # type: ignore[method-assign]
        down, _ = await run_test(proc, frames_to_send=frames)
        assert sum(isinstance(f, UserStoppedSpeakingFrame) for f in down) == 1

    asyncio.run(go())
    assert strategy.last_prediction is not None
    assert strategy.last_prediction.is_complete is complete
    delay = stopped_at[0] - vad_stop_at[0]
    if complete:
        assert delay < 0.7  # the model's answer, well before the 0.8 s fallback
    else:
        assert 0.8 <= delay < 1.2
