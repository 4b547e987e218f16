"""The provider-neutral LLM context carried by :class:`LLMContextFrame`."""

from __future__ import annotations

from typing import Any

__all__ = ["LLMContext"]


class LLMContext:
    """OpenAI-style conversation state: messages, tools and tool choice.

    Args:
        messages: Initial messages (``{"role": ..., "content": ...}`` dicts).
        tools: Tool definitions (provider-neutral schema or None).
        tool_choice: ``"auto"``, ``"none"``, ``"required"``, a specific tool, or None.
    """

    __slots__ = ("_messages", "tool_choice", "tools")

    def __init__(
        self,
        messages: list[dict[str, Any]] | None = None,
        tools: Any = None,
        tool_choice: Any = None,
    ) -> None:
        self._messages: list[dict[str, Any]] = list(messages or [])
        self.tools = tools
        self.tool_choice = tool_choice

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The live message list."""
        return self._messages

    def get_messages(self) -> list[dict[str, Any]]:
        """A shallow copy of the messages."""
        return list(self._messages)

    def add_message(self, message: dict[str, Any]) -> None:
        """Append one message."""
        self._messages.append(message)

    def add_messages(self, messages: list[dict[str, Any]]) -> None:
        """Append several messages."""
        self._messages.extend(messages)

    def set_messages(self, messages: list[dict[str, Any]]) -> None:
        """Replace all messages."""
        self._messages[:] = messages

    def set_tools(self, tools: Any) -> None:
        """Replace the tools."""
        self.tools = tools

    def set_tool_choice(self, tool_choice: Any) -> None:
        """Set the tool choice."""
        self.tool_choice = tool_choice

    def __repr__(self) -> str:
        return f"LLMContext(messages={len(self._messages)}, tools={self.tools is not None})"
