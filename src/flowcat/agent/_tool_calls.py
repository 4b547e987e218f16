"""The function calls of the assistant half: their context messages, from announcement to result.

A call announced by ``FunctionCallsStartedFrame`` gets its messages when its
``FunctionCallInProgressFrame`` arrives: the assistant ``tool_calls`` message and a
``tool`` message holding a placeholder — ``"IN_PROGRESS"``, or for an *async* call
(``cancel_on_interruption=False``, which goes on while the conversation does) a note
telling the model the result will come later. The result (``"COMPLETED"`` when empty)
or ``"CANCELLED"`` replaces the placeholder — unless the user has spoken since the
placeholder was written (only async calls live that long): the history is then left as
the model saw it, and the outcome arrives as a new ``developer`` message.

An async call may report interim results (``FunctionCallInterimResultFrame``): each is a
``developer`` message naming the call; the call stays running, and once one was written its
outcome also arrives as a ``developer`` message (after the interim ones, not above them).

Groups (``group_id``, one per LLM response with ``group_parallel_tools``): a result runs the
LLM once no other call of its group that the model waits for is left — announced calls and
running synchronous ones; a running async call does not hold its group back. Ungrouped
results run the LLM each.

A ``FunctionCallCancelFrame`` is a system frame and the in-progress frame is not: with a
processor between the LLM and this half that holds data frames (a TTS synthesising "let me
check..."), the cancel can arrive first. The call is then remembered as cancelled and its
late in-progress frame writes nothing, so no ``IN_PROGRESS`` placeholder is left for the
rest of the call (pipecat #5779, #3661).
"""

from __future__ import annotations

from typing import Any

from ..frames import FunctionCallInProgressFrame, LLMContext
from ._aggregator import set_tool_result, to_json, tool_call_messages

__all__ = ["ASYNC_TOOL_PLACEHOLDER", "ToolCalls"]

ASYNC_TOOL_PLACEHOLDER = (
    "Still running: the result will be given to you in a later message. Do not call this tool "
    "again for it and do not make up a result meanwhile."
)
_INTERIM = (
    "The `{name}` call {id} is still running. A partial result: {result}. More may follow: do not call "
    "it again for this and do not take this as its final result."
)
_LATE_RESULT = "The `{name}` call {id} that was still running has finished. Its result: {result}"
_LATE_CANCEL = (
    "The `{name}` call {id} that was still running was cancelled and will return nothing. "
    "If the user is waiting for it, tell them it did not complete."
)


class ToolCalls:
    """The calls announced and not settled, and their messages in ``context``."""

    __slots__ = ("_cancelled_early", "_context", "_groups", "_interim", "calls")

    def __init__(self, context: LLMContext) -> None:
        self._context = context
        self.calls: dict[str, FunctionCallInProgressFrame | None] = {}
        """Announced calls by id; None until in progress."""
        self._groups: dict[str, str] = {}  # call id -> group id (grouped calls only)
        self._interim: set[str] = set()  # calls that reported an interim result
        self._cancelled_early: dict[str, None] = {}  # cancelled before in progress (ordered, bounded)

    def announced(self, tool_call_ids: Any, group_id: str | None = None) -> None:
        """``FunctionCallsStartedFrame``: these calls will run (as one group when ``group_id``)."""
        for tool_call_id in tool_call_ids:
            self.calls.setdefault(tool_call_id, None)
            if group_id is not None:
                self._groups[tool_call_id] = group_id

    def group_of(self, tool_call_id: str) -> str | None:
        """The group of a call (None: ungrouped)."""
        return self._groups.get(tool_call_id)

    def holds_group(self, group_id: str | None, tool_call_id: str) -> bool:
        """Whether a call of ``group_id`` other than ``tool_call_id`` is one the LLM waits for."""
        if group_id is None:
            return False
        for other, frame in self.calls.items():
            if other == tool_call_id or self._groups.get(other) != group_id:
                continue
            if frame is None or frame.cancel_on_interruption:
                return True
        return False

    def interim(self, tool_call_id: str, name: str, result: Any) -> None:
        """An interim result of a running async call: a ``developer`` message."""
        self._interim.add(tool_call_id)
        text = to_json(result, keep_str=True)
        self._context.add_message(
            {"role": "developer", "content": _INTERIM.format(name=name, id=tool_call_id, result=text)}
        )

    def in_progress(self, frame: FunctionCallInProgressFrame) -> None:
        """A call runs: its ``tool_calls`` message and its placeholder (none if it was cancelled already)."""
        if frame.tool_call_id in self._cancelled_early:
            del self._cancelled_early[frame.tool_call_id]
            return
        args = frame.arguments if frame.arguments is not None else {}
        messages = tool_call_messages(frame.tool_call_id, frame.function_name, args)
        if not frame.cancel_on_interruption:
            messages[1]["content"] = ASYNC_TOOL_PLACEHOLDER
        self._context.add_messages(messages)
        self.calls[frame.tool_call_id] = frame
        if frame.group_id is not None:
            self._groups[frame.tool_call_id] = frame.group_id

    def state(self, tool_call_id: str) -> str:
        """``"running"``, ``"announced"`` (not in progress yet) or ``"unknown"``."""
        if tool_call_id not in self.calls:
            return "unknown"
        return "announced" if self.calls[tool_call_id] is None else "running"

    def settle(self, tool_call_id: str, name: str, result: Any, *, cancelled: bool = False) -> None:
        """Write the outcome of a running call (see the module doc) and forget it."""
        frame = self.calls.pop(tool_call_id, None)
        self._groups.pop(tool_call_id, None)
        had_interim = tool_call_id in self._interim
        self._interim.discard(tool_call_id)
        if frame is None:
            return
        content = "CANCELLED" if cancelled else (to_json(result, keep_str=False) if result else "COMPLETED")
        if not frame.cancel_on_interruption and (had_interim or self._user_spoke_since(tool_call_id)):
            note = _LATE_CANCEL if cancelled else _LATE_RESULT
            self._context.add_message(
                {"role": "developer", "content": note.format(name=name, id=tool_call_id, result=content)}
            )
            return
        set_tool_result(self._context, tool_call_id, content)

    def forget(self, tool_call_id: str) -> None:
        """A call cancelled before it was in progress: it never had messages, and gets none."""
        self.calls.pop(tool_call_id, None)
        self._groups.pop(tool_call_id, None)
        self._cancelled_early[tool_call_id] = None
        if len(self._cancelled_early) > 64:  # in-progress frames that never came
            del self._cancelled_early[next(iter(self._cancelled_early))]

    def _user_spoke_since(self, tool_call_id: str) -> bool:
        seen = False
        messages: list[Any] = self._context.messages  # vendor messages may be mixed in
        for message in messages:
            if not isinstance(message, dict):
                continue
            if seen and message.get("role") == "user":
                return True
            if message.get("role") == "tool" and message.get("tool_call_id") == tool_call_id:
                seen = True
        return not seen  # the placeholder is gone (the history was rewritten): do not edit it
