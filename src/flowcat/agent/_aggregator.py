"""What both context aggregators share: text joining, context edits, event messages."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..frames import (
    LLMContext,
    LLMContextFrame,
    LLMMessagesAppendFrame,
    LLMMessagesTransformFrame,
    LLMMessagesUpdateFrame,
    LLMSetToolChoiceFrame,
    LLMSetToolsFrame,
)
from ..services.adapters import normalize_tools

__all__ = [
    "AssistantThoughtMessage",
    "AssistantTurnStoppedMessage",
    "ContextEditor",
    "EDIT_FRAMES",
    "TextParts",
    "UserTurnMessageAddedMessage",
    "UserTurnStoppedMessage",
    "now_iso",
    "set_tool_result",
    "to_json",
    "tool_call_messages",
]

EDIT_FRAMES = (
    LLMMessagesAppendFrame,
    LLMMessagesUpdateFrame,
    LLMMessagesTransformFrame,
    LLMSetToolsFrame,
    LLMSetToolChoiceFrame,
)
"""The context-editing frames :meth:`ContextEditor.apply_edit` applies."""

TOOLS_ADDED = (
    "These functions are now available and may be called: {names}. Earlier functions stay available."
)
TOOLS_REMOVED = (
    "These functions were withdrawn and must not be called: {names}. You will be told if they come back."
)


def now_iso() -> str:
    """Now, UTC, ISO 8601 with milliseconds and a ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class UserTurnStoppedMessage:
    """``on_user_turn_stopped``: what the user said in the turn (None: nothing) and when it began."""

    content: str | None
    timestamp: str
    user_id: str | None = None


@dataclass
class UserTurnMessageAddedMessage:
    """``on_user_turn_message_added``: the user message written to the context."""

    content: str
    timestamp: str
    user_id: str | None = None


@dataclass
class AssistantThoughtMessage:
    """``on_assistant_thought``: the reasoning text of one thought, and when it began."""

    content: str
    timestamp: str


@dataclass
class AssistantTurnStoppedMessage:
    """``on_assistant_turn_stopped``: the reply as committed (``""``: nothing), whether it was cut."""

    content: str
    interrupted: bool
    timestamp: str


class TextParts:
    """Text pieces joined the way they were produced.

    LLM tokens carry their own spacing (``spaced=True``: concatenated as they are);
    transcriptions and spoken words do not (``spaced=False``: joined by one space).
    Where a spaced run meets an unspaced one, a space is added unless one is there.
    """

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[tuple[str, bool]] = []

    def append(self, text: str, spaced: bool) -> None:
        """Add a piece (empty pieces are ignored)."""
        if text:
            self._parts.append((text, spaced))

    def __bool__(self) -> bool:
        return bool(self._parts)

    def clear(self) -> None:
        """Forget every piece."""
        self._parts.clear()

    def text(self) -> str:
        """The joined text, stripped."""
        out: list[str] = []
        last_spaced = False
        for piece, spaced in self._parts:
            if out:
                if not spaced and not last_spaced:
                    out.append(" ")
                elif spaced != last_spaced and not out[-1][-1:].isspace() and not piece[:1].isspace():
                    out.append(" ")
            out.append(piece)
            last_spaced = spaced
        return "".join(out).strip()


class ContextEditor:
    """Context edits shared by both halves (a mixin: needs ``_context`` and ``_tool_change``)."""

    _context: LLMContext
    _tool_change: bool

    @property
    def context(self) -> LLMContext:
        """The shared context."""
        return self._context

    @property
    def messages(self) -> list[Any]:
        """A copy of the context's messages."""
        return list(self._context.messages)

    def add_messages(self, messages: list[Any]) -> None:
        """Append messages."""
        self._context.add_messages(messages)

    def set_messages(self, messages: list[Any]) -> None:
        """Replace the messages."""
        self._context.set_messages(messages)

    def transform_messages(self, transform: Callable[[list[Any]], list[Any]]) -> None:
        """Replace the messages with ``transform(copy of the messages)``."""
        self._context.set_messages(list(transform(list(self._context.messages))))

    def set_tools(self, tools: Any) -> None:
        """Replace the tools (normalised); with tool-change messages on, announce the difference."""
        new = normalize_tools(tools)
        if self._tool_change:
            old = normalize_tools(self._context.tools)
            before = old.names() if old is not None else set()
            after = new.names() if new is not None else set()
            notes = []
            if after - before:
                notes.append(TOOLS_ADDED.format(names=_names(after - before)))
            if before - after:
                notes.append(TOOLS_REMOVED.format(names=_names(before - after)))
            if notes:
                self._context.add_message({"role": "developer", "content": " ".join(notes)})
        self._context.set_tools(new)

    def set_tool_choice(self, tool_choice: Any) -> None:
        """Set the tool choice."""
        self._context.set_tool_choice(tool_choice)

    def context_frame(self) -> LLMContextFrame:
        """A frame carrying the shared context (runs the LLM where it arrives)."""
        return LLMContextFrame(context=self._context)

    def apply_edit(self, frame: Any) -> bool | None:
        """Apply a context-editing frame; returns its ``run_llm`` (None for tools frames)."""
        cls = type(frame)
        if cls is LLMMessagesAppendFrame:
            self.add_messages(frame.messages)
        elif cls is LLMMessagesUpdateFrame:
            self.set_messages(frame.messages)
        elif cls is LLMMessagesTransformFrame:
            self.transform_messages(frame.transform)
        elif cls is LLMSetToolsFrame:
            self.set_tools(frame.tools)
            return None
        elif cls is LLMSetToolChoiceFrame:
            self.set_tool_choice(frame.tool_choice)
            return None
        return bool(frame.run_llm)


def _names(names: set[str]) -> str:
    return ", ".join(f"`{n}`" for n in sorted(names))


def to_json(value: Any, *, keep_str: bool = True) -> str:
    """JSON text for a value; a string is kept as it is when ``keep_str`` (arguments already in JSON)."""
    if keep_str and isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return json.dumps(str(value), ensure_ascii=False)


def tool_call_messages(tool_call_id: str, function_name: str, arguments: Any) -> list[dict[str, Any]]:
    """The assistant ``tool_calls`` message of one call and its ``tool`` message, ``"IN_PROGRESS"``."""
    fn = {"name": function_name, "arguments": to_json(arguments)}
    return [
        {"role": "assistant", "tool_calls": [{"id": tool_call_id, "type": "function", "function": fn}]},
        {"role": "tool", "content": "IN_PROGRESS", "tool_call_id": tool_call_id},
    ]


def set_tool_result(context: LLMContext, tool_call_id: str, content: str) -> None:
    """Put ``content`` in the ``tool`` message of ``tool_call_id``."""
    for message in context.messages:
        if (
            isinstance(message, dict)
            and message.get("role") == "tool"
            and message.get("tool_call_id") == tool_call_id
        ):
            message["content"] = content
