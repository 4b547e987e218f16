"""BrainProcessor: one :class:`~flowcat.agent.AgentBrain` per call, in place of the LLM.

A cascaded pipeline with a brain::

    transport.input() → VAD → STT → UserTurnProcessor → BrainProcessor → TTS → transport.output()

Frames become brain events at turn granularity:

* ``StartFrame`` → :class:`CallStarted`;
* the final ``TranscriptionFrame`` s between ``UserStartedSpeakingFrame`` and
  ``UserStoppedSpeakingFrame`` (the turn processor decides both) → one :class:`UserTurn`;
  a transcript outside a turn (text input, no turn processor) is a turn by itself;
* ``InputDTMFFrame`` presses, gathered until ``#`` or ``dtmf_timeout_secs`` → :class:`Dtmf`;
* nothing from the user for ``silence_timeout_secs`` after the bot finished → :class:`Silence`
  (``count`` in a row; one timer per call, re-armed);
* an ``InterruptionFrame`` while the bot spoke → :class:`BotInterrupted` (before the next
  event), with the text of the reply the assistant aggregator committed if one comes
  upstream (``LLMContextAssistantTurnFrame``), else the text sent to the TTS;
* ``EndFrame`` / ``CancelFrame`` → :class:`CallEnded` (its actions are not carried out).

Actions become frames: :class:`Say` s stream as ``LLMFullResponseStartFrame`` →
``LLMTextFrame`` … → ``LLMFullResponseEndFrame`` (one reply per event, as an LLM's, so the
TTS and the aggregators behave); :class:`EndCall` says its words, then pushes
``EndTaskFrame`` upstream (the ``EndFrame`` that follows drains behind the words);
:class:`Transfer` says its words, then pushes ``TransferCallFrame`` downstream;
:class:`CallTool` runs a registered tool and feeds its :class:`ToolResult` back;
:class:`SetVariable` / :class:`Transition` update :attr:`BrainCall.variables` and
:attr:`BrainProcessor.path` and fire ``on_variable_set`` / ``on_transition``.

Events run strictly one at a time, in a call-owned task (never on the per-frame path); a
barge-in abandons the stream being carried out (the brain's generator is closed). A
brain that raises, misses its deadline or yields something that is not an action gets
the spoken ``fallback_text``; the failure is logged with the call id and the call goes on.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import aclosing
from typing import Any

from ..errors import ProcessorError
from ..frames import (
    BotSpeakingFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMContextAssistantTurnFrame,
    StartFrame,
    TranscriptionFrame,
    UserSpeakingFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from ..runtime import FrameDirection
from ._brain import (
    AgentBrain,
    BotInterrupted,
    BrainCall,
    BrainEvent,
    CallEnded,
    CallStarted,
    CallTool,
    EndCall,
    Say,
    SetVariable,
    Transfer,
    Transition,
    UserTurn,
)
from ._brain_actions import BrainActions, ToolHandler

__all__ = ["BrainProcessor", "ToolHandler"]

logger = logging.getLogger("flowcat.agent.brain")

UPSTREAM = FrameDirection.UPSTREAM

_ACTIONS = (Say, SetVariable, Transition, CallTool, Transfer, EndCall)


class BrainProcessor(BrainActions):
    """Runs an :class:`AgentBrain` for the call this pipeline serves.

    Args:
        brain: The brain, or a factory ``(BrainCall) -> AgentBrain`` called at the start.
        call: The call's :class:`BrainCall` (default: a fresh id, no variables).
        tools: Tools for :class:`CallTool`, by name (more with :meth:`register_tool`).
        silence_timeout_secs: Seconds of silence after the bot stops before a
            :class:`Silence` event (None: never).
        first_action_timeout_secs: Deadline from an event to the brain's first action.
        action_timeout_secs: Deadline between the brain's later actions.
        tool_timeout_secs: Deadline of a tool call (then a ToolResult with an error).
        fallback_text: Said when the brain fails, is late or yields a non-action.
        dtmf_timeout_secs: Pause that ends a run of keys.
        dtmf_terminator: Key that ends a run at once (kept in ``digits``).
        empty_turns: Send user turns with no transcript (noise) as ``UserTurn("")``.
        drain_timeout_secs: At ``EndFrame``, how long the events already queued may still
            run (their words go out ahead of the ``EndFrame``); ``CancelFrame`` drops them.
    """

    # The per-frame traffic (audio, speaking ticks) passes straight through (no process_frame).
    inline_frames = (InputAudioRawFrame, UserSpeakingFrame, BotSpeakingFrame)

    def __init__(
        self,
        brain: AgentBrain | Callable[[BrainCall], AgentBrain],
        *,
        call: BrainCall | None = None,
        tools: Mapping[str, ToolHandler] | None = None,
        silence_timeout_secs: float | None = 10.0,
        first_action_timeout_secs: float = 8.0,
        action_timeout_secs: float = 30.0,
        tool_timeout_secs: float = 30.0,
        fallback_text: str = "Sorry, I didn't get that. Could you say it again?",
        dtmf_timeout_secs: float = 1.5,
        dtmf_terminator: str = "#",
        empty_turns: bool = False,
        drain_timeout_secs: float = 3.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.call = call or BrainCall(call_id=uuid.uuid4().hex[:12])
        self._brain_spec = brain
        self.brain: AgentBrain | None = brain if isinstance(brain, AgentBrain) else None
        self.tools: dict[str, ToolHandler] = dict(tools or {})
        self.silence_timeout_secs = silence_timeout_secs
        self.first_action_timeout_secs = first_action_timeout_secs
        self.action_timeout_secs = action_timeout_secs
        self.tool_timeout_secs = tool_timeout_secs
        self.fallback_text = fallback_text
        self.dtmf_timeout_secs = dtmf_timeout_secs
        self.dtmf_terminator = dtmf_terminator
        self.empty_turns = empty_turns
        self.drain_timeout_secs = drain_timeout_secs
        #: The states the brain moved through (:class:`Transition`), in order.
        self.path: list[str] = []
        #: The disposition of the :class:`EndCall` that ended the call, if any.
        self.disposition: str | None = None
        #: Where the call was transferred (:class:`Transfer`), if it was.
        self.transferred_to: str | None = None
        self.end_reason: str | None = None
        self._queue: deque[BrainEvent] = deque()
        self._wake: asyncio.Event | None = None
        self._idle_evt = asyncio.Event()  # set while the worker waits with nothing queued
        self._held_end: EndFrame | None = None
        self._worker: asyncio.Task[None] | None = None
        self._current: asyncio.Task[None] | None = None
        self._in_turn = False
        self._turn_text: list[str] = []
        self._turn_lang: str | None = None
        self._turn_barged = False
        self._bot_speaking = False
        self._reply_open = False
        self._reply_text: list[str] = []
        self._uninterruptible = False  # an UninterruptibleSpeechFrame(active=True) went upstream
        self._pending_interrupt: str | None = None
        self._silence: asyncio.TimerHandle | None = None
        self._silence_count = 0
        self._dtmf: list[str] = []
        self._dtmf_timer: asyncio.TimerHandle | None = None
        self._ending = False
        self._finished = False
        for name in ("on_variable_set", "on_transition", "on_transfer", "on_end_call", "on_brain_error"):
            self._register_event_handler(name)

    def register_tool(self, name: str, handler: ToolHandler) -> None:
        """Make ``handler`` answer :class:`CallTool` actions named ``name``."""
        self.tools[name] = handler

    # ------------------------------------------------------------ frames

    def process_inline(self, frame: Frame, direction: FrameDirection) -> Any:
        return frame

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, EndFrame) and frame is not self._held_end and self._busy():
            # Graceful end: let the events already queued finish first (their words go out
            # ahead of the EndFrame), then take the EndFrame back in (bounded).
            self._held_end = frame
            self.create_task(self._release_end(frame), "brain_end", generation_bound=False)
            return
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            if frame.text.strip():
                if self._in_turn:
                    self._turn_text.append(frame.text.strip())
                    self._turn_lang = frame.language or self._turn_lang
                else:
                    self._silence_count = 0
                    self._enqueue(UserTurn(frame.text.strip(), frame.language, self._bot_speaking))
            return
        if isinstance(frame, InterimTranscriptionFrame):
            return
        if isinstance(frame, UserStartedSpeakingFrame):
            self._in_turn = True
            self._turn_text = []
            self._turn_lang = None
            self._turn_barged = self._bot_speaking
            self._disarm_silence()
        elif isinstance(frame, UserStoppedSpeakingFrame):
            if self._in_turn:
                self._in_turn = False
                text = " ".join(self._turn_text)
                self._turn_text = []
                if text or self.empty_turns:
                    if text:
                        self._silence_count = 0
                    self._enqueue(UserTurn(text, self._turn_lang, self._turn_barged))
                else:
                    self._arm_silence()
        elif isinstance(frame, InputDTMFFrame):
            self._on_key(str(frame.button.value))
        elif isinstance(frame, InterruptionFrame):
            self._on_barge_in()
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
            self._disarm_silence()
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
            self._arm_silence()
        elif isinstance(frame, LLMContextAssistantTurnFrame) and direction is UPSTREAM:
            if self._pending_interrupt is not None:
                self._pending_interrupt = frame.text
        await self.push_frame(frame, direction)

    # ------------------------------------------------------------ lifecycle

    async def start(self, frame: StartFrame) -> None:
        if self.brain is None:
            factory = self._brain_spec
            assert callable(factory)  # noqa: S101 - invariant (type narrowing), not input validation
            self.brain = factory(self.call)
        self._wake = asyncio.Event()
        self._enqueue(CallStarted(self.call))
        self._worker = self.create_task(self._work(), "brain", generation_bound=False)

    async def stop(self, frame: EndFrame) -> None:
        reason = "transferred" if self.transferred_to else "ended_by_agent" if self._ending else "hangup"
        await self._finish(frame.reason if isinstance(frame.reason, str) and frame.reason else reason)

    def _busy(self) -> bool:
        worker = self._worker
        return worker is not None and not worker.done() and not self._idle_evt.is_set()

    async def _release_end(self, frame: EndFrame) -> None:
        try:
            async with asyncio.timeout(self.drain_timeout_secs):
                await self._idle_evt.wait()
        except TimeoutError:
            logger.info("brain: call %s: events still running at the end; dropped", self.call.call_id)
        await self.queue_frame(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        await self._finish("cancelled")

    async def _finish(self, reason: str) -> None:
        if self._finished:
            return
        self._finished = True
        self.end_reason = reason
        self._disarm_silence()
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
        for task in (self._current, self._worker):
            if task is not None:
                await self.cancel_task(task)
        brain = self.brain
        if brain is None:
            return
        try:
            async with asyncio.timeout(2.0), aclosing(brain.handle(CallEnded(reason))) as actions:  # type: ignore[type-var]
                async for action in actions:
                    if isinstance(action, SetVariable | Transition):
                        await self._bookkeep(action)
        except Exception as exc:
            logger.warning("brain: call %s: CallEnded failed: %r", self.call.call_id, exc)
        try:
            await brain.close()
        except Exception as exc:
            logger.warning("brain: call %s: close failed: %r", self.call.call_id, exc)

    # ------------------------------------------------------------ events

    async def _work(self) -> None:
        assert self._wake is not None  # noqa: S101 - invariant (type narrowing), not input validation
        while True:
            while not self._queue:
                self._wake.clear()
                self._idle_evt.set()
                await self._wake.wait()
            event = self._queue.popleft()
            if self._pending_interrupt is not None:
                spoken, self._pending_interrupt = self._pending_interrupt, None
                await self._run(BotInterrupted(spoken))
            await self._run(event)
            if self._ending:
                self._idle_evt.set()
                return
            self._arm_silence()

    async def _run(self, event: BrainEvent) -> None:
        # Bound to the current interruption generation (a fresh context: the worker's own
        # task is unbound), so a barge-in cancels it and drops what it pushes late.
        task = contextvars.Context().run(self.create_task, self._drive(event), "brain_event",
                                         cancel_on_interruption=True)
        self._current = task
        try:
            await asyncio.wait((task,))
        finally:
            self._current = None

    async def _drive(self, event: BrainEvent) -> None:
        assert self.brain is not None  # noqa: S101 - invariant (type narrowing), not input validation
        self._reply_text = []
        first = True
        try:
            async with aclosing(self.brain.handle(event)) as actions:  # type: ignore[type-var]
                while not self._ending:
                    limit = self.first_action_timeout_secs if first else self.action_timeout_secs
                    try:
                        async with asyncio.timeout(limit):
                            action = await anext(actions)
                    except StopAsyncIteration:
                        break
                    first = False
                    if not isinstance(action, _ACTIONS):
                        raise ProcessorError(f"not an action: {action!r}")
                    await self._apply(action)
        except asyncio.CancelledError:
            self._reply_open = False  # the interruption reset the TTS
            await self._release_mute()
            raise
        except TimeoutError:
            await self._fallback(event, "no action within the deadline")
        except Exception as exc:
            await self._fallback(event, repr(exc))
        await self._close_reply()

    async def _fallback(self, event: BrainEvent, why: str) -> None:
        logger.warning("brain: call %s: %s failed (%s); saying the fallback",
                       self.call.call_id, type(event).__name__, why)
        await self._call_event_handler("on_brain_error", event, why)
        if self.fallback_text and not self._ending:
            await self._say(self.fallback_text)
