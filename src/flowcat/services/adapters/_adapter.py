"""LLM adapters: a context (messages, tools, tool choice) in one vendor's request shape.

:class:`BaseLLMAdapter` is the seam; :class:`OpenAILLMAdapter` (Chat Completions,
and every OpenAI-compatible host) lives here, the Anthropic and Gemini adapters
in their own modules. An adapter is pure: it reads the context and returns new
dicts (the context's own message dicts are never modified), so a provider can
call it from ``run_inference`` and serialise the result as the request body.
It imports nothing above ``frames`` (only this package's context types), so a
provider module may use it.
"""

from __future__ import annotations

import copy
import json
import logging
from abc import ABC, abstractmethod
from typing import Any

from ...errors import LLMContextConversionError
from ...frames import LLMContext as _BaseContext
from ._context import LLMSpecificMessage, truncated
from ._schemas import AdapterType, ToolsSchema, normalize_tools

__all__ = ["BaseLLMAdapter", "OpenAILLMAdapter"]

logger = logging.getLogger("flowcat.services.adapters")

_LOG_STRING_MAX = 80


class BaseLLMAdapter(ABC):
    """Converts a provider-neutral context into one vendor's request fields.

    Subclasses give :attr:`id_for_llm_specific_messages`, :meth:`to_provider_tools_format`
    and :meth:`get_llm_invocation_params`.
    """

    adapter_type: AdapterType | None = None
    """Which ``ToolsSchema.custom_tools`` entries this adapter passes through."""

    def __init__(self) -> None:
        self._warned_foreign = False

    @property
    @abstractmethod
    def id_for_llm_specific_messages(self) -> str:
        """The ``LLMSpecificMessage.llm`` value this adapter accepts."""

    @abstractmethod
    def to_provider_tools_format(self, tools_schema: ToolsSchema) -> list[Any]:
        """The vendor's ``tools`` list for these tools (custom entries for this vendor included)."""

    @abstractmethod
    def get_llm_invocation_params(
        self, context: _BaseContext, *, system_instruction: str | None = None
    ) -> dict[str, Any]:
        """The request fields for ``context`` (keys absent when there is nothing to send).

        Raises:
            LLMContextConversionError: A message cannot be converted (names which, and why).
        """

    # ------------------------------------------------------------ shared

    def create_llm_specific_message(self, message: Any) -> LLMSpecificMessage:
        """Wrap a vendor-shaped message for this adapter."""
        return LLMSpecificMessage(llm=self.id_for_llm_specific_messages, message=message)

    def get_messages(self, context: _BaseContext) -> list[Any]:
        """The context's messages, less vendor messages meant for other adapters (logged once)."""
        mine = self.id_for_llm_specific_messages
        out = [m for m in context.messages if not isinstance(m, LLMSpecificMessage) or m.llm == mine]
        if len(out) != len(context.messages) and not self._warned_foreign:
            self._warned_foreign = True
            logger.warning(
                "%s: context holds messages for another LLM; they are left out", type(self).__name__
            )
        return out

    def from_standard_tools(self, tools: Any) -> list[Any] | None:
        """The vendor's tools for a context's ``tools`` (None: send no tools)."""
        schema = normalize_tools(tools)
        if schema is None:
            return None
        return self.to_provider_tools_format(schema) or None

    def custom_tools(self, tools_schema: ToolsSchema) -> list[Any]:
        """This vendor's custom entries of ``tools_schema``."""
        if self.adapter_type is None or not tools_schema.custom_tools:
            return []
        return list(tools_schema.custom_tools.get(self.adapter_type, []))

    def get_messages_for_logging(self, context: _BaseContext) -> list[Any]:
        """The context's messages with long strings (inline images, audio) shortened."""
        out = [truncated(m) for m in self.get_messages(context)]
        return [_shorten(m.message if isinstance(m, LLMSpecificMessage) else m) for m in out]

    @staticmethod
    def split_initial_system(
        messages: list[Any], system_instruction: str | None
    ) -> tuple[str | None, list[Any]]:
        """For vendors that take the system prompt apart: ``(system, remaining messages)``.

        An initial ``system`` message becomes the system prompt, unless it is the only
        message (then it is sent as a user message). ``system_instruction``, when given,
        wins over the context's system message (which is then dropped).
        """
        rest = list(messages)
        from_context: str | None = None
        if rest and isinstance(rest[0], dict) and rest[0].get("role") == "system":
            if len(rest) == 1:
                rest[0] = {**rest[0], "role": "user"}
            else:
                first = rest.pop(0)
                content = first.get("content", "")
                from_context = content if isinstance(content, str) else _text_of_parts(content)
        if system_instruction:
            return system_instruction, rest
        return from_context, rest


