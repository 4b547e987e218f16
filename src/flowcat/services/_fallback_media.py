"""FallbackTTSService and FallbackSTTService: several speech providers behind one service.

**TTS.** The fallback is a :class:`~flowcat.services.TTSService` whose ``run_tts`` runs
its providers' ``run_tts``: aggregation, frame order, context ids, interruptions and
metrics are the base's, done once. Each unit of text (a sentence) goes to the first
available provider; a failure that the policy fails over on, *before that unit's first
audio*, sends the same unit to the next provider, in the same utterance (one
``TTSStartedFrame``/``TTSStoppedFrame`` pair, no audio twice). A provider that fails
*after* audio of the unit went out ends that unit there: the rest of the sentence is not
spoken (an ``ErrorFrame`` says so; replaying the sentence would repeat what the caller
heard), the provider's breaker counts the failure and the next unit goes on with the next
provider. Every provider must produce audio at the fallback's sample rate.

**STT.** The fallback is an :class:`~flowcat.services.STTService` that connects its
first available provider and sends it the audio. When the provider's socket drops or a
send fails (and the policy fails over on the error) it disconnects it, connects the next
one and goes on streaming there: the audio that arrived meanwhile was buffered by the
base (up to ``max_buffer_secs``) and is sent to the new provider first, followed by a
pending ``finalize``. The audio already sent since the last final transcript (up to
``replay_secs``) is sent to the new provider first, so the words of an utterance whose
transcript the dropped provider never gave are heard by the next one. A provider that
gives no final transcript within ``final_timeout_secs`` of a ``finalize`` (a stalled
socket) is treated as dropped. The providers' transcripts come out of the fallback
(:meth:`~flowcat.services.STTService.deliver_results_to`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from ..errors import ConfigError, ServiceError, ServiceTimeout
from ..frames import CancelFrame, EndFrame, Frame, StartFrame
from ..runtime import FrameDirection
from ._ai_service import drop_tracebacks
from ._backoff import Backoff, Deadline, retry_call
from ._fallback import FallbackGroup, FallbackPolicy, open_first
from ._stt import SegmentedSTTService, STTService
from ._tts import TTSChunk, TTSService

__all__ = ["FallbackSTTService", "FallbackTTSService"]

logger = logging.getLogger("flowcat.services.fallback")


class FallbackTTSService(FallbackGroup[TTSService], TTSService):
    """One TTS service backed by several providers, tried in order for each unit of text.

    Args:
        services: The providers, most preferred first (not linked into any pipeline).
        policy: Which failures fail over, attempts per provider, the circuit breaker.
        request_timeout_secs: Bound from a unit to its first audio, all providers together
            (each provider's own ``request_timeout_secs`` bounds its attempts).
        **kwargs: :class:`~flowcat.services.TTSService` arguments (``sample_rate``,
            ``text_aggregator``, ``push_text_frames``, ``chunk_timeout_secs``, ``name``).

    Events: ``on_service_switched(fallback, from_service, to_service, error)``.
    """

    def __init__(
        self,
        services: Sequence[TTSService],
        *,
        policy: FallbackPolicy | None = None,
        request_timeout_secs: float = 10.0,
        **kwargs: Any,
    ) -> None:
        if "retry" in kwargs:
            raise ConfigError("FallbackTTSService: attempts are per provider: pass policy=FallbackPolicy(retry=...)")
        super().__init__(retry=Backoff(max_attempts=1), request_timeout_secs=request_timeout_secs, **kwargs)
        self._init_group(services, policy)
        self.model_name = self.services[0].model_name
        self._ctx_services: dict[str, list[TTSService]] = {}  # utterance -> providers that spoke in it

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self._start_services(frame)
        for s in self.services:
            if s.sample_rate != self.sample_rate:
                raise ConfigError(f"{self.name}: {s.name} speaks at {s.sample_rate} Hz, the fallback at "
                                  f"{self.sample_rate} Hz: give every provider the same sample_rate")

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        await self._stop_services(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._cancel_services(frame)

    async def update_settings(self, delta: Any) -> dict[str, Any]:
        """Apply a settings change to every provider that has those settings."""
        return await self._update_services(delta)

    async def handle_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, self.settings_frame_type) and frame.service in self.services:
            await frame.service.update_settings(frame.settings or {})
            return
        await super().handle_frame(frame, direction)

    async def on_context_interrupted(self, context_id: str) -> None:
        for s in self._ctx_services.pop(context_id, ()):
            await s.on_context_interrupted(context_id)

    async def on_context_finished(self, context_id: str) -> None:
        for s in self._ctx_services.pop(context_id, ()):
            try:
                await s.on_context_finished(context_id)
            except ServiceError as exc:
                logger.debug("%s: ending context %s on %s: %s", self.name, context_id, s.name, s.redact(str(exc)))

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[TTSChunk, None]:
        failed: ServiceError | None = None
        prev: TTSService | None = None
        for svc in self.candidates():
            if prev is not None and failed is not None:
                await self.switched(prev, svc, failed)
            used = self._ctx_services.setdefault(context_id, [])
            if svc not in used:
                used.append(svc)
            try:
                agen, first = await open_first(svc, lambda s=svc: s.run_tts(text, context_id),  # type: ignore[misc]
                                               self.provider_retry(svc), self.attempt_timeout(svc))
            except ServiceError as exc:
                self.record_failure(svc, exc)
                if not self.policy.fails_over(exc):
                    raise
                drop_tracebacks(exc)  # no cycle through this frame (nor its cause's: the provider's frames)
                failed, prev = exc, svc
                continue
            await self.serving(svc)
            try:
                if first is not None:
                    yield first
                with svc.attempt_errors(lambda: True):
                    async for chunk in agen:
                        yield chunk
            except ServiceError as exc:
                self.broke(svc, exc)  # the next unit goes to the next provider
                raise
            finally:
                await agen.aclose()
            return
        assert failed is not None  # noqa: S101 - invariant (type narrowing), not input validation
        raise failed


class FallbackSTTService(FallbackGroup[STTService], STTService):
    """One streaming STT service backed by several streaming providers (not
    :class:`~flowcat.services.SegmentedSTTService` s): the first available one is
    connected; when it fails the next one takes over the audio stream.

    Args:
        services: The providers, most preferred first (not linked into any pipeline).
        policy: Which failures fail over, connection attempts per provider, the breaker.
        replay_secs: Audio sent since the last final transcript kept to replay to the next
            provider when one fails (the most recent this many seconds).
        final_timeout_secs: Bound from a ``finalize`` to its final transcript; past it the
            provider is treated as dropped (None: no bound).
        **kwargs: :class:`~flowcat.services.STTService` arguments (``audio_passthrough``,
            ``max_buffer_secs`` — the audio kept while switching —, ``audio_batch_secs``,
            ``retry`` and ``reconnect_timeout_secs`` for reconnecting when every provider
            failed, ``user_id``, ``name``).

    Events: ``on_service_switched(fallback, from_service, to_service, error)``.
    """

    def __init__(self, services: Sequence[STTService], *, policy: FallbackPolicy | None = None,
                 replay_secs: float = 10.0, final_timeout_secs: float | None = 3.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init_group(services, policy)
        if replay_secs < 0 or (final_timeout_secs is not None and final_timeout_secs <= 0):
            raise ConfigError(f"{self.name}: replay_secs must be >= 0 and final_timeout_secs > 0")
        self.replay_secs = replay_secs
        self.final_timeout_secs = final_timeout_secs
        self._unconfirmed = bytearray()  # audio sent since the last final transcript (replayed on a switch)
        self._awaiting_final = False  # a finalize was sent and its final transcript has not come
        self._overdue: asyncio.TimerHandle | None = None
        for s in self.services:
            if isinstance(s, SegmentedSTTService):
                raise ConfigError(f"{self.name}: {s.name} is a segmented STT service; the fallback streams "
                                  "(streaming providers only)")
        self.model_name = self.services[0].model_name
        self._dropped: tuple[STTService, ServiceError] | None = None
        self._connected: STTService | None = None
        for s in self.services:
            s.deliver_results_to(self)

    def _detach(self) -> None:
        for s in self.services:
            s.deliver_results_to(None)  # the call is over: no reference back to this service
        self._stop_final_timer()
        super()._detach()

    async def start(self, frame: StartFrame) -> None:
        for s in self.services:
            s.configure_input(frame)  # the providers' own sender loops never run
            if s.sample_rate != (self._init_sample_rate or frame.audio_in_sample_rate):
                raise ConfigError(f"{self.name}: {s.name} takes {s.sample_rate} Hz audio, the fallback gets "
                                  f"{self._init_sample_rate or frame.audio_in_sample_rate} Hz")
        await super().start(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._cancel_services(frame)

    async def update_settings(self, delta: Any) -> dict[str, Any]:
        """Apply a settings change to every provider that has those settings (from its next connection)."""
        return await self._update_services(delta)

    async def handle_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, self.settings_frame_type) and frame.service in self.services:
            await frame.service.update_settings(frame.settings or {})
            return
        await super().handle_frame(frame, direction)

    # ------------------------------------------------------------ the seam

    async def connect(self) -> None:
        failed: ServiceError | None = None
        prev: STTService | None = None
        for svc in self.candidates():
            if prev is not None and failed is not None:
                await self.switched(prev, svc, failed)
            try:
                await retry_call(lambda n, s=svc: s.connect(), backoff=self.provider_retry(svc),  # type: ignore[misc]
                                 deadline=Deadline(svc.reconnect_timeout_secs), what=f"{svc.name} connect")
            except ServiceError as exc:
                self.record_failure(svc, exc)
                if not self.policy.fails_over(exc):
                    raise
                drop_tracebacks(exc)  # no cycle through this frame (nor its cause's: the provider's frames)
                failed, prev = exc, svc
                continue
            self.active = self._connected = svc
            self.model_name = svc.model_name
            self.record_success(svc)
            return
        assert failed is not None  # noqa: S101 - invariant (type narrowing), not input validation
        raise failed

    async def disconnect(self) -> None:
        self._stop_final_timer()
        svc, self._connected = self._connected, None
        if svc is not None:
            await svc.disconnect()

    async def send_audio(self, audio: bytes) -> None:
        svc = await self._serving()
        try:
            await svc.send_audio(audio)
        except ServiceError as exc:
            if not self.policy.fails_over(exc):
                raise
            await self._fail_over(svc, exc)
            await self.active.send_audio(audio)
        self._keep(audio)

    async def finalize(self) -> None:
        svc = await self._serving()
        try:
            await svc.finalize()
        except ServiceError as exc:
            if not self.policy.fails_over(exc):
                raise
            await self._fail_over(svc, exc)  # replays what it had not transcribed
            await self.active.finalize()
        self._awaiting_final = True
        if self.final_timeout_secs is not None and self._overdue is None:
            self._overdue = asyncio.get_running_loop().call_later(self.final_timeout_secs, self._final_overdue)

    async def push_transcription(
        self, text: str, *, final: bool = True, language: str | None = None, result: Any = None
    ) -> None:
        if final and text:
            self._unconfirmed.clear()
            self._awaiting_final = False
            self._stop_final_timer()
        await super().push_transcription(text, final=final, language=language, result=result)

    def _keep(self, audio: bytes) -> None:
        """Keep ``audio`` (sent) until a final transcript confirms it, the last ``replay_secs``."""
        buf = self._unconfirmed
        buf += audio
        limit = int(self.replay_secs * (self.sample_rate or 16000)) * 2
        if len(buf) > limit:
            del buf[: len(buf) - limit]

    def _final_overdue(self) -> None:
        self._overdue = None
        svc = self._connected
        if svc is not None and self._awaiting_final:
            self.on_provider_lost(svc, ServiceTimeout(
                f"{svc.name}: no final transcript within {self.final_timeout_secs:g} s"))

    def _stop_final_timer(self) -> None:
        if self._overdue is not None:
            self._overdue.cancel()
            self._overdue = None

    def on_provider_lost(self, provider: STTService, exc: ServiceError) -> None:
        """A provider's socket dropped: switch before the next send (the sender is woken)."""
        if provider is not self._connected:
            return
        self._dropped = (provider, exc)
        if self._wake is not None:
            self._wake.set()

    async def _serving(self) -> STTService:
        dropped, self._dropped = self._dropped, None
        if dropped is not None and dropped[0] is self._connected:
            await self._fail_over(*dropped)
        svc = self._connected
        if svc is None:
            await self.connect()
            svc = self._connected
            assert svc is not None  # noqa: S101 - invariant (type narrowing), not input validation
        return svc

    async def _fail_over(self, svc: STTService, exc: ServiceError) -> None:
        """``svc`` failed: count it, close it, connect the next available provider and send
        it the audio ``svc`` never confirmed (then the pending ``finalize``)."""
        self.record_failure(svc, exc)
        self._connected = None
        self._stop_final_timer()
        try:
            await svc.disconnect()
        except ServiceError as err:
            logger.debug("%s: disconnecting %s: %s", self.name, svc.name, svc.redact(str(err)))
        await self.connect()
        if self.active is not svc:
            await self.switched(svc, self.active, exc)
        if self._unconfirmed:
            await self.active.send_audio(bytes(self._unconfirmed))
        if self._awaiting_final:
            await self.active.finalize()
            if self.final_timeout_secs is not None:
                self._overdue = asyncio.get_running_loop().call_later(self.final_timeout_secs,
                                                                      self._final_overdue)
