"""RealtimeLLMService: the base of the speech-to-speech (realtime) services.

One WebSocket carries the caller's audio up and the model's audio, transcripts and
tool calls down. A provider module supplies the wire (the URL and headers, the
session and other client events, and :meth:`RealtimeLLMService.handle_event` for the
server's events, which calls the ``on_*`` methods of :mod:`._realtime_responses`, the model's side
that this class extends); the base does the rest:

* **audio** in at the provider's input rate and out at the pipeline's output rate,
  resampled at the edges (:class:`~flowcat.audio.StreamResampler`), out as
  ``TTSAudioRawFrame`` between ``TTSStartedFrame`` and ``TTSStoppedFrame`` inside
  ``LLMFullResponseStartFrame`` … ``LLMFullResponseEndFrame``;
* **turns**: with server VAD the provider's speech start interrupts playback at
  once (an ``InterruptionFrame`` both ways) and ``UserStarted/StoppedSpeakingFrame``
  are broadcast (use ``ExternalUserTurnStrategies`` or the aggregator pair's
  realtime-service mode); with local turns (``server_vad=False``) the service
  follows ``UserStarted/StoppedSpeakingFrame`` from a turn processor: the end of a
  turn commits the audio and asks for a response, a start (or an interruption)
  cancels the response;
* **transcripts** both ways: the user's as ``TranscriptionFrame`` pushed upstream
  (towards the user aggregator), the model's as ``TTSTextFrame`` (with ``pts`` = the
  audio pushed before it, so the assistant aggregator keeps only words played) plus
  an ``LLMTextFrame`` not appended to the context (observers, RTVI);
* **function calls** through the same machinery as the cascade
  (:mod:`._functions`: generation-bound, cancelled by an interruption); a result
  goes straight back to the model, which answers once no call is left running;
* **barge-in truncation**: the model's history is cut to what the caller heard
  (:class:`._realtime_state.PlaybackTracker`);
* **session limits** and reconnection: :mod:`._realtime_socket` (the socket, the
  provider's wire seam and the session lifecycle: :class:`RealtimeSocketService`, which this
  class extends) opens a fresh session before the provider's cap or on demand, re-sending
  the session config and the conversation as text items, and reconnects a dropped socket;
* **usage**: ``LLMTokenUsage`` with the audio and text tokens apart; TTFB from the
  end of the user's speech to the first audio.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp

from ..audio import StreamResampler
from ..errors import ServiceError
from ..frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    FunctionCallResultProperties,
    InputAudioRawFrame,
    LLMContext,
    LLMContextFrame,
    LLMSetToolsFrame,
    RealtimeServiceMetadataFrame,
    StartFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from ..runtime import FrameDirection
from ._ai_service import ServiceCapabilities, ServiceSettings
from ._realtime_responses import RealtimeResponses
from ._realtime_state import ConversationItem

__all__ = ["RealtimeLLMService", "RealtimeLLMSettings"]

DOWNSTREAM = FrameDirection.DOWNSTREAM


@dataclass
class RealtimeLLMSettings(ServiceSettings):
    """Settings every speech-to-speech service has (providers add theirs).

    Attributes:
        instructions: The system prompt (None: the first context's system messages).
        voice: The voice.
        server_vad: The provider detects turns (True) or the pipeline does (False).
    """

    instructions: str | None = None
    voice: str | None = None
    server_vad: bool = True


class RealtimeLLMService(RealtimeResponses):
    """Base of the speech-to-speech services (see the module docstring).

    Arguments and events are those of :class:`RealtimeSocketService`, plus the event
    ``on_turn_done(service, usage)`` when a response ended the model's turn (completed, no
    tool call pending; ``usage`` the response's ``LLMTokenUsage`` or None). The model's side
    (the ``on_*`` hooks, the barge-in cut) is :class:`._realtime_responses.RealtimeResponses`.
    """

    capabilities = ServiceCapabilities(function_calling=True, parallel_tool_calls=True, transport="websocket")
    input_sample_rate: ClassVar[int] = 24000
    """The rate the provider takes the caller's audio at (the rate of its audio:
    :attr:`output_sample_rate`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._in_rs: StreamResampler | None = None
        self._context_applied = False
        self._results_sent: set[str] = set()  # results sent since the last response.create
        self._turn_audio = False  # audio went up since the last commit (local turns)

    def _busy(self) -> bool:
        return self._response_id is not None or bool(self._asked_calls)

    # ------------------------------------------------------- provider seam (turns)

    def audio_message(self, b64: str) -> str:
        """The text message carrying a chunk of the caller's audio (base64 PCM16)."""
        raise NotImplementedError

    def commit_events(self) -> list[dict[str, Any]]:
        """The end of a user turn with local turns: commit the audio, ask for a response."""
        raise NotImplementedError

    def response_event(self) -> dict[str, Any] | None:
        """Ask the model to respond (None: nothing to send, the model answers by itself)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- lifecycle

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        self._out_rate = frame.audio_out_sample_rate
        self._in_rs = StreamResampler(frame.audio_in_sample_rate, self.input_sample_rate)
        self._out_rs = StreamResampler(self.output_sample_rate, self._out_rate)
        await self.broadcast_frame(RealtimeServiceMetadataFrame, service_name=self.name,
                                   server_turns=self._server_vad)
        try:
            await self._open(renewal=False)
        except ServiceError as exc:
            await self.push_service_error(exc, "connect failed")

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        await self._close()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._close()

    @property
    def _server_vad(self) -> bool:
        return bool(getattr(self._settings, "server_vad", True))

    # ------------------------------------------------------------------ frames

    async def handle_frame(self, frame: Frame, direction: FrameDirection) -> None:
        cls = type(frame)
        if cls is InputAudioRawFrame or isinstance(frame, InputAudioRawFrame):
            await self._send_audio(frame)  # type: ignore[arg-type]
            return
        if cls is LLMContextFrame:
            await self._apply_context(frame.context)  # type: ignore[attr-defined]
            return
        if cls is BotStartedSpeakingFrame:
            self._playback.playback_started()
        elif cls is BotStoppedSpeakingFrame:
            self._playback.playback_stopped()
        elif cls is UserStartedSpeakingFrame and direction is DOWNSTREAM and not self._server_vad:
            await self._barge_in()
        elif cls is UserStoppedSpeakingFrame and direction is DOWNSTREAM and not self._server_vad:
            await self._commit_turn()
        elif cls is LLMSetToolsFrame and self._context is not None:
            self._context.set_tools(frame.tools)  # type: ignore[attr-defined]
            await self.update_session()
        await self.push_frame(frame, direction)

    async def on_interruption(self) -> None:
        await super().on_interruption()
        await self._barge_in()

    async def on_settings_changed(self, changed: dict[str, Any]) -> None:
        await self.update_session()

    async def _send_audio(self, frame: InputAudioRawFrame) -> None:
        ws = self._ws
        rs = self._in_rs
        if ws is None or rs is None:
            return  # not connected (yet, or reconnecting): the audio is lost
        if rs.in_rate != frame.sample_rate:
            rs = self._in_rs = StreamResampler(frame.sample_rate, self.input_sample_rate)
        pcm = rs.resample(frame.audio)
        if not pcm:
            return
        try:
            if self.binary_audio:
                await ws.send_bytes(pcm)
            else:
                await ws.send_str(self.audio_message(base64.b64encode(pcm).decode("ascii")))
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            return  # the receive loop reports the lost connection
        self._turn_audio = True

    async def _apply_context(self, context: LLMContext) -> None:
        """The first context, if it comes before the conversation began, seeds it and asks for
        a response (a greeting); later ones only carry what the aggregators wrote from this
        service's own output (the tools are kept for the session)."""
        self._context = context
        if self._context_applied:
            return
        self._context_applied = True
        if self._active:
            # The conversation began without it (a cascade-style aggregator's context at a turn's
            # end): its messages came from this session already, and the model answers by itself.
            return
        before = len(self.conversation.items)
        self.conversation.add_messages(list(context.messages))
        added = self.conversation.items[before:]
        if context.tools or any(i.role == "system" for i in added):
            await self.update_session()  # the tools and instructions go with the session
        for item in added:
            for event in self.item_events(item):
                await self.send_event(event)
        await self._request_response()

    async def _commit_turn(self) -> None:
        """Local turns: the user stopped speaking."""
        if not self._turn_audio:
            return
        self._turn_audio = False
        self._active = True
        await self.start_ttfb_metrics()
        for event in self.commit_events():
            await self.send_event(event)

    async def _request_response(self) -> None:
        self._results_sent.clear()
        await self.start_ttfb_metrics()
        event = self.response_event()
        if event is not None:
            await self.send_event(event)

    # ------------------------------------------------------------ tool results

    async def _push_interim(self, call: Any, result: Any, properties: FunctionCallResultProperties) -> None:
        # The provider takes one output per call: an interim one would be taken as the result.
        await self.push_error(f"{self._name}: interim result of {call.function_name} dropped: a realtime "
                              "service takes only a call's final result")

    async def _push_result(self, call: Any, result: Any, properties: FunctionCallResultProperties | None) -> None:
        await super()._push_result(call, result, properties)
        output = result if isinstance(result, str) else json.dumps(result, default=str)
        self.conversation.add(ConversationItem("function_call_output", output, call.tool_call_id))
        for event in self.item_events(ConversationItem("function_call_output", output, call.tool_call_id)):
            await self.send_event(event)
        self._results_sent.add(call.tool_call_id)
        run_llm = properties.run_llm if properties is not None and properties.run_llm is not None else True
        others = [c for c in self.function_calls_in_progress if c != call.tool_call_id]
        if run_llm and not others and not self._user_speaking:
            await self._request_response()
