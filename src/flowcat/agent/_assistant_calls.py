"""Function calls as the assistant half of the context aggregator pair keeps them, and the LLM runs
their results owe: once no call of its group that the model waits for is left (ungrouped: at once),
a result — or an async call's interim result — runs the LLM (``LLMContextFrame`` upstream) unless
told not to; owed to the user's turn while they speak, deferred to ``BotStoppedSpeakingFrame``
while the bot speaks. A result for a call not in progress is counted and logged, rate-limited."""

from __future__ import annotations

import logging
from typing import Any

from .._ratelimit import RateLimitedLog
from ..frames import FunctionCallCancelFrame, FunctionCallInterimResultFrame, FunctionCallResultFrame
from ..runtime import FrameDirection, FrameProcessor
from ._aggregator import ContextEditor
from ._tool_calls import ToolCalls

__all__ = ["AssistantFunctionCalls"]

logger = logging.getLogger("flowcat.agent")
_STRAY = RateLimitedLog(logger)

UPSTREAM = FrameDirection.UPSTREAM


class AssistantFunctionCalls(ContextEditor, FrameProcessor):
    """Function-call results and the LLM runs they owe (a base of
    :class:`~flowcat.agent.LLMAssistantAggregator`, whose constructor sets these fields)."""

    _tools: ToolCalls
    stray_results: int
    paired_user: Any
    _user_speaking: bool
    _bot_speaking: bool
    _push_when_bot_stops: bool
    _push_owed: bool
    _owed_at: int

    # ----------------------------------------------------------------- LLM runs

    async def _push_context(self) -> None:
        self._push_when_bot_stops = False
        self._push_owed = False
        await self.push_frame(self.context_frame(), UPSTREAM)

    def _owe_push(self) -> None:
        if not self._push_owed:
            self._push_owed = True
            self._owed_at = self.paired_user.llm_runs if self.paired_user is not None else 0

    async def _settle_owed_push(self) -> None:
        """The user's turn ended with a push owed: it is settled if the turn ran the LLM since."""
        if not self._push_owed or self.paired_user is None:
            return  # unpaired: stays owed until the next result or append, as in pipecat
        if self.paired_user.llm_runs > self._owed_at:
            self._push_owed = False  # that run saw the context as it stands
        else:
            await self._maybe_push_context()

    async def _maybe_push_context(self) -> None:
        """Run the LLM for an owed push, unless the user speaks (their turn will) or the bot does (later)."""
        if not self._push_owed or self._user_speaking:
            return
        if self._bot_speaking:
            self._push_when_bot_stops = True
            return
        await self._push_context()

    # ------------------------------------------------------------ function calls

    def _stray(self, frame: FunctionCallResultFrame | FunctionCallInterimResultFrame, state: str) -> None:
        self.stray_results += 1
        _STRAY(
            self.stray_results,
            "%s: result #%d for %s (%s) ignored: the call is %s",
            self,
            self.stray_results,
            frame.function_name,
            frame.tool_call_id,
            state,
        )

    def _result_runs_llm(self, frame: FunctionCallResultFrame | FunctionCallInterimResultFrame,
                         group_id: str | None) -> bool:
        if not frame.result:
            return False
        props = frame.properties
        if props is not None and props.run_llm is not None:
            return props.run_llm
        if frame.run_llm is not None:
            return frame.run_llm
        return not self._tools.holds_group(group_id, frame.tool_call_id)  # the last of its group runs it

    async def _on_call_result(self, frame: FunctionCallResultFrame) -> None:
        state = self._tools.state(frame.tool_call_id)
        if state != "running":
            self._stray(frame, state)
            return
        group_id = self._tools.group_of(frame.tool_call_id)
        self._tools.settle(frame.tool_call_id, frame.function_name, frame.result)
        await self._after_result(frame, group_id)

    async def _on_call_interim(self, frame: FunctionCallInterimResultFrame) -> None:
        state = self._tools.state(frame.tool_call_id)
        if state != "running":
            self._stray(frame, state)
            return
        if not frame.result:
            self._stray(frame, "running (its interim result is empty)")
            return
        self._tools.interim(frame.tool_call_id, frame.function_name, frame.result)
        await self._after_result(frame, self._tools.group_of(frame.tool_call_id))

    async def _after_result(self, frame: FunctionCallResultFrame | FunctionCallInterimResultFrame,
                            group_id: str | None) -> None:
        props = frame.properties
        if self._result_runs_llm(frame, group_id):
            self._owe_push()
        await self._maybe_push_context()
        if props is not None and props.on_context_updated is not None:
            self.create_task(props.on_context_updated(), f"{frame.function_name}:on_context_updated")

    async def _on_call_cancel(self, frame: FunctionCallCancelFrame) -> None:
        state = self._tools.state(frame.tool_call_id)
        group_id = self._tools.group_of(frame.tool_call_id)
        if state == "running":
            self._tools.settle(frame.tool_call_id, frame.function_name, None, cancelled=True)
        else:
            self._tools.forget(frame.tool_call_id)
        if (state != "unknown" and getattr(frame, "run_llm", False)
                and not self._tools.holds_group(group_id, frame.tool_call_id)):
            self._owe_push()
            await self._maybe_push_context()
