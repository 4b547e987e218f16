"""RealtimeResponses: the model's side of a speech-to-speech session, the base of
:class:`~flowcat.services.RealtimeLLMService` (which adds the pipeline's side: the caller's audio
up, turns, contexts, tool results).

A provider's :meth:`~flowcat.services.RealtimeLLMService.handle_event` calls the ``on_*`` methods
here: speech started and stopped (server VAD), the user's transcript, and a response's audio
(resampled to the pipeline's rate, between ``TTSStartedFrame`` and ``TTSStoppedFrame`` inside
``LLMFullResponseStartFrame`` … ``LLMFullResponseEndFrame``), its text, its tool calls and its end;
a barge-in cuts the model's history to what the caller heard and drops the rest of the response.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from ..audio import StreamResampler
from ..errors import ServiceError
from ..frames import (
    FunctionCallFromLLM,
    LLMContext,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    LLMTokenUsage,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from ..runtime import FrameDirection
from ._llm import _ToolAcc
from ._realtime_socket import RealtimeSocketService
from ._realtime_state import ConversationItem, PlaybackTracker

__all__ = ["RealtimeResponses"]

UPSTREAM = FrameDirection.UPSTREAM


class RealtimeResponses(RealtimeSocketService):
    """The model's side of a realtime session (see the module docstring); the event
    ``on_turn_done(service, usage)`` is registered here."""

    output_sample_rate: ClassVar[int] = 24000
    """The rate of the provider's audio."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._out_rs: StreamResampler | None = None
        self._out_rate = 24000
        self._playback = PlaybackTracker(self.output_sample_rate, _loop_time)  # no bound method: no cycle
        self._context: LLMContext | None = None
        self._response_id: str | None = None  # the response being pushed
        self._dropped: set[str] = set()  # responses cut by a barge-in: their late events are ignored
        self._tts_open = False
        self._asked_calls: list[FunctionCallFromLLM] = []
        self._user_speaking = False
        self._active = False  # the conversation has begun (speech, a turn committed, a response)
        self._register_event_handler("on_turn_done")

    # ---------------------------------------------------- provider seam (barge-in)

    def cancel_event(self, response_id: str | None) -> dict[str, Any] | None:
        """Cancel the running response (None: the provider has no such event)."""
        return None

    def truncate_event(self, item_id: str, audio_end_ms: int) -> dict[str, Any] | None:
        """Cut the model's audio item to what was heard (None: not supported)."""
        return None

    async def _barge_in(self) -> None:
        """The user spoke over the bot: cut the history to what was heard, drop the rest."""
        cut = self._playback.take()
        if cut is not None:
            event = self.truncate_event(*cut)
            if event is not None:
                await self.send_event(event)
        rid = self._response_id
        if rid is not None:
            self._dropped.add(rid)
            cancel = self.cancel_event(rid)
            if cancel is not None:
                await self.send_event(cancel)
            await self._end_response()
        self._asked_calls.clear()

    # -------------------------------------------------------- server event hooks

    async def on_speech_started(self) -> None:
        """Server VAD: the user started speaking (interrupts playback now)."""
        self._user_speaking = True
        self._active = True
        await self._barge_in()
        await self.broadcast_frame(UserStartedSpeakingFrame)
        await self.broadcast_interruption()

    async def on_speech_stopped(self) -> None:
        """Server VAD: the user stopped speaking (the response will follow)."""
        self._user_speaking = False
        await self.start_ttfb_metrics()
        await self.broadcast_frame(UserStoppedSpeakingFrame)

    async def on_user_transcript(self, text: str, item_id: str = "") -> None:
        """The final transcript of the user's input."""
        text = text.strip()
        if not text:
            return
        self.conversation.add(ConversationItem("user", text))
        await self.push_frame(TranscriptionFrame(text, user_id="", timestamp=_now_iso(), result=item_id), UPSTREAM)

    async def on_response_started(self, response_id: str) -> None:
        """A response begins."""
        if self._response_id is not None:
            await self._end_response()
        self._active = True
        self._response_id = response_id
        await self.push_frame(LLMFullResponseStartFrame())
        await self.start_processing_metrics()

    def _live(self, response_id: str | None) -> bool:
        return not (response_id and response_id in self._dropped)

    async def on_audio(self, response_id: str | None, item_id: str, pcm: bytes) -> None:
        """A chunk of the model's audio (PCM16 at :attr:`output_sample_rate`)."""
        if not self._live(response_id):
            return
        if self._response_id is None and response_id:
            await self.on_response_started(response_id)
        if not self._tts_open:
            self._tts_open = True
            await self.stop_ttfb_metrics()
            await self.push_frame(TTSStartedFrame(context_id=response_id))
        self._playback.audio(item_id, len(pcm))
        rs = self._out_rs
        out = rs.resample(pcm) if rs is not None else pcm
        if out:
            await self.push_frame(TTSAudioRawFrame(out, self._out_rate, 1, context_id=response_id))

    async def on_audio_done(self, response_id: str | None) -> None:
        """The model sent the last audio of its item."""
        if self._live(response_id):
            self._playback.done = True

    async def on_text(self, response_id: str | None, text: str, *, spoken: bool) -> None:
        """Text of the response: the transcript of its audio (``spoken``) or text output."""
        if not text or not self._live(response_id):
            return
        if spoken:
            llm = LLMTextFrame(text)
            llm.append_to_context = False
            await self.push_frame(llm)
            tts = TTSTextFrame(text, includes_inter_frame_spaces=True)
            tts.pts = self._playback.bytes_pushed * 500_000_000 // self.output_sample_rate
            await self.push_frame(tts)
        else:
            await self.push_frame(LLMTextFrame(text))

    async def on_text_done(self, response_id: str | None, text: str) -> None:
        """The whole text (or transcript) of one item of the response."""
        if self._live(response_id):
            self.conversation.add(ConversationItem("assistant", text))

    async def on_function_call(self, response_id: str | None, call_id: str, name: str, arguments: str) -> None:
        """The model asks for a tool call (run when its response is done)."""
        if not self._live(response_id):
            return
        self.conversation.add(ConversationItem("function_call", arguments or "{}", call_id, name))
        acc = _ToolAcc()  # the cascade's argument parsing, shared
        acc.id, acc.name, acc.args = call_id, name, [arguments]
        self._asked_calls.append(self._tool_call(acc, self._context or LLMContext()))

    async def on_response_done(self, response_id: str | None, status: str, usage: LLMTokenUsage | None) -> None:
        """The response ended (``completed``, ``cancelled``, ``failed``, ``incomplete``)."""
        if usage is not None:
            await self.start_llm_usage_metrics(usage)
        if response_id in self._dropped:
            self._dropped.discard(response_id)
            return
        calls, self._asked_calls = self._asked_calls, []
        await self._end_response()
        if calls:
            await self.run_function_calls(calls, self._llm_generation)
            return
        if self._renew_due:
            await self._renew()
        if status == "completed":
            await self._call_event_handler("on_turn_done", usage)

    async def on_provider_error(self, message: str, *, code: str = "", fatal: bool = False) -> None:
        """The provider reported an error (an ``ErrorFrame`` upstream, key masked)."""
        err = ServiceError(self.redact(f"{self.name}: provider error{' ' + code if code else ''}: {message}"))
        await self.push_service_error(err)
        await self._end_response()

    async def _end_response(self) -> None:
        if self._tts_open:
            self._tts_open = False
            rs = self._out_rs
            if rs is not None:
                rs.flush()
            await self.push_frame(TTSStoppedFrame(context_id=self._response_id))
        if self._response_id is not None:
            self._response_id = None
            await self.stop_processing_metrics()
            await self.push_frame(LLMFullResponseEndFrame())


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


def _now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
