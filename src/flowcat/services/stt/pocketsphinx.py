"""PocketsphinxSTTService: streaming offline speech-to-text with CMU PocketSphinx.

Needs ``pip install 'flowcat[pocketsphinx]'`` (BSD-2-Clause): the `pocketsphinx
<https://pocketsphinx.readthedocs.io/>`_ wheel ships its US English acoustic model, a
language model and the CMU dictionary, found by ``Decoder()`` inside the package: nothing
is downloaded. The wheel declares ``sounddevice`` (for its microphone helper), which is
never imported here.

The streaming alternative to :class:`~flowcat.services.stt.WhisperSTTService`: decoding
runs while the user speaks, so interim transcripts come out as they go and the final one
~50-130 ms after the end of speech. Less accurate than Whisper (fine on clean speech,
poor over 8 kHz telephone audio; see docs/offline.md).

* A decoder holds one utterance's search state, so it serves one call at a time; decoders
  (each with its own copy of the ~40 MB model) are kept in a process-wide free list
  (:class:`DecoderPool`, at most ``max_decoders``, reused across calls and turns) and
  taken only for the length of a user turn. A turn that finds every decoder busy is
  refused with :class:`~flowcat.errors.InferenceOverloadError`.
* Audio is resampled to 16 kHz and decoded on the shared
  :class:`~flowcat.services._local_pool.LocalInferencePool`, never on the event loop;
  ``pre_roll_secs`` of audio from before the VAD start is decoded with the turn.

Docs: https://pocketsphinx.readthedocs.io/en/latest/pocketsphinx.html
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from typing import Any, ClassVar

from ...audio import StreamResampler
from ...errors import InferenceOverloadError, MissingExtraError, ServiceError
from .._ai_service import ServiceCapabilities
from .._local_pool import LocalInferencePool, prepare_native_env
from .._registry import ProviderInfo
from .._stt import STTService, STTSettings

__all__ = ["DecoderPool", "PocketsphinxSTTService"]

logger = logging.getLogger("flowcat.services.stt.pocketsphinx")

PROVIDERS = (
    ProviderInfo(
        name="pocketsphinx",
        kind="stt",
        title="CMU PocketSphinx, offline streaming",
        service="flowcat.services.stt.PocketsphinxSTTService",
        docs=("https://pocketsphinx.readthedocs.io/en/latest/pocketsphinx.html",),
        extra="pocketsphinx",
        status="local",
        notes="in-process, no key; interim results while speaking; weak on 8 kHz audio",
    ),
)

_RATE = 16000


class DecoderPool:
    """The process's PocketSphinx decoders: created on demand up to ``max_decoders``, then reused.

    Args:
        max_decoders: Decoders (calls speaking at once) at most.
        **config: ``pocketsphinx.Decoder`` options (default: the bundled en-us model).
    """

    _shared: ClassVar[DecoderPool | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, max_decoders: int = 8, **config: Any) -> None:
        if importlib.util.find_spec("pocketsphinx") is None:
            raise MissingExtraError("PocketSphinx STT (pocketsphinx)", "pocketsphinx")
        self.max_decoders = max_decoders
        self.config = {"loglevel": "FATAL", **config}
        self.created = 0
        """Decoders built (each loads the model once)."""
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    @classmethod
    def shared(cls) -> DecoderPool:
        """The process-wide pool (built on first use)."""
        pool = cls._shared
        if pool is None:
            with cls._shared_lock:
                pool = cls._shared
                if pool is None:
                    pool = cls._shared = cls()
        return pool

    def acquire(self) -> Any:
        """An idle decoder, or a new one (blocking: loads the model; run it on a worker).

        Raises:
            InferenceOverloadError: ``max_decoders`` are all in use.
        """
        with self._lock:
            if self._idle:
                return self._idle.pop()
            if self.created >= self.max_decoders:
                raise InferenceOverloadError(f"all {self.max_decoders} PocketSphinx decoders are in use")
            self.created += 1
        prepare_native_env()
        try:
            from pocketsphinx import Decoder

            return Decoder(**self.config)
        except BaseException:
            with self._lock:
                self.created -= 1
            raise

    def release(self, decoder: Any) -> None:
        """Give a decoder back (its utterance ended)."""
        with self._lock:
            self._idle.append(decoder)

    def discard(self) -> None:
        """A decoder was dropped instead of given back: its place may be built again."""
        with self._lock:
            self.created -= 1


class PocketsphinxSTTService(STTService):
    """Streaming offline STT (PocketSphinx): interims while the user speaks, the final at the turn's end.

    Args:
        pre_roll_secs: Audio from before the VAD start decoded with the turn.
        decoders: The decoder pool (default: the process's shared one).
        pool: The inference pool (default: the process's shared one).
        **kwargs: :class:`~flowcat.services.STTService` arguments.
    """

    # any input rate (resampled to 16 kHz)
    capabilities = ServiceCapabilities(streaming=True, interim_results=True, transport="in-process")

    def __init__(self, *, pre_roll_secs: float = 0.3, decoders: DecoderPool | None = None,
                 pool: LocalInferencePool | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("settings", STTSettings(model="pocketsphinx-en-us", language="en"))
        kwargs.setdefault("audio_batch_secs", 0.1)
        super().__init__(**kwargs)
        self.pre_roll_secs = pre_roll_secs
        self.decoders = decoders
        self.pool = pool
        self._resampler: StreamResampler | None = None
        self._pre_roll = bytearray()
        self._speaking = False
        self._decoder: Any = None
        self._dlock = threading.Lock()  # one decoder operation at a time (a release waits for a running one)
        self._refused = False  # this turn found no free decoder: skip it
        self._last_hyp = ""

    def _pool(self) -> LocalInferencePool:
        if self.pool is None:
            self.pool = LocalInferencePool.shared()
        return self.pool

    async def connect(self) -> None:
        if self.decoders is None:
            self.decoders = DecoderPool.shared()
        self._resampler = StreamResampler(self.sample_rate, _RATE)

    async def disconnect(self) -> None:
        self._release()

    def _release(self) -> None:
        """End a turn cut short (call ended): the decoder goes back once any running job on it is done."""
        decoder, self._decoder = self._decoder, None
        decoders = self.decoders
        if decoder is None or decoders is None:
            return

        def job() -> None:
            with self._dlock:
                try:
                    decoder.end_utt()
                except Exception:  # noqa: S110 - not in an utterance: nothing to end
                    pass
            decoders.release(decoder)

        try:
            self._pool().submit(job)
        except InferenceOverloadError:
            decoders.discard()

    async def on_user_started_speaking(self) -> None:
        self._speaking = True

    async def send_audio(self, audio: bytes) -> None:
        resampler = self._resampler
        if resampler is None:
            return
        pcm = resampler.resample(audio)
        if self._refused:
            return
        if not self._speaking and self._decoder is None:
            keep = int(self.pre_roll_secs * _RATE) * 2
            self._pre_roll += pcm
            if len(self._pre_roll) > keep:
                del self._pre_roll[: len(self._pre_roll) - keep]
            return
        if self._decoder is None:
            pcm = bytes(self._pre_roll) + pcm
            self._pre_roll.clear()
            self._last_hyp = ""
            decoders = self.decoders
            assert decoders is not None  # noqa: S101 - invariant (type narrowing), not input validation
            try:
                self._decoder = await self._pool().run(lambda: self._start_utt(decoders))
            except InferenceOverloadError:
                self._refused = True
                raise
            except ServiceError:
                raise
            except Exception as exc:
                raise ServiceError(f"{self.name}: decoder failed: {exc}") from exc
        decoder = self._decoder
        hyp = await self._pool().run(lambda: self._process(decoder, pcm))
        if hyp and hyp != self._last_hyp and self._decoder is decoder:
            self._last_hyp = hyp
            await self.push_transcription(hyp, final=False, language="en")

    def _start_utt(self, decoders: DecoderPool) -> Any:
        decoder = decoders.acquire()
        with self._dlock:
            decoder.start_utt()
        return decoder

    def _process(self, decoder: Any, pcm: bytes) -> str:
        with self._dlock:
            decoder.process_raw(pcm, False, False)
            hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def _end(self, decoder: Any) -> str:
        with self._dlock:
            decoder.end_utt()
            hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    async def finalize(self) -> None:
        self._speaking = False
        self._refused = False
        decoder = self._decoder
        if decoder is None:
            return
        try:
            text = await self._pool().run(lambda: self._end(decoder))
        finally:
            self._decoder = None
            if self.decoders is not None:
                self.decoders.release(decoder)
        await self.push_transcription(text, final=True, language="en")
