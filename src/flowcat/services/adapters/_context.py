"""The provider-neutral LLM context: messages, tools, tool choice, vendor messages.

:class:`LLMContext` extends :class:`flowcat.frames.LLMContext` (what an
``LLMContextFrame`` carries), so it travels in the same frames. It adds tool
normalisation (a list of schemas becomes a :class:`~flowcat.services.adapters.ToolsSchema`),
:class:`LLMSpecificMessage` (a message in one vendor's own shape, kept out of the
other vendors' requests), message transforms and helpers for multimodal content.

Messages are OpenAI Chat Completions dicts: ``{"role": "system" | "developer" |
"user" | "assistant" | "tool", "content": str | [parts], ...}``; an assistant
message may carry ``tool_calls`` and a tool message a ``tool_call_id``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...frames import LLMContext as _BaseContext
from ._schemas import ToolsSchema, normalize_tools

__all__ = ["LLMContext", "LLMSpecificMessage", "standard_message_text"]


@dataclass
class LLMSpecificMessage:
    """A context message in one vendor's own format.

    Attributes:
        llm: The adapter id it is for (``"openai"``, ``"anthropic"``, ``"google"``).
        message: The vendor-shaped message (or a thought record, see the adapters).
    """

    llm: str
    message: Any


def standard_message_text(message: Any) -> str:
    """The text of a standard message (text parts joined by spaces); ``""`` for a vendor message."""
    if isinstance(message, LLMSpecificMessage) or not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text" and p.get("text")
        )
    return ""


_VENDOR_STRING_MAX = 100


def truncated(message: Any) -> Any:
    """A copy of ``message`` for logs (see :meth:`LLMContext.get_messages`)."""
    if isinstance(message, LLMSpecificMessage):
        return LLMSpecificMessage(message.llm, _cut(message.message))
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        return message
    parts = []
    for part in message["content"]:
        if isinstance(part, dict) and part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if isinstance(url, str) and url.startswith("data:"):
                part = {**part, "image_url": {**part["image_url"], "url": url.split(",", 1)[0] + ",..."}}
        elif isinstance(part, dict) and part.get("type") == "input_audio":
            part = {**part, "input_audio": {**(part.get("input_audio") or {}), "data": "..."}}
        parts.append(part)
    return {**message, "content": parts}


def _cut(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= _VENDOR_STRING_MAX else value[:_VENDOR_STRING_MAX] + "..."
    if isinstance(value, dict):
        return {k: _cut(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut(v) for v in value]
    return value


class LLMContext(_BaseContext):
    """Conversation state for an LLM: OpenAI-style messages, tools and tool choice.

    Args:
        messages: Initial messages (standard dicts or :class:`LLMSpecificMessage`).
        tools: A :class:`ToolsSchema`, a list of function schemas, or None.
        tool_choice: ``"auto"``, ``"none"``, ``"required"``,
            ``{"type": "function", "function": {"name": ...}}``, or None.

    Raises:
        ConfigError: ``tools`` is of an unsupported type.
    """

    __slots__ = ()

    def __init__(
        self,
        messages: list[Any] | None = None,
        tools: Any = None,
        tool_choice: Any = None,
    ) -> None:
        super().__init__(messages, normalize_tools(tools), tool_choice)

    def get_messages(
        self, llm_specific_filter: str | None = None, *, truncate_large_values: bool = False
    ) -> list[Any]:
        """A copy of the message list.

        Args:
            llm_specific_filter: If set, drop vendor messages for any other adapter id.
            truncate_large_values: Return copies fit for logs: inline images and audio
                (``data:`` URLs, ``input_audio`` data) elided, long strings in vendor
                messages cut. The context itself is not changed.
        """
        messages = list(self._messages)
        if llm_specific_filter is not None:
            messages = [
                m for m in messages if not isinstance(m, LLMSpecificMessage) or m.llm == llm_specific_filter
            ]
        if truncate_large_values:
            messages = [truncated(m) for m in messages]
        return messages

    def set_tools(self, tools: Any) -> None:
        """Replace the tools (normalised: a list becomes a ToolsSchema, empty means none)."""
        self.tools = normalize_tools(tools)

    def transform_messages(self, transform: Callable[[list[Any]], list[Any]]) -> None:
        """Replace the messages with ``transform(copy of the messages)``."""
        self.set_messages(list(transform(list(self._messages))))

    @property
    def tools_schema(self) -> ToolsSchema | None:
        """The tools as a ToolsSchema (None: no tools)."""
        tools: ToolsSchema | None = self.tools
        return tools

    # ------------------------------------------------------------ builders

    @staticmethod
    def create_image_url_message(*, role: str = "user", url: str, text: str | None = None) -> dict[str, Any]:
        """A message with an image given by URL (``https:`` or ``data:``), and optional text."""
        content: list[dict[str, Any]] = []
        if text:
            content.append({"type": "text", "text": text})
        content.append({"type": "image_url", "image_url": {"url": url}})
        return {"role": role, "content": content}

    @staticmethod
    def create_image_message(
        *, role: str = "user", image: bytes, mime_type: str = "image/jpeg", text: str | None = None
    ) -> dict[str, Any]:
        """A message with an encoded image (JPEG, PNG…) inlined as a ``data:`` URL."""
        url = f"data:{mime_type};base64,{base64.b64encode(image).decode('ascii')}"
        return LLMContext.create_image_url_message(role=role, url=url, text=text)

    @staticmethod
    def create_audio_message(
        *, role: str = "user", wav: bytes, text: str = "Audio follows"
    ) -> dict[str, Any]:
        """A message with a WAV recording as an ``input_audio`` part."""
        data = base64.b64encode(wav).decode("ascii")
        return {
            "role": role,
            "content": [
                {"type": "text", "text": text},
                {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}},
            ],
        }

    def add_image_message(self, **kwargs: Any) -> None:
        """Append :meth:`create_image_message` (same arguments)."""
        self.add_message(self.create_image_message(**kwargs))

    def __repr__(self) -> str:
        return f"LLMContext(messages={len(self._messages)}, tools={self.tools!r}, tool_choice={self.tool_choice!r})"
