"""VAD analyzers: state machine, volume gate, Silero and energy on real speech, noise, music."""

from __future__ import annotations

import numpy as np
import pytest

from _helpers import require

require("onnxruntime")

from flowcat.audio.vad import (  # noqa: E402
    EnergyVADAnalyzer,
    SileroVADAnalyzer,
    VADAnalyzer,
    VADEvent,
    VADParams,
    VADState,
    VolumeMeter,
    WebRTCVADGate,
)
from test_vad_support import chords, load, pink_noise, to_pcm, white_noise  # noqa: E402

LOUD = to_pcm(np.full(512, 3000.0))  # a window loud enough to pass the volume gate


class Scripted(VADAnalyzer):
    """Confidence comes from a script, one value per 512-sample window."""

    def __init__(self, confidences: list[float], **kw) -> None:
        self.script = list(confidences)
        super().__init__(sample_rate=16000, **kw)

    def num_frames_required(self) -> int:
        return 512

    def voice_confidence(self, buffer: bytes) -> float:
        return self.script.pop(0)


def run_events(analyzer: VADAnalyzer, pcm: bytes, chunk: int = 640) -> list[tuple[str, float]]:
    events: list[tuple[str, float]] = []
    analyzer.set_listener(
        lambda e, p: events.append((e.name, round(p, 3))) if e is not VADEvent.ACTIVITY else None
    )
    for i in range(0, len(pcm), chunk):
        analyzer.analyze_audio_sync(pcm[i : i + chunk])
    return events


def test_state_machine_follows_pipecat_semantics() -> None:
    # start_secs 0.2 / 32 ms windows -> 6 voiced windows; stop likewise 6 unvoiced.
    conf = [0.0] * 20 + [0.9] * 3 + [0.1] + [0.9] * 10 + [0.1] * 3 + [0.9] + [0.1] * 8
    a = Scripted(conf, params=VADParams(min_volume=0.0))
    states = []
    events = []
    a.set_listener(lambda e, p: events.append((e, round(p / 0.032))))
    for _ in conf:
        states.append(a.analyze_audio_sync(LOUD))
    assert states[20] is VADState.STARTING
    assert states[23] is VADState.QUIET  # one unvoiced window drops STARTING
    assert states[28] is VADState.STARTING and states[29] is VADState.SPEAKING
    assert states[34] is VADState.STOPPING
    assert states[37] is VADState.SPEAKING  # one voiced window returns to SPEAKING
    assert states[42] is VADState.STOPPING and states[43] is VADState.QUIET
    assert [e for e in events if e[0] is not VADEvent.ACTIVITY] == [
        (VADEvent.STARTED, 30),
        (VADEvent.STOPPED, 44),
    ]
    # ACTIVITY right after STARTED, then at most every 0.2 s of audio while speaking
    acts = [w for e, w in events if e is VADEvent.ACTIVITY]
    assert acts[0] == 30 and all(b - a >= 6 for a, b in zip(acts, acts[1:], strict=False))
    assert len(acts) >= 2


def test_volume_gate_blocks_quiet_voiced_audio() -> None:
    quiet = to_pcm(np.full(512, 20.0))  # ~ -64 dBFS: below min_volume 0.6
    a = Scripted([1.0] * 40)
    for _ in range(40):
        assert a.analyze_audio_sync(quiet) is VADState.QUIET
    a = Scripted([1.0] * 40)
    assert [a.analyze_audio_sync(LOUD) for _ in range(40)][-1] is VADState.SPEAKING


def test_volume_meter_maps_loudness_like_pipecat() -> None:
    m = VolumeMeter(0.032)
    assert m.update(0.0) == 0.0  # digital silence: below the absolute gate
    for _ in range(200):
        v = m.update(3000.0**2)  # steady -20.8 dBFS RMS
    lufs = -0.691 + 20 * np.log10(3000 / 32768)
    assert v == pytest.approx((lufs + 110) / 100, abs=1e-6)
    m2 = VolumeMeter(0.032)
    assert m2.update(3000.0**2) == pytest.approx(0.2 * (lufs + 110) / 100)  # smoothing 0.2


def test_params_validation_and_update_resets_state() -> None:
    with pytest.raises(ValueError):
        VADParams(confidence=1.5)
    a = Scripted([1.0] * 20, params=VADParams(min_volume=0.0))
    for _ in range(10):
        a.analyze_audio_sync(LOUD)
    assert a.state is VADState.SPEAKING
    a.set_params(VADParams(min_volume=0.0, start_secs=0.0))
    assert a.state is VADState.QUIET
    assert a.analyze_audio_sync(LOUD) is VADState.SPEAKING  # start_secs 0: immediately


