"""OpenAI Responses API adapter (https://platform.openai.com/docs/api-reference/responses/create).

Request fields: ``input`` (a list of items), ``instructions`` (``system_instruction``,
when given), ``tools`` (flat: ``{"type": "function", "name", "description",
"parameters"}``) and ``tool_choice`` (``"auto" | "none" | "required"`` or
``{"type": "function", "name"}``).

Conversion from the OpenAI-style (Chat Completions) context:

* ``system``/``developer``/``user``/``assistant`` messages become input messages
  ``{"role", "content"}``; string content stays a string, content parts become
  ``input_text``/``input_image`` (user, system, developer) or ``output_text``
  (assistant) parts; ``input_audio`` parts are left out (logged once);
* an assistant message's ``tool_calls`` become ``function_call`` items
  (``call_id``, ``name``, ``arguments`` as a JSON string), after its text if any;
* a ``tool`` message becomes a ``function_call_output`` item (``call_id``,
  ``output``: the content, JSON-encoded when it is not a string);
* vendor messages for ``"openai_responses"`` are input items passed as they are.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

from ...errors import LLMContextConversionError
from ...frames import LLMContext as _BaseContext
from ._adapter import BaseLLMAdapter, check_message, parse_arguments
from ._context import LLMSpecificMessage
from ._schemas import ToolsSchema

__all__ = ["OpenAIResponsesLLMAdapter"]

logger = logging.getLogger("flowcat.services.adapters")

_ROLES = ("system", "developer", "user", "assistant")


class OpenAIResponsesLLMAdapter(BaseLLMAdapter):
    """Context → OpenAI Responses API request fields (``input``, ``tools``, ``tool_choice``)."""

    def __init__(self) -> None:
        super().__init__()
        self._warned_audio = False

    @property
    def id_for_llm_specific_messages(self) -> str:
        """``"openai_responses"``."""
        return "openai_responses"

    def to_provider_tools_format(self, tools_schema: ToolsSchema) -> list[Any]:
        """``[{"type": "function", "name", "description", "parameters"}, …]``."""
        return [
            {"type": "function", "name": t.name, "description": t.description,
             "parameters": {"type": "object", "properties": t.properties, "required": t.required}}
            for t in tools_schema.standard_tools
        ]

    def get_llm_invocation_params(
        self, context: _BaseContext, *, system_instruction: str | None = None
    ) -> dict[str, Any]:
        """``{"input", "instructions"?, "tools"?, "tool_choice"?}``.

        Raises:
            LLMContextConversionError: A message cannot be converted (names which, and why).
        """
        items: list[Any] = []
        for i, m in enumerate(self.get_messages(context)):
            if isinstance(m, LLMSpecificMessage):
                items.append(copy.deepcopy(m.message))
                continue
            items.extend(self._items(check_message(m, i), i))
        params: dict[str, Any] = {"input": items}
        if system_instruction:
            params["instructions"] = system_instruction
        tools = self.from_standard_tools(context.tools)
        if tools:
            params["tools"] = tools
        if context.tool_choice is not None:
            params["tool_choice"] = tool_choice(context.tool_choice)
        return params

    # ------------------------------------------------------------ messages

    def _items(self, msg: dict[str, Any], index: int) -> list[Any]:
        role = msg["role"]
        where = f"message {index}"
        if role == "tool":
            call_id = msg.get("tool_call_id")
            if not call_id:
                raise LLMContextConversionError(f"{where}: a tool message without tool_call_id")
            content = msg.get("content")
            output = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
            return [{"type": "function_call_output", "call_id": call_id, "output": output}]
        if role not in _ROLES:
            raise LLMContextConversionError(f"{where}: role {role!r} has no Responses API equivalent")
        out: list[Any] = []
        content = msg.get("content")
        if isinstance(content, str):
            if content or not msg.get("tool_calls"):
                out.append({"role": role, "content": content})
        elif isinstance(content, list):
            parts = [p for p in (self._part(p, role, where) for p in content) if p is not None]
            if parts:
                out.append({"role": role, "content": parts})
        elif content is not None:
            raise LLMContextConversionError(f"{where}: content is neither text nor a list of parts")
        for tc in msg.get("tool_calls") or ():
            fn = (tc.get("function") if isinstance(tc, dict) else None) or {}
            if not isinstance(fn, dict) or not fn.get("name") or not tc.get("id"):
                raise LLMContextConversionError(f"{where}: a tool call without id or function name")
            args = parse_arguments(fn.get("arguments"), where)
            out.append({"type": "function_call", "call_id": tc["id"], "name": fn["name"],
                        "arguments": json.dumps(args, ensure_ascii=False)})
        return out

    def _part(self, part: Any, role: str, where: str) -> dict[str, Any] | None:
        if not isinstance(part, dict):
            raise LLMContextConversionError(f"{where}: a content part that is not an object")
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            return {"type": "output_text" if role == "assistant" else "input_text", "text": part.get("text", "")}
        if kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            out: dict[str, Any] = {"type": "input_image", "image_url": url}
            if isinstance(image, dict) and image.get("detail"):
                out["detail"] = image["detail"]
            return out
        if kind == "input_audio":
            if not self._warned_audio:
                self._warned_audio = True
                logger.warning("OpenAIResponsesLLMAdapter: audio parts are not sent to the Responses API")
            return None
        return dict(part)  # input_image, input_file, …: already Responses-shaped


def tool_choice(choice: Any) -> Any:
    """A Chat Completions ``tool_choice`` in the Responses shape."""
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict):
        return {"type": "function", "name": choice["function"].get("name")}
    return choice
