"""LLMUserAggregator: the user half of the context aggregator pair.

It is :class:`~flowcat.turns.UserTurnProcessor` (turn start/stop, mute, barge-in,
idle) plus the context: final transcriptions let through during a turn are
aggregated (and not passed on; interim ones and translations are dropped too),
and when the turn ends the text is written to the context as one ``user``
message and an ``LLMContextFrame`` goes downstream *before* the
``UserStoppedSpeakingFrame``. With ``ExternalUserTurnStrategies`` it runs no turn
logic of its own and follows the ``UserStarted/StoppedSpeakingFrame`` that reach it
(from a ``UserTurnProcessor`` earlier in the pipeline, or an STT that reports turns).

It also applies ``LLMRunFrame`` / ``LLMMessagesAppendFrame`` / ``LLMMessagesUpdateFrame`` /
``LLMMessagesTransformFrame`` (pushing an ``LLMContextFrame`` when they ask to run
the LLM), ``LLMSetToolsFrame`` (applied, then passed on) and ``LLMSetToolChoiceFrame``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    FunctionCallCancelFrame,
    FunctionCallResultFrame,
    FunctionCallsStartedFrame,
    InterimTranscriptionFrame,
    LLMContext,
    LLMContextFrame,
    LLMContextUserTurnFrame,
    LLMRunFrame,
    LLMSetToolsFrame,
    RealtimeServiceMetadataFrame,
    TranscriptionFrame,
    TranslationFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from ..runtime import FrameDirection, FrameProcessor
from ..turns import (
    ExternalUserTurnStrategies,
    InterruptionParams,
    UserMuteStrategy,
    UserTurnProcessor,
    UserTurnSpeculation,
    UserTurnStrategies,
)
from ._aggregator import (
    EDIT_FRAMES,
    ContextEditor,
    TextParts,
    UserTurnMessageAddedMessage,
    UserTurnStoppedMessage,
    now_iso,
)
from ._empty_turn import EmptyUserTurnConfig
from ._realtime_mode import RealtimeLink, recommend_realtime_mode

__all__ = ["LLMUserAggregator", "LLMUserAggregatorParams"]

logger = logging.getLogger("flowcat.agent")

DOWNSTREAM = FrameDirection.DOWNSTREAM

_EDITS = frozenset({LLMRunFrame, *EDIT_FRAMES})


# Dropped while muted when following external turns (the turn processor's own list covers the rest).
_MUTED_WHEN_FOLLOWING = frozenset(
    {TranscriptionFrame, InterimTranscriptionFrame, UserStartedSpeakingFrame, UserStoppedSpeakingFrame}
)


@dataclass
class LLMUserAggregatorParams:
    """How the user half decides turns and writes them (pipecat's field names).

    Attributes:
        add_tool_change_messages: On ``LLMSetToolsFrame``, add a ``developer`` message
            naming the tools added and removed.
        user_turn_strategies: Start/stop strategies (None: VAD or transcription start,
            0.6 s speech-timeout stop); ``ExternalUserTurnStrategies()`` follows turn
            frames from upstream instead.
        user_mute_strategies: The user is muted while any of these says so.
        user_turn_stop_timeout: Fallback (s): a turn with no speech or transcription
            for this long ends.
        user_idle_timeout: Seconds without user speech before ``on_user_turn_idle`` (0: off).
        interruption: Barge-in parameters (flowcat's; see ``docs/turns.md``).
        enable_interruptions: Whether a user turn interrupts the bot.
        empty_user_turn: How to answer a turn that ends with no transcript (None: never).
        preemptive_generation: Start the LLM on a predicted end of turn (a provisional
            context, ``LLMContextFrame(speculation=True)``) and answer the turn with it once
            the turn ends; put a ``flowcat.turns.PreemptiveGate`` right after the LLM so its
            output is held until then and dropped when the user goes on (docs/turns.md).
    """

    add_tool_change_messages: bool = False
    user_turn_strategies: UserTurnStrategies | None = None
    user_mute_strategies: list[UserMuteStrategy] = field(default_factory=list)
    user_turn_stop_timeout: float = 5.0
    user_idle_timeout: float = 0.0
    interruption: InterruptionParams | None = None
    enable_interruptions: bool = True
    empty_user_turn: EmptyUserTurnConfig | None = field(default_factory=EmptyUserTurnConfig)
    preemptive_generation: bool = False


class LLMUserAggregator(ContextEditor, UserTurnProcessor):
    """Writes what the user says in each turn into the context and runs the LLM on it.

    Events (besides ``UserTurnProcessor``'s ``on_user_idle``, ``on_user_mute_started``,
    ``on_user_mute_stopped``):

    * ``on_user_turn_started(aggregator, strategy)`` (``strategy`` is None in flowcat);
    * ``on_user_turn_stopped(aggregator, strategy, UserTurnStoppedMessage)``;
    * ``on_user_turn_message_added(aggregator, UserTurnMessageAddedMessage)`` and its
      alias ``on_user_message_added``: a user message was written to the context;
    * ``on_user_turn_idle(aggregator)``.

    Args:
        context: The context shared with the assistant half.
        params: See :class:`LLMUserAggregatorParams`.
        **kwargs: Passed to :class:`~flowcat.FrameProcessor`.
    """

    def __init__(
        self, context: LLMContext, *, params: LLMUserAggregatorParams | None = None, **kwargs: Any
    ) -> None:
        params = params or LLMUserAggregatorParams()
        strategies = params.user_turn_strategies
        self._external = isinstance(strategies, ExternalUserTurnStrategies)
        super().__init__(
            start_strategies=strategies.start if strategies is not None and not self._external else None,
            stop_strategies=strategies.stop if strategies is not None and not self._external else None,
            mute_strategies=params.user_mute_strategies,
            interruption=params.interruption,
            enable_interruptions=params.enable_interruptions,
            user_turn_stop_timeout=params.user_turn_stop_timeout,
            user_idle_timeout=params.user_idle_timeout,
            preemptive_generation=params.preemptive_generation,
            **kwargs,
        )
        self._context = context
        self._tool_change = params.add_tool_change_messages
        self.params = params
        self._parts = TextParts()
        self._turn_timestamp = ""
        self._turn_content: str | None = None
        self._ext_in_turn = False
        self._bot_busy = True  # speaking, or a reply is on its way; True until its first speech ends
        self._calls_running: set[str] = set()
        self._turn_cut_bot = False
        self._result_in_turn = False  # a tool result arrived since the turn began: its rerun answers
        self._empty_recoveries = 0
        if self._external:  # no turn logic: a process_frame of its own (the class's stays lean for audio)
            self.process_frame = self._process_following  # type: ignore[method-assign]
        self.llm_runs = 0
        """How many times this half has pushed the context to run the LLM."""
        self._rt: RealtimeLink | None = None  # set by the pair in realtime-service mode
        for event in ("on_user_turn_message_added", "on_user_message_added", "on_user_turn_idle"):
            self._register_event_handler(event)

    @property
    def role(self) -> str:
        """``"user"``."""
        return "user"

    def aggregation_string(self) -> str:
        """The text aggregated in this turn so far."""
        return self._parts.text()

    # ---------------------------------------------------------------- frames

    async def _pass_other_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Context edits, translations and the end of the call (audio never comes here)."""
        cls = type(frame)
        if cls in _EDITS:
            await self._on_edit(frame, direction)
            return
        if cls is TranslationFrame:
            return
        if cls is EndFrame or cls is CancelFrame:
            await self._flush_at_end()
        elif cls is RealtimeServiceMetadataFrame:
            if self._rt is None:
                recommend_realtime_mode(frame.service_name)  # type: ignore[attr-defined]
        elif cls is BotStartedSpeakingFrame:
            self._bot_busy = True
        elif cls is BotStoppedSpeakingFrame:
            self._bot_busy = False
        elif cls is FunctionCallsStartedFrame:
            self._calls_running.update(c.tool_call_id for c in frame.function_calls)  # type: ignore[attr-defined]
        elif cls is FunctionCallResultFrame or cls is FunctionCallCancelFrame:
            self._calls_running.discard(frame.tool_call_id)  # type: ignore[attr-defined]
            self._result_in_turn = self._result_in_turn or cls is FunctionCallResultFrame
        await self.push_frame(frame, direction)

    async def _process_following(self, frame: Frame, direction: FrameDirection) -> None:
        """``process_frame`` when following external turns (bound in ``__init__``)."""
        await FrameProcessor.process_frame(self, frame, direction)
        cls = type(frame)
        muted = self._muted
        if cls in self._mute_triggers:
            await self._update_mute(frame)
        if muted and cls in _MUTED_WHEN_FOLLOWING:
            return
        if cls is TranscriptionFrame or cls is InterimTranscriptionFrame:
            await self._pass_user_text(frame, direction)
        elif cls is UserStartedSpeakingFrame and not self._ext_in_turn:
            self._ext_in_turn = True
            await self.push_frame(frame, direction)
            await self._user_turn_started()
        elif cls is UserStoppedSpeakingFrame and self._ext_in_turn:
            self._ext_in_turn = False
            await self._user_turn_ending()
            await self.push_frame(frame, direction)
            await self._user_turn_stopped()
        else:
            await self._pass_other_frame(frame, direction)

    async def _on_edit(self, frame: Frame, direction: FrameDirection) -> None:
        if type(frame) is LLMRunFrame:
            await self._run_llm()
            return
        run_llm = self.apply_edit(frame)
        if type(frame) is LLMSetToolsFrame:
            await self.push_frame(frame, direction)  # the assistant half and live services see it too
        elif run_llm:
            await self._run_llm()

    async def _run_llm(self) -> None:
        """Push the context downstream (the LLM runs on it)."""
        self.llm_runs += 1
        self._bot_busy = True  # a reply is on its way
        await self.push_frame(self.context_frame(), DOWNSTREAM)

    # ------------------------------------------------------- turn hooks

    async def _pass_user_text(self, frame: Frame, direction: FrameDirection) -> None:
        rt = self._rt
        if rt is not None and rt.config.trailing:
            await self._realtime_user_text(frame, rt)
            return
        if isinstance(frame, TranscriptionFrame) and frame.append_to_context:
            text = frame.text.strip()
            if text:
                self._parts.append(text, spaced=False)

    async def _user_turn_started(self) -> None:
        self._turn_timestamp = now_iso()
        self._turn_content = None
        self._turn_cut_bot = self.enable_interruptions and (self._bot_busy or bool(self._calls_running))
        self._result_in_turn = False
        await self._call_event_handler("on_user_turn_started", None)

    async def _user_turn_speculated(self, speculation: UserTurnSpeculation) -> None:
        """Run the LLM on a provisional copy of the context with the words heard so far."""
        if not self._parts:
            return
        ctx = self._context
        provisional = type(ctx)(
            [*ctx.messages, {"role": "user", "content": self._parts.text()}], ctx.tools, ctx.tool_choice
        )
        self.llm_runs += 1
        await self.push_frame(
            LLMContextFrame(context=provisional, speculation=True, generation_id=speculation.generation_id),
            DOWNSTREAM,
        )

    async def _user_turn_ending(self) -> None:
        rt = self._rt
        if rt is not None and rt.config.trailing:
            self._turn_content = None  # written trailing (realtime-service mode)
            return
        # A confirmed speculation already answers this turn: write it, do not run the LLM again.
        confirmed = self.confirmed_speculation is not None
        if confirmed:
            self._bot_busy = True  # the held reply is released now
        self._turn_content = await self._write_user_turn(run_llm=not confirmed)
        if self._turn_content:
            self._empty_recoveries = 0
        else:
            await self._maybe_answer_empty_turn()

    async def _maybe_answer_empty_turn(self) -> None:
        """A turn without a transcript: prompt the LLM once if its case has a prompt."""
        config = self.params.empty_user_turn
        if config is None or self._muted or self._calls_running or self._result_in_turn:
            return  # a tool result runs the LLM (or will)
        prompt = config.interrupted_prompt if self._turn_cut_bot else config.idle_prompt
        if not prompt or self._empty_recoveries >= config.max_consecutive_recoveries:
            return
        self._empty_recoveries += 1
        self._context.add_message({"role": "developer", "content": prompt})
        await self._run_llm()

    async def _user_turn_stopped(self) -> None:
        message = UserTurnStoppedMessage(content=self._turn_content, timestamp=self._turn_timestamp)
        self._turn_content = None
        await self._call_event_handler("on_user_turn_stopped", None, message)

    async def _user_idle(self, retry: int) -> None:
        await super()._user_idle(retry)
        await self._call_event_handler("on_user_turn_idle")

    async def _write_user_turn(self, *, run_llm: bool) -> str | None:
        """Write the aggregated text as a user message; push an LLMContextFrame if ``run_llm``."""
        if not self._parts:
            return None
        text = self._parts.text()
        self._parts.clear()
        self._context.add_message({"role": "user", "content": text})
        await self.broadcast_frame(LLMContextUserTurnFrame, text=text, timestamp=self._turn_timestamp)
        if run_llm:
            await self._run_llm()
        message = UserTurnMessageAddedMessage(content=text, timestamp=self._turn_timestamp)
        await self._call_event_handler("on_user_turn_message_added", message)
        await self._call_event_handler("on_user_message_added", message)
        return text

    async def _flush_at_end(self) -> None:
        """At the end of the call, text still held goes into the context (the LLM is not run)."""
        if self._rt is not None and self._rt.config.trailing:
            await self.flush()
            return
        text = await self._write_user_turn(run_llm=False)
        if text:
            message = UserTurnStoppedMessage(content=text, timestamp=self._turn_timestamp)
            await self._call_event_handler("on_user_turn_stopped", None, message)

    async def reset(self) -> None:
        """Drop the text aggregated so far."""
        self._parts.clear()

    # ------------------------------------------------------- realtime-service mode

    def stop_waiting_for_transcripts(self) -> None:
        """Turn-end strategies end a turn on the audio alone (realtime-service mode's default)."""
        for s in self._stop:
            if hasattr(s, "wait_for_transcript"):
                s.wait_for_transcript = False

    async def flush(self) -> str | None:
        """Write the text held as a user message now (realtime-service mode's trailing write)."""
        rt = self._rt
        if rt is None:
            return await self._write_user_turn(run_llm=False)
        async with rt.lock:
            return await self._flush_locked()

    async def _flush_locked(self) -> str | None:
        return await self._write_user_turn(run_llm=False)

    async def _realtime_user_text(self, frame: Frame, rt: RealtimeLink) -> None:
        """A transcript in realtime-service mode: the first after an assistant turn writes that
        turn's message; one arriving while the assistant already answers is written at once."""
        if not isinstance(frame, TranscriptionFrame) or not frame.append_to_context:
            return
        text = frame.text.strip()
        if not text:
            return
        async with rt.lock:
            assistant = rt.assistant
            if assistant is not None and assistant.trailing_pending:
                await assistant._flush_locked()
            self._parts.append(text, spaced=False)
            if assistant is not None and assistant.turn_open:
                await self._flush_locked()

    def _detach(self) -> None:
        super()._detach()
        self.__dict__.pop("process_frame", None)  # the bound _process_following (external turns): a cycle
        if self._rt is not None:
            self._rt.detach()
