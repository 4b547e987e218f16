"""The actions of an :class:`~flowcat.agent.AgentBrain` carried out as frames (see
:mod:`._brain_processor`): :class:`Say` as one streamed reply (``LLMFullResponseStartFrame`` →
``LLMTextFrame`` … → ``LLMFullResponseEndFrame``, muting the user for words that may not be
interrupted), :class:`SetVariable` / :class:`Transition` bookkeeping, :class:`CallTool` run
with its deadline (its :class:`ToolResult` queued), :class:`Transfer` and :class:`EndCall`."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..frames import (
    EndTaskFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TransferCallFrame,
    UninterruptibleSpeechFrame,
)
from ..runtime import FrameDirection
from ._brain import BrainCall, CallTool, EndCall, Say, SetVariable, ToolResult, Transfer, Transition
from ._brain_queue import BrainQueue

__all__ = ["BrainActions", "ToolHandler"]

logger = logging.getLogger("flowcat.agent.brain")

UPSTREAM = FrameDirection.UPSTREAM

ToolHandler = Callable[[Mapping[str, Any]], Awaitable[Any]]
"""A tool for :class:`CallTool`: ``async def tool(arguments) -> result`` (JSON-able)."""


class BrainActions(BrainQueue):
    """Carries out a brain's actions (the base of :class:`~flowcat.agent.BrainProcessor`, whose
    constructor sets these fields)."""

    call: BrainCall
    tools: dict[str, ToolHandler]
    tool_timeout_secs: float
    path: list[str]
    disposition: str | None
    transferred_to: str | None
    _uninterruptible: bool

    async def _apply(self, action: Any) -> None:
        if isinstance(action, Say):
            if not action.allow_interruptions and action.text.strip() and not self._uninterruptible:
                # The turn processor mutes the user until these words were played (the rest of
                # this reply included): no barge-in, the caller's words meanwhile are dropped.
                self._uninterruptible = True
                await self.push_frame(UninterruptibleSpeechFrame(active=True), UPSTREAM)
            await self._say(action.text)
        elif isinstance(action, SetVariable | Transition):
            await self._bookkeep(action)
        elif isinstance(action, CallTool):
            self.create_task(self._run_tool(action), "brain_tool", generation_bound=False)
        elif isinstance(action, Transfer):
            if action.say:
                await self._say(action.say)
            await self._close_reply()
            self.transferred_to = action.target
            await self.push_frame(TransferCallFrame(target=action.target))
            await self._call_event_handler("on_transfer", action.target)
        elif isinstance(action, EndCall):
            if action.say:
                await self._say(action.say)
            await self._close_reply()
            self._ending = True
            self.disposition = action.disposition
            self._disarm_silence()
            await self._call_event_handler("on_end_call", action.disposition)
            await self.push_frame(EndTaskFrame(reason="ended_by_agent"), UPSTREAM)

    async def _bookkeep(self, action: SetVariable | Transition) -> None:
        if isinstance(action, SetVariable):
            self.call.variables[action.name] = action.value
            await self._call_event_handler("on_variable_set", action.name, action.value)
        else:
            self.path.append(action.node)
            await self._call_event_handler("on_transition", action.node)

    async def _say(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        if not self._reply_open:
            self._reply_open = True
            self._reply_text = []
            await self.push_frame(LLMFullResponseStartFrame())
        await self.push_frame(LLMTextFrame(text=(" " + text) if self._reply_text else text))
        self._reply_text.append(text)

    async def _close_reply(self) -> None:
        if self._reply_open:
            self._reply_open = False
            await self.push_frame(LLMFullResponseEndFrame())
        await self._release_mute()

    async def _release_mute(self) -> None:
        if self._uninterruptible:
            self._uninterruptible = False
            await self.push_frame(UninterruptibleSpeechFrame(active=False), UPSTREAM)

    async def _run_tool(self, action: CallTool) -> None:
        handler = self.tools.get(action.name)
        result: Any = None
        error: str | None = None
        if handler is None:
            error = f"unknown tool {action.name!r}"
        else:
            try:
                async with asyncio.timeout(self.tool_timeout_secs):
                    out = handler(dict(action.arguments))
                    result = await out if inspect.isawaitable(out) else out
            except TimeoutError:
                error = f"the tool {action.name!r} timed out after {self.tool_timeout_secs:g} s"
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        if error:
            logger.warning("brain: call %s: tool %s: %s", self.call.call_id, action.name, error)
        self._enqueue(ToolResult(action.tool_call_id, action.name, result, error))
