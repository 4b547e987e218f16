"""STTService (streaming) and SegmentedSTTService (whole utterances as WAV).

**Streaming.** Input audio is taken inline (no coroutine per frame): each chunk is
appended to a buffer and one sender task per service hands the buffered audio to
:meth:`STTService.send_audio` (the provider's socket write) once ``audio_batch_secs``
of it has gathered (100 ms by default: one socket message per five 20 ms packets, not
one per packet), and at once when the user stops speaking, before ``finalize``. The
provider's receive loop calls :meth:`STTService.push_transcription` for interim and
final results.
When the user stops speaking (VAD) the sender calls :meth:`STTService.finalize`
(Deepgram's ``Finalize``, say) and TTFB runs from that moment to the next final
transcript. A send that fails with a retryable error reconnects with backoff
(:meth:`STTService.connect`), keeping at most ``max_buffer_secs`` of audio meanwhile.

**Segmented.** :class:`SegmentedSTTService` keeps ``pre_roll_secs`` of audio while
the user is quiet, collects the speech between the turn boundaries
(``VADUserStartedSpeakingFrame``/``VADUserStoppedSpeakingFrame``, or
``UserStartedSpeakingFrame``/``UserStoppedSpeakingFrame`` when no VAD frames come)
and sends it as one WAV to :meth:`SegmentedSTTService.run_stt`. The transcription starts at
the VAD stop, while the turn processor still waits for the end of the turn (its speech
timeout): preemptive. If the user speaks again before that segment's transcript was pushed,
the pending result is discarded and the next VAD stop transcribes the whole utterance (the
earlier segment, the pause and the new speech) as one (``merge_resumed``, default on).

``STTMuteFrame(mute=True)`` stops feeding the provider (audio still passes on); a segmented service
also leaves out a stretch of speech that began while it was muted.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from ..errors import ServiceError
from ..frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    StartFrame,
    STTMuteFrame,
    STTUpdateSettingsFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from ..runtime import FrameDirection
from ._ai_service import AIService, ServiceCapabilities, ServiceSettings
from ._backoff import Backoff, Deadline, retry_call

__all__ = ["STTService", "STTSettings", "SegmentedSTTService", "pcm_to_wav"]

logger = logging.getLogger("flowcat.services.stt")

DOWNSTREAM = FrameDirection.DOWNSTREAM


@dataclass
class STTSettings(ServiceSettings):
    """STT settings: the language."""

    language: str | None = None


def pcm_to_wav(pcm: bytes, sample_rate: int, num_channels: int = 1) -> bytes:
    """A complete in-memory WAV (PCM16) of ``pcm``."""
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(pcm), b"WAVE", b"fmt ", 16, 1, num_channels,
        sample_rate, sample_rate * num_channels * 2, num_channels * 2, 16, b"data", len(pcm),
    )
    return header + pcm


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


class STTService(AIService):
    """Base of the streaming STT services.

    Args:
        sample_rate: Input sample rate (None: the StartFrame's ``audio_in_sample_rate``).
        audio_passthrough: Pass input audio on downstream (pipecat's default).
        max_buffer_secs: Audio kept while (re)connecting; older audio is dropped.
        audio_batch_secs: Audio gathered into one :meth:`send_audio` call (0: every chunk
            as it comes). What is left is sent when the user stops speaking, before
            :meth:`finalize`, so the end of speech is not delayed.
        retry: Backoff for reconnecting.
        reconnect_timeout_secs: Bound on one reconnection (all attempts).
        user_id: ``user_id`` of the transcription frames.
        **kwargs: :class:`~flowcat.services.AIService` arguments.
    """

    settings_frame_type = STTUpdateSettingsFrame
    capabilities = ServiceCapabilities(interim_results=True, transport="websocket")
    inline_frames = (InputAudioRawFrame,)

    def __init__(
        self,
        *,
        sample_rate: int | None = None,
        audio_passthrough: bool = True,
        max_buffer_secs: float = 5.0,
        audio_batch_secs: float = 0.1,
        retry: Backoff | None = None,
        reconnect_timeout_secs: float = 10.0,
        user_id: str = "",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("settings", STTSettings())
        super().__init__(**kwargs)
        self._init_sample_rate = sample_rate
        self.sample_rate = sample_rate or 0
        self.audio_passthrough = audio_passthrough
        self.max_buffer_secs = max_buffer_secs
        self.retry = retry if retry is not None else Backoff()
        self.reconnect_timeout_secs = reconnect_timeout_secs
        self.user_id = user_id
        self.muted = False
        self._buf = bytearray()
        self._buf_limit = int(max_buffer_secs * (sample_rate or 16000)) * 2
        self.audio_batch_secs = audio_batch_secs
        self._batch_bytes = 0
        self._wake: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None
        self._finalize_pending = False
        self._vad_seen = False
        self._lost: ServiceError | None = None
        self._results_to: STTService | None = None
        self._register_event_handler("on_connected")
        self._register_event_handler("on_disconnected")

    # ---------------------------------------------------------- provider seam

    async def connect(self) -> None:
        """Open the provider connection (start a receive loop with ``create_task(..., generation_bound=False)``:
        transcripts must come through after an interruption)."""

    async def disconnect(self) -> None:
        """Close the provider connection."""

    async def send_audio(self, audio: bytes) -> None:
        """Send PCM16 audio to the provider. Raise a ServiceError if the connection failed."""

    async def finalize(self) -> None:
        """Ask the provider for the final transcript now (the user stopped speaking)."""

    # ------------------------------------------------------------ results

    async def push_transcription(
        self, text: str, *, final: bool = True, language: str | None = None, result: Any = None
    ) -> None:
        """Push a transcript (from the provider's receive loop)."""
        if not text:
            return
        owner = self._results_to
        if owner is not None:
            await owner.push_transcription(text, final=final, language=language, result=result)
            return
        if final:
            await self.stop_ttfb_metrics()
            await self.push_frame(TranscriptionFrame(
                text, user_id=self.user_id, timestamp=_now_iso(), language=language, result=result,
                finalized=True,
            ))
        else:
            await self.push_frame(InterimTranscriptionFrame(
                text, user_id=self.user_id, timestamp=_now_iso(), language=language, result=result
            ))

    # ------------------------------------------------------------- lifecycle

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        self.configure_input(frame)
        self._wake = asyncio.Event()
        # Not bound to a generation: the connection outlives turns, and a transcript the receive
        # loop (started from here) pushes after a barge-in is about the turn being spoken now.
        self._sender = self.create_task(self._send_loop(), "stt_sender", generation_bound=False)

    def configure_input(self, frame: StartFrame) -> None:
        """Take the input sample rate (and the buffer sizes that follow) from ``frame``.

        Done by :meth:`start`; a service that drives this one's seam instead of running it
        (:class:`~flowcat.services.FallbackSTTService`) calls it in place of ``start``.
        """
        self.sample_rate = self._init_sample_rate or frame.audio_in_sample_rate
        self._buf_limit = int(self.max_buffer_secs * self.sample_rate) * 2
        self._batch_bytes = int(self.audio_batch_secs * self.sample_rate) * 2

    def deliver_results_to(self, owner: STTService | None) -> None:
        """Hand this provider's transcripts (:meth:`push_transcription`) and lost connections
        (:meth:`connection_lost`) to ``owner`` instead of handling them itself: ``owner``
        drives this provider's ``connect``/``send_audio``/``finalize`` (a fallback service).
        None: back to normal."""
        self._results_to = owner

    def on_provider_lost(self, provider: STTService, exc: ServiceError) -> None:
        """``provider``, whose results this service takes, lost its connection (default: as
        if this service had lost its own)."""
        self.connection_lost(exc)

    def connection_lost(self, exc: ServiceError) -> None:
        """Called by the provider's receive loop when the connection dropped: reconnect soon."""
        owner = self._results_to
        if owner is not None:
            owner.on_provider_lost(self, exc)
            return
        self._lost = exc
        if self._wake is not None:
            self._wake.set()

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        await self._close()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._close()

    async def _close(self) -> None:
        if self._sender is not None:
            await self.cancel_task(self._sender)
            self._sender = None
        try:
            await self.disconnect()
        except ServiceError as exc:
            logger.debug("%s: disconnect: %s", self.name, self.redact(str(exc)))
        await self._call_event_handler("on_disconnected")

    # ------------------------------------------------------------- frames

    def process_inline(self, frame: Frame, direction: FrameDirection) -> Any:
        if direction is DOWNSTREAM and isinstance(frame, InputAudioRawFrame):
            if not self.muted:
                self.feed_audio(frame.audio)
            return frame if self.audio_passthrough else None
        return NotImplemented

    def feed_audio(self, audio: bytes) -> None:
        """Take one chunk of input audio (inline: never blocks)."""
        buf = self._buf
        buf += audio
        limit = self._buf_limit
        if len(buf) > limit:
            del buf[: len(buf) - limit]
        if len(buf) < self._batch_bytes:
            return  # gathering: sent once a batch is full, or at the end of speech
        wake = self._wake
        if wake is not None:
            wake.set()

    async def handle_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, STTMuteFrame):
            self.muted = frame.mute
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._vad_seen = True
            await self.on_user_started_speaking()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            await self.on_user_stopped_speaking()
        elif isinstance(frame, UserStartedSpeakingFrame) and not self._vad_seen:
            await self.on_user_started_speaking()
        elif isinstance(frame, UserStoppedSpeakingFrame) and not self._vad_seen:
            await self.on_user_stopped_speaking()
        await self.push_frame(frame, direction)

    async def on_user_started_speaking(self) -> None:
        """Hook: the user started speaking."""

    async def on_user_stopped_speaking(self) -> None:
        """Hook: the user stopped speaking: time to the final transcript starts now."""
        await self.start_ttfb_metrics()
        self._finalize_pending = True
        if self._wake is not None:
            self._wake.set()

    # --------------------------------------------------------------- sender

    async def _send_loop(self) -> None:
        wake = self._wake
        assert wake is not None  # noqa: S101 - invariant (type narrowing), not input validation
        if not await self._connect_with_retry():
            return
        while True:
            await wake.wait()
            wake.clear()
            lost, self._lost = self._lost, None
            if lost is not None:
                await self._recover(lost, b"")
            if self._buf:
                chunk = bytes(self._buf)
                self._buf.clear()
                try:
                    await self.send_audio(chunk)
                except ServiceError as exc:
                    await self._recover(exc, chunk)
                    continue  # resend what was put back before any finalize
            if self._finalize_pending:
                self._finalize_pending = False
                try:
                    await self.finalize()
                except ServiceError as exc:
                    await self._recover(exc, b"")

    async def _recover(self, exc: ServiceError, unsent: bytes) -> None:
        """The connection failed: report it, reconnect with backoff, resend what was not sent."""
        await self.push_service_error(exc, "stream failed")
        if not exc.retryable:
            return
        self._buf[:0] = unsent
        try:
            await self.disconnect()
        except ServiceError:
            pass
        if await self._connect_with_retry() and self._buf and self._wake is not None:
            self._wake.set()

    async def _connect_with_retry(self) -> bool:
        async def attempt(n: int) -> None:
            await self.connect()

        try:
            await retry_call(attempt, backoff=self.retry, deadline=Deadline(self.reconnect_timeout_secs),
                             what=f"{self.name} connect")
        except ServiceError as err:
            await self.push_service_error(err, "connect failed")
            return False
        await self._call_event_handler("on_connected")
        return True


class SegmentedSTTService(STTService):
    """Base of whole-utterance STT engines: one WAV per user turn to :meth:`run_stt`.

    Args:
        pre_roll_secs: Audio kept from before the start of speech (VAD start latency).
        max_segment_secs: Longest utterance kept (older audio is dropped).
        **kwargs: :class:`STTService` arguments.
    """

    capabilities = ServiceCapabilities(streaming=False, transport="http")

    def __init__(
        self, *, pre_roll_secs: float = 0.5, max_segment_secs: float = 30.0, merge_resumed: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pre_roll_secs = pre_roll_secs
        self.max_segment_secs = max_segment_secs
        self.merge_resumed = merge_resumed
        self._speaking = False
        self._limits = (0, 0)
        self._job: asyncio.Task[None] | None = None  # the segment's transcription, until it pushed
        self._job_pcm = b""  # that segment's audio (kept to re-transcribe a resumed utterance)
        self._muted_segment = False  # the current segment began while the STT was muted
        self.discarded = 0
        """Segment transcriptions dropped because the user went on (re-transcribed whole)."""

    def run_stt(self, wav: bytes) -> AsyncGenerator[str, None]:
        """Transcribe one utterance (a complete WAV); yield its final transcript(s)."""
        raise NotImplementedError

    async def start(self, frame: StartFrame) -> None:
        await AIService.start(self, frame)
        self.sample_rate = self._init_sample_rate or frame.audio_in_sample_rate
        bps = self.sample_rate * 2
        self._limits = (int(self.pre_roll_secs * bps) & ~1, int(self.max_segment_secs * bps) & ~1)

    async def stop(self, frame: EndFrame) -> None:
        await AIService.stop(self, frame)

    async def cancel(self, frame: CancelFrame) -> None:
        await AIService.cancel(self, frame)

    def feed_audio(self, audio: bytes) -> None:
        buf = self._buf
        buf += audio
        limit = self._limits[1] if self._speaking else self._limits[0]
        if len(buf) > limit:
            del buf[: len(buf) - limit]

    async def on_user_started_speaking(self) -> None:
        self._speaking = True
        self._muted_segment = self.muted
        job = self._job
        if job is not None and not job.done() and self.merge_resumed:
            # The user goes on before the last segment's transcript came: drop it, and keep its
            # audio (and the pause since, in the buffer) for one transcription of the whole.
            job.cancel()
            self._job = None
            self.discarded += 1
            self._buf[:0] = self._job_pcm
            self._job_pcm = b""

    async def on_user_stopped_speaking(self) -> None:
        if not self._speaking:
            return
        self._speaking = False
        pcm = bytes(self._buf)
        self._buf.clear()
        if not pcm or self._muted_segment:  # speech that began while muted is not transcribed
            return
        await self.start_ttfb_metrics()
        self._job_pcm = pcm
        self._job = self.create_task(self._transcribe(pcm_to_wav(pcm, self.sample_rate)), "stt_segment")

    async def _transcribe(self, wav: bytes) -> None:
        try:
            await self._transcribe_segment(wav)
        finally:
            if self._job is asyncio.current_task():
                self._job = None
                self._job_pcm = b""

    async def _transcribe_segment(self, wav: bytes) -> None:
        async def attempt(n: int) -> list[str]:
            return [t async for t in self.run_stt(wav)]

        try:
            texts = await retry_call(attempt, backoff=self.retry, deadline=Deadline(self.reconnect_timeout_secs),
                                     what=self.name)
        except ServiceError as exc:
            await self.push_service_error(exc, "transcription failed")
            return
        if self._job is asyncio.current_task():  # from here on the result is the turn's: no discarding
            self._job = None
            self._job_pcm = b""
        language = getattr(self.settings, "language", None)
        for text in texts:
            await self.push_transcription(text.strip(), final=True, language=language)