def test_rejects_unsupported_rate() -> None:
    with pytest.raises(ValueError):
        SileroVADAnalyzer(sample_rate=48000)


def _check(events, spans, params: VADParams | None = None):
    params = params or VADParams()
    starts = [p for e, p in events if e == "STARTED"]
    stops = [p for e, p in events if e == "STOPPED"]
    assert len(starts) == len(spans) == len(stops), events
    for (a, b), s, e in zip(spans, starts, stops, strict=True):
        # start: edge + start_secs, late by at most one espeak closure; stop: ±120 ms
        assert -0.12 <= s - (a + params.start_secs) <= 0.25, (a, s)
        assert abs(e - (b + params.stop_secs)) <= 0.12, (b, e)


@pytest.mark.parametrize(
    "name",
    [
        "utterance_weather.wav",
        "utterance_booking.wav",
        "backchannel_uhhuh.wav",
        "two_utterances.wav",
        "two_utterances_8k.wav",
    ],
)
def test_silero_finds_speech_segments(name: str) -> None:
    pcm, rate, spans = load(name)
    a = SileroVADAnalyzer(sample_rate=rate)
    assert a.window_secs == pytest.approx(0.032)
    _check(run_events(a, pcm), spans)


@pytest.mark.parametrize("name", ["utterance_weather.wav", "two_utterances.wav", "two_utterances_8k.wav"])
def test_energy_finds_speech_segments(name: str) -> None:
    pcm, rate, spans = load(name)
    _check(run_events(EnergyVADAnalyzer(sample_rate=rate), pcm), spans)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_silence_gives_nothing(rate: int) -> None:
    for a in (SileroVADAnalyzer(sample_rate=rate), EnergyVADAnalyzer(sample_rate=rate)):
        assert run_events(a, bytes(rate * 2 * 3)) == []
        assert run_events(a, white_noise(3.0, rate, dbfs=-60)) == []


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("kind", ["white", "pink", "music"])
def test_silero_ignores_noise_and_music(rate: int, kind: str) -> None:
    pcm = {"white": white_noise, "pink": pink_noise, "music": chords}[kind](4.0, rate)
    a = SileroVADAnalyzer(sample_rate=rate)
    assert run_events(a, pcm) == []


def test_energy_documented_behaviour_on_noise() -> None:
    rate = 16000
    # steady noise from the start becomes the floor: no speech
    assert run_events(EnergyVADAnalyzer(sample_rate=rate), white_noise(3.0, rate)) == []
    # a noise burst after silence fires it (documented: no model, any loud onset)
    pcm = white_noise(1.0, rate, dbfs=-60) + white_noise(1.0, rate, dbfs=-20, seed=3)
    events = run_events(EnergyVADAnalyzer(sample_rate=rate), pcm)
    assert events and events[0][0] == "STARTED" and 1.0 < events[0][1] < 1.4
    # ... where Silero stays quiet
    assert run_events(SileroVADAnalyzer(sample_rate=rate), pcm) == []


def test_silero_speech_after_music_is_still_found() -> None:
    rate = 16000
    speech, _, spans = load("utterance_weather.wav")
    pcm = chords(4.0, rate, dbfs=-40) + speech
    events = run_events(SileroVADAnalyzer(sample_rate=rate), pcm)
    assert [e for e, _ in events] == ["STARTED", "STOPPED"]
    assert abs(events[0][1] - (4.0 + spans[0][0] + 0.2)) < 0.3


def test_webrtc_gate_skips_inference_in_silence_and_keeps_segments() -> None:
    pcm, rate, spans = load("two_utterances.wav")
    gate = WebRTCVADGate(mode=3)
    a = SileroVADAnalyzer(sample_rate=rate, pre_gate=gate)
    _check(run_events(a, pcm), spans)
    windows = len(pcm) // 1024
    assert a.gated_windows > windows * 0.2  # the silences (3.2 s of 6.4) mostly skipped
    assert gate.checked >= a.gated_windows


def test_any_chunk_size_gives_the_same_result() -> None:
    pcm, rate, _ = load("utterance_booking.wav")
    results = {
        chunk: run_events(SileroVADAnalyzer(sample_rate=rate), pcm, chunk) for chunk in (2, 640, 3334, 20000)
    }
    assert len({tuple(v) for v in results.values()}) == 1
