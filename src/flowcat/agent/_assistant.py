"""LLMAssistantAggregator: the assistant half of the context aggregator pair.

Put it after the output transport, so what reaches it is what the bot said. It
aggregates the text of a reply (``LLMFullResponseStart`` … ``End``, or a TTS
utterance outside a reply) and commits it as one ``assistant`` message. Timed
words (``TTSTextFrame`` with ``pts``) count once the bot audio sent before them
reaches their time (:mod:`._spoken`): an interrupted reply keeps the words played.

Function calls (their messages: :mod:`._tool_calls`; the LLM runs their results owe:
:mod:`._assistant_calls`): once no call of its group that the
model waits for is left (ungrouped: at once), a result — or an async call's interim
result — runs the LLM (``LLMContextFrame`` upstream) unless told not to; owed to the
user's turn while they speak, deferred to ``BotStoppedSpeakingFrame`` while the bot speaks.

Context summarization (:mod:`._summary`, asked for in :mod:`._assistant_summary`):
``enable_auto_context_summarization`` folds older messages into a summary when the context
passes a bound; ``LLMSummarizeContextFrame`` asks at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..frames import (
    BotSpeakingFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    FunctionCallCancelFrame,
    FunctionCallInProgressFrame,
    FunctionCallInterimResultFrame,
    FunctionCallResultFrame,
    FunctionCallsStartedFrame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMAssistantPushAggregationFrame,
    LLMContext,
    LLMContextAssistantTimestampFrame,
    LLMContextAssistantTurnFrame,
    LLMContextSummaryResultFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMMessagesAppendFrame,
    LLMRunFrame,
    LLMSummarizeContextFrame,
    LLMTextFrame,
    LLMThoughtEndFrame,
    LLMThoughtStartFrame,
    LLMThoughtTextFrame,
    OutputAudioRawFrame,
    TextFrame,
    TranscriptionFrame,
    TranslationFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    UserSpeakingFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from ..runtime import FrameDirection
from ..services.adapters import LLMSpecificMessage
from ._aggregator import (
    EDIT_FRAMES,
    AssistantThoughtMessage,
    AssistantTurnStoppedMessage,
    TextParts,
    now_iso,
)
from ._assistant_calls import AssistantFunctionCalls
from ._assistant_summary import AssistantSummaries
from ._realtime_mode import RealtimeLink
from ._spoken import SpokenWords
from ._summary import ContextSummarizer, LLMAutoContextSummarizationConfig
from ._tool_calls import ToolCalls

__all__ = ["LLMAssistantAggregator", "LLMAssistantAggregatorParams"]

DOWNSTREAM = FrameDirection.DOWNSTREAM

_NOT_ASSISTANT_TEXT = (TranscriptionFrame, InterimTranscriptionFrame, TranslationFrame)
_EVENTS = (
    "on_assistant_turn_started",
    "on_assistant_turn_stopped",
    "on_assistant_message_added",
    "on_assistant_thought",
    "on_summary_applied",
)


@dataclass
class LLMAssistantAggregatorParams:
    """How the assistant half writes the context.

    Attributes:
        add_tool_change_messages: On ``LLMSetToolsFrame``, add a ``developer`` message
            naming the tools added and removed.
        enable_auto_context_summarization: Fold older messages into a summary when the context
            passes a bound of ``auto_context_summarization_config``.
        auto_context_summarization_config: The bounds and how a summary is made (None: defaults).
    """

    add_tool_change_messages: bool = False
    enable_auto_context_summarization: bool = False
    auto_context_summarization_config: LLMAutoContextSummarizationConfig | None = None


class LLMAssistantAggregator(AssistantSummaries, AssistantFunctionCalls):
    """Commits what the bot said, and the function calls it made, to the context.

    Events: ``on_assistant_turn_started(aggregator)``,
    ``on_assistant_turn_stopped(aggregator, AssistantTurnStoppedMessage)`` (every turn,
    also an empty or interrupted one), ``on_assistant_message_added(aggregator,
    AssistantTurnStoppedMessage)`` (only when a message was written) and
    ``on_summary_applied(aggregator, summarizer, SummaryAppliedEvent)``.

    Args:
        context: The context shared with the user half.
        params: See :class:`LLMAssistantAggregatorParams`.
        **kwargs: Passed to :class:`~flowcat.FrameProcessor`.
    """

    inline_frames: ClassVar[tuple[type[Frame], ...]] = (
        OutputAudioRawFrame,
        InputAudioRawFrame,
        BotSpeakingFrame,
        UserSpeakingFrame,
    )
    """Passed straight through with a plain call: the bot's sent audio crosses this half at 50 frames/s."""

    def process_inline(self, frame: Frame, direction: FrameDirection) -> Frame:
        """Pass audio and speaking ticks on; sent bot audio advances the spoken-word clock."""
        if frame.__class__ is TTSAudioRawFrame:
            self._words.audio(frame, self._parts)
        return frame

    def __init__(
        self, context: LLMContext, *, params: LLMAssistantAggregatorParams | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        params = params or LLMAssistantAggregatorParams()
        self._context = context
        self._tool_change = params.add_tool_change_messages
        self.params = params
        self._parts = TextParts()
        self._words = SpokenWords()
        self._turn_timestamp = ""  # "" while no assistant turn is open
        self._in_response = False  # between LLMFullResponseStart and End
        self._tools = ToolCalls(context)
        self._user_speaking = False
        self._bot_speaking = False
        self._push_when_bot_stops = False
        self._push_owed = False
        self.stray_results = 0
        """Results ignored because their call was not in progress (bad input, logged rate-limited)."""
        self._owed_at = 0  # the user half's run count when the push became owed
        self._thought = TextParts()
        self._thought_keep: str | None = None  # adapter id when the thought goes into the context
        self._thought_timestamp = ""
        self.paired_user: Any = None
        """The user half (set by the pair): lets a push owed during a user turn be settled."""
        self._rt: RealtimeLink | None = None  # set by the pair in realtime-service mode
        self._pending_turn: AssistantTurnStoppedMessage | None = None  # closed, not yet written (trailing)
        self.summarizer = ContextSummarizer(
            context, params.auto_context_summarization_config,
            auto_trigger=params.enable_auto_context_summarization,
        )
        """The context summarizer (:class:`~flowcat.agent.ContextSummarizer`)."""
        for event in _EVENTS:
            self._register_event_handler(event)

    @property
    def role(self) -> str:
        """``"assistant"``."""
        return "assistant"

    @property
    def has_function_calls_in_progress(self) -> bool:
        """Whether a function call announced to us has not settled yet."""
        return bool(self._tools.calls)

    def aggregation_string(self) -> str:
        """The reply text aggregated so far."""
        return self._parts.text()

    # ---------------------------------------------------------------- frames

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Aggregate the reply, keep function-call state, apply context edits."""
        await super().process_frame(frame, direction)
        if isinstance(frame, TextFrame) and not isinstance(frame, _NOT_ASSISTANT_TEXT):
            if not frame.append_to_context:
                return
            if isinstance(frame, TTSTextFrame):
                self._words.add(frame.pts, frame.text, self._parts, frame.includes_inter_frame_spaces)
            else:
                self._parts.append(frame.text, spaced=isinstance(frame, LLMTextFrame))
            return
        cls = type(frame)
        if cls is LLMFullResponseStartFrame:
            self._in_response = True
            self._push_owed = False
            await self._open_turn(restart=True)
            if self.summarizer.auto_trigger and self.summarizer.due():
                await self._request_summary(None)
        elif cls is LLMFullResponseEndFrame:
            self._in_response = False
            await self._close_turn(interrupted=False)
        elif cls is TTSStartedFrame:
            self._words.start_context(self._parts)
            await self._open_turn(restart=False)
            await self.push_frame(frame, direction)
        elif cls is TTSStoppedFrame:
            self._words.release_all(self._parts)
            if not self._in_response:  # a spoken TTSSpeakFrame: its utterance is the turn
                await self._close_turn(interrupted=False)
            await self.push_frame(frame, direction)
        elif cls is LLMAssistantPushAggregationFrame:
            await self._close_turn(interrupted=False)
        elif cls is InterruptionFrame:
            self._in_response = False
            self.summarizer.interrupted()
            await self._close_turn(interrupted=True)
            self._push_when_bot_stops = False
            self._push_owed = False
            await self.push_frame(frame, direction)
        elif cls is EndFrame or cls is CancelFrame:
            await self._close_turn(interrupted=cls is CancelFrame)
            if self._rt is not None:
                await self.flush()
            await self.push_frame(frame, direction)
        elif cls is LLMThoughtStartFrame:
            self._thought.clear()
            self._thought_keep = frame.llm if frame.append_to_context else None  # type: ignore[attr-defined]
            self._thought_timestamp = now_iso()
        elif cls is LLMThoughtTextFrame:
            self._thought.append(frame.text, spaced=True)  # type: ignore[attr-defined]
        elif cls is LLMThoughtEndFrame:
            await self._end_thought(frame.signature)  # type: ignore[attr-defined]
        elif cls is LLMRunFrame:
            await self._push_context()
        elif cls is LLMContextSummaryResultFrame:
            await self._summary_result(frame)  # type: ignore[arg-type]
        elif cls is LLMSummarizeContextFrame:
            await self._request_summary(frame.config)  # type: ignore[attr-defined]
        elif isinstance(frame, EDIT_FRAMES):
            run_llm = self.apply_edit(frame)
            if run_llm and cls is LLMMessagesAppendFrame:
                self._owe_push()
                await self._maybe_push_context()
            elif run_llm:
                await self._push_context()
        elif cls is FunctionCallsStartedFrame:
            self._tools.announced((c.tool_call_id for c in frame.function_calls),  # type: ignore[attr-defined]
                                  frame.group_id)  # type: ignore[attr-defined]
        elif cls is FunctionCallInProgressFrame:
            self._tools.in_progress(frame)  # type: ignore[arg-type]
        elif cls is FunctionCallResultFrame:
            await self._on_call_result(frame)  # type: ignore[arg-type]
        elif cls is FunctionCallCancelFrame:
            await self._on_call_cancel(frame)  # type: ignore[arg-type]
        elif cls is FunctionCallInterimResultFrame:
            await self._on_call_interim(frame)  # type: ignore[arg-type]
        else:
            if cls is UserStartedSpeakingFrame:
                self._user_speaking = True
            elif cls is UserStoppedSpeakingFrame:
                self._user_speaking = False
                await self.push_frame(frame, direction)
                await self._settle_owed_push()
                return
            elif cls is BotStartedSpeakingFrame:
                self._bot_speaking = True
            elif cls is BotStoppedSpeakingFrame:
                self._bot_speaking = False
                await self.push_frame(frame, direction)
                if self._push_when_bot_stops and not self._user_speaking:
                    await self._push_context()
                return
            await self.push_frame(frame, direction)

    # ------------------------------------------------------------------ turns

    async def _open_turn(self, *, restart: bool) -> None:
        if self._turn_timestamp and not restart:
            return
        rt = self._rt
        if rt is not None and rt.config.trailing and rt.user is not None:
            async with rt.lock:  # the assistant's first content: the user's message goes in first
                await rt.user._flush_locked()
        self._turn_timestamp = now_iso()
        await self._call_event_handler("on_assistant_turn_started")

    async def _close_turn(self, *, interrupted: bool) -> None:
        rt = self._rt
        if rt is not None and rt.config.trailing:
            await self._close_turn_trailing(interrupted=interrupted)
            return
        if interrupted:
            self._words.drop()
        else:
            self._words.release_all(self._parts)
        if not self._turn_timestamp:
            self._parts.clear()
            return
        timestamp, self._turn_timestamp = self._turn_timestamp, ""
        text = await self.push_aggregation()
        message = AssistantTurnStoppedMessage(content=text, interrupted=interrupted, timestamp=timestamp)
        await self._call_event_handler("on_assistant_turn_stopped", message)
        if text:
            await self._call_event_handler("on_assistant_message_added", message)
            await self.broadcast_frame(LLMContextAssistantTurnFrame, text=text, timestamp=timestamp)

    # ------------------------------------------------------- realtime-service mode

    @property
    def turn_open(self) -> bool:
        """Whether an assistant turn is open (its content is arriving)."""
        return bool(self._turn_timestamp)

    @property
    def trailing_pending(self) -> bool:
        """Realtime-service mode: a closed turn whose message is not written yet."""
        return self._pending_turn is not None and not self._turn_timestamp

    async def _close_turn_trailing(self, *, interrupted: bool) -> None:
        """The turn ends; its message is written later (the next user transcript, or the end)."""
        if interrupted:
            self._words.drop()
        else:
            self._words.release_all(self._parts)
        if not self._turn_timestamp:
            return
        timestamp, self._turn_timestamp = self._turn_timestamp, ""
        message = AssistantTurnStoppedMessage(content=self._parts.text(), interrupted=interrupted,
                                              timestamp=timestamp)
        if self._pending_turn is None or interrupted:
            self._pending_turn = message
        await self._call_event_handler("on_assistant_turn_stopped", message)

    async def flush(self) -> str:
        """Write the held reply as an assistant message now (realtime-service mode's trailing write)."""
        rt = self._rt
        if rt is None:
            return await self.push_aggregation()
        async with rt.lock:
            return await self._flush_locked()

    async def _flush_locked(self) -> str:
        pending, self._pending_turn = self._pending_turn, None
        text = await self.push_aggregation()
        if text:
            message = AssistantTurnStoppedMessage(
                content=text, interrupted=pending.interrupted if pending is not None else False,
                timestamp=pending.timestamp if pending is not None else now_iso())
            await self._call_event_handler("on_assistant_message_added", message)
            await self.broadcast_frame(LLMContextAssistantTurnFrame, text=text, timestamp=message.timestamp)
        return text

    async def push_aggregation(self) -> str:
        """Commit the aggregated text as an assistant message now (``""``: nothing held)."""
        if not self._parts:
            return ""
        text = self._parts.text()
        self._parts.clear()
        if not text:
            return ""
        self._context.add_message({"role": "assistant", "content": text})
        await self.push_frame(self.context_frame(), DOWNSTREAM)
        await self.push_frame(LLMContextAssistantTimestampFrame(timestamp=now_iso()), DOWNSTREAM)
        return text

    async def reset(self) -> None:
        """Drop the text aggregated so far."""
        self._parts.clear()

    async def _end_thought(self, signature: Any) -> None:
        text = self._thought.text()
        self._thought.clear()
        if self._thought_keep is not None:
            record = {"type": "thought", "text": text, "signature": signature}
            self._context.add_message(LLMSpecificMessage(llm=self._thought_keep, message=record))  # type: ignore[arg-type]
        self._thought_keep = None
        await self._call_event_handler(
            "on_assistant_thought", AssistantThoughtMessage(content=text, timestamp=self._thought_timestamp)
        )
