"""EspeakTTSService: the tiny offline text-to-speech fallback, espeak-ng in-process.

**GPL.** Needs ``pip install 'flowcat[espeak]'``, an optional extra because espeak-ng is
GPL-3.0-or-later. The `espeakng-loader <https://github.com/thewh1teagle/espeakng-loader>`_
wheel ships ``libespeak-ng.so`` (1.52) and its ``espeak-ng-data``, so nothing comes from
apt; the library is called through ctypes in synchronous mode (its audio arrives in a
callback during ``espeak_Synth``), at 22,050 Hz. Robotic, but intelligible (Whisper
transcribes it) and ~500x faster than real time: for tests, CI and tiny deployments.

espeak-ng's state is global to the library, so the process has one engine
(:class:`EspeakEngine`, initialised once) and synthesis is serialized by its lock; it runs
on the shared :class:`~flowcat.services._local_pool.LocalInferencePool`, never on the
event loop. Audio is resampled to the pipeline's output rate in the same job.

Docs: https://github.com/espeak-ng/espeak-ng/blob/master/src/include/espeak-ng/speak_lib.h
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import threading
from collections.abc import AsyncGenerator
from typing import Any, ClassVar

from ...audio import StreamResampler
from ...errors import ConfigError, MissingExtraError, ServiceError
from .._ai_service import ServiceCapabilities
from .._local_pool import LocalInferencePool
from .._registry import ProviderInfo
from .._tts import TTSChunk, TTSService, TTSSettings

__all__ = ["EspeakEngine", "EspeakTTSService"]

logger = logging.getLogger("flowcat.services.tts.espeak")

PROVIDERS = (
    ProviderInfo(
        name="espeak",
        kind="tts",
        title="eSpeak NG, offline (GPL extra)",
        service="flowcat.services.tts.EspeakTTSService",
        docs=("https://github.com/espeak-ng/espeak-ng/blob/master/src/include/espeak-ng/speak_lib.h",),
        extra="espeak",
        status="local",
        notes="in-process via ctypes, no key; GPL-3.0; robotic, RTF ~0.002; 22,050 Hz",
    ),
)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE_PARAM = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakEngine:
    """The process's espeak-ng library, initialised once (its state is global)."""

    loads: ClassVar[int] = 0
    _shared: ClassVar[EspeakEngine | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        spec = importlib.util.find_spec("espeakng_loader")
        if spec is None or not spec.submodule_search_locations:
            raise MissingExtraError("eSpeak NG TTS (espeakng-loader)", "espeak")
        root = list(spec.submodule_search_locations)[0]
        lib = ctypes.CDLL(os.path.join(root, "libespeak-ng.so"))
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 100, root.encode(), 0)
        if rate <= 0:
            raise ConfigError(f"espeak-ng: initialisation failed with data in {root}")
        self.sample_rate: int = rate
        self._lib = lib
        self._lock = threading.Lock()
        self._chunks: list[bytes] = []
        self._callback = _CALLBACK(self._on_audio)  # kept referenced: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None
        type(self).loads += 1

    @classmethod
    def shared(cls) -> EspeakEngine:
        """The process's engine (initialised on first use)."""
        engine = cls._shared
        if engine is None:
            with cls._shared_lock:
                engine = cls._shared
                if engine is None:
                    engine = cls._shared = cls()
        return engine

    def _on_audio(self, wav: Any, n: int, _events: Any) -> int:
        if n > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, n * 2))
        return 0

    def synthesize(self, text: str, voice: str = "en-us", rate_wpm: int = 175) -> bytes:
        """PCM16 mono at :attr:`sample_rate` for ``text`` (blocking; serialized)."""
        data = text.encode("utf-8")
        with self._lock:
            if voice != self._voice:
                if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                    raise ConfigError(f"espeak-ng has no voice {voice!r}")
                self._voice = voice
            self._lib.espeak_SetParameter(_RATE_PARAM, rate_wpm, 0)
            self._chunks = []
            err = self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            self._lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if err != 0:
            raise ServiceError(f"espeak-ng: synthesis failed (error {err})")
        return b"".join(chunks)


class EspeakTTSService(TTSService):
    """Offline eSpeak NG TTS (GPL extra ``espeak``).

    Args:
        voice: espeak-ng voice name (``"en-us"``).
        rate_wpm: Speaking rate in words per minute.
        pool: The inference pool (default: the process's shared one).
        **kwargs: :class:`~flowcat.services.TTSService` arguments.
    """

    capabilities = ServiceCapabilities(streaming=False, transport="in-process")

    def __init__(self, *, voice: str = "en-us", rate_wpm: int = 175, pool: LocalInferencePool | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("settings", TTSSettings(model="espeak-ng", voice=voice, language="en"))
        super().__init__(**kwargs)
        self.voice = voice
        self.rate_wpm = rate_wpm
        self.pool = pool
        self._engine: EspeakEngine | None = None

    def _pool(self) -> LocalInferencePool:
        if self.pool is None:
            self.pool = LocalInferencePool.shared()
        return self.pool

    async def load(self) -> EspeakEngine:
        """The process's engine: at once if initialised, else initialised on the pool (first call only)."""
        engine = self._engine
        if engine is None:
            shared = EspeakEngine._shared
            engine = shared if shared is not None else await self._pool().run(EspeakEngine.shared)
            self._engine = engine
        return engine

    async def _warm(self) -> None:
        try:
            await self.load()
        except Exception as exc:  # reported again by the first synthesis
            logger.warning("%s: initialising espeak-ng failed: %s", self.name, exc)

    async def start(self, frame: Any) -> None:
        await super().start(frame)
        if self._engine is None:  # in the background: the StartFrame is not held by the load
            self.create_task(self._warm(), "espeak_load", generation_bound=False)

    def _render(self, engine: EspeakEngine, text: str) -> bytes:
        pcm = engine.synthesize(text, self.voice, self.rate_wpm)
        if engine.sample_rate == self.sample_rate:
            return pcm
        resampler = StreamResampler(engine.sample_rate, self.sample_rate)
        return resampler.resample(pcm) + resampler.flush()

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[TTSChunk, None]:
        engine = await self.load()
        try:
            audio = await self._pool().run(lambda: self._render(engine, text))
        except ServiceError:
            raise
        except Exception as exc:
            raise ServiceError(f"{self.name}: synthesis failed: {exc}") from exc
        if audio:
            yield audio