def _text_of_parts(parts: Any) -> str:
    if not isinstance(parts, list):
        return ""
    return " ".join(p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text")


def _shorten(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= _LOG_STRING_MAX else value[:_LOG_STRING_MAX] + f"…({len(value)} chars)"
    if isinstance(value, dict):
        return {k: _shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v) for v in value]
    return value


def parse_arguments(raw: Any, where: str) -> dict[str, Any]:
    """A tool call's ``arguments`` (a JSON string, or already a dict) as a dict.

    Raises:
        LLMContextConversionError: Not JSON, or not an object.
    """
    if isinstance(raw, dict):
        return raw
    if raw is None or raw == "":
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise LLMContextConversionError(f"{where}: tool call arguments are not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise LLMContextConversionError(f"{where}: tool call arguments are not a JSON object")
    return value


def check_message(message: Any, index: int) -> dict[str, Any]:
    """``message`` as a dict with a string role.

    Raises:
        LLMContextConversionError: It is not.
    """
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise LLMContextConversionError(
            f"message {index}: not a message dict with a role: {_shorten(message)!r}"
        )
    return message


class OpenAILLMAdapter(BaseLLMAdapter):
    """OpenAI Chat Completions (and OpenAI-compatible hosts).

    Context messages are already in this shape: they are copied (shallowly), vendor
    messages for ``"openai"`` are passed as they are.

    Args:
        convert_developer_to_user: Send ``developer`` messages as ``user`` (for
            compatible hosts that reject the developer role).
    """

    adapter_type = AdapterType.OPENAI

    def __init__(self, *, convert_developer_to_user: bool = False) -> None:
        super().__init__()
        self.convert_developer_to_user = convert_developer_to_user

    @property
    def id_for_llm_specific_messages(self) -> str:
        """``"openai"``."""
        return "openai"

    def to_provider_tools_format(self, tools_schema: ToolsSchema) -> list[Any]:
        """``[{"type": "function", "function": {name, description, parameters}}, …]`` plus custom entries."""
        out: list[Any] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": {"type": "object", "properties": t.properties, "required": t.required},
                },
            }
            for t in tools_schema.standard_tools
        ]
        return out + self.custom_tools(tools_schema)

    def get_llm_invocation_params(
        self, context: _BaseContext, *, system_instruction: str | None = None
    ) -> dict[str, Any]:
        """``{"messages", "tools"?, "tool_choice"?}``; ``system_instruction`` is prepended as a system message."""
        messages: list[Any] = []
        if system_instruction:
            messages.append({"role": "system", "content": system_instruction})
        for i, m in enumerate(self.get_messages(context)):
            if isinstance(m, LLMSpecificMessage):
                messages.append(copy.deepcopy(m.message))
                continue
            msg = dict(check_message(m, i))
            if self.convert_developer_to_user and msg["role"] == "developer":
                msg["role"] = "user"
            messages.append(msg)
        params: dict[str, Any] = {"messages": messages}
        tools = self.from_standard_tools(context.tools)
        if tools:
            params["tools"] = tools
        if context.tool_choice is not None:
            params["tool_choice"] = context.tool_choice
        return params
