"""Anthropic Messages API adapter (https://docs.anthropic.com/en/api/messages).

Request fields: ``system`` (a string), ``messages`` (``user``/``assistant`` turns,
content as blocks), ``tools`` (``{name, description, input_schema}``) and
``tool_choice`` (``{"type": "auto" | "any" | "none" | "tool", "name"?}``).

Conversion from the OpenAI-style context:

* an initial ``system`` message becomes ``system`` (``system_instruction`` wins);
  later ``system``/``developer`` messages are sent as ``user`` turns;
* an assistant message's ``tool_calls`` become ``tool_use`` blocks (arguments
  parsed from JSON), after its text if it has any;
* a ``tool`` message becomes a ``user`` turn holding a ``tool_result`` block;
* ``image_url`` parts become ``image`` blocks (base64 for ``data:`` URLs, else by URL);
  ``input_audio`` parts are not supported by the API and are left out (logged once);
* consecutive turns of the same role are merged (the API wants them alternating);
  empty text becomes ``"(empty)"`` (the API rejects empty text blocks);
* vendor messages for ``"anthropic"`` pass as they are, except thought records
  (``{"type": "thought", "text", "signature"}``), which become ``thinking`` blocks
  when they carry a signature and are dropped otherwise.

Prompt caching (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching):
:func:`add_cache_control` marks the system prompt (which caches the tools too) and the
last block of the last message with ``cache_control: {"type": "ephemeral"}``, two of the
four breakpoints a request may have; the next request finds the previous prefix by
looking back from its own last-message breakpoint.
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
from ._schemas import AdapterType, ToolsSchema

__all__ = ["AnthropicLLMAdapter", "add_cache_control"]

logger = logging.getLogger("flowcat.services.adapters")

_EMPTY = "(empty)"
_EPHEMERAL = {"type": "ephemeral"}


class AnthropicLLMAdapter(BaseLLMAdapter):
    """Context → Anthropic Messages request fields."""

    adapter_type = AdapterType.ANTHROPIC

    def __init__(self) -> None:
        super().__init__()
        self._warned_audio = False

    @property
    def id_for_llm_specific_messages(self) -> str:
        """``"anthropic"``."""
        return "anthropic"

    def to_provider_tools_format(self, tools_schema: ToolsSchema) -> list[Any]:
        """``[{"name", "description", "input_schema"}, …]`` plus custom entries."""
        out: list[Any] = [
            {
                "name": t.name,
                "description": t.description,
                "input_schema": {"type": "object", "properties": t.properties, "required": t.required},
            }
            for t in tools_schema.standard_tools
        ]
        return out + self.custom_tools(tools_schema)

    @staticmethod
    def tool_choice(choice: Any) -> dict[str, Any] | None:
        """The context's tool choice in Anthropic's shape (None: leave it to the API)."""
        if choice is None:
            return None
        if choice == "auto":
            return {"type": "auto"}
        if choice == "required":
            return {"type": "any"}
        if choice == "none":
            return {"type": "none"}
        if isinstance(choice, dict):
            fn = choice.get("function")
            if choice.get("type") == "function" and isinstance(fn, dict) and fn.get("name"):
                return {"type": "tool", "name": fn["name"]}
            return dict(choice)  # already Anthropic-shaped
        raise LLMContextConversionError(f"tool_choice {choice!r} has no Anthropic equivalent")

    def get_llm_invocation_params(
        self, context: _BaseContext, *, system_instruction: str | None = None
    ) -> dict[str, Any]:
        """``{"system"?, "messages", "tools"?, "tool_choice"?}``."""
        system, rest = self.split_initial_system(self.get_messages(context), system_instruction)
        turns: list[dict[str, Any]] = []
        for i, m in enumerate(rest):
            turn = self._convert(m, i)
            if turn is None:
                continue
            if turns and turns[-1]["role"] == turn["role"]:
                turns[-1]["content"] = _blocks(turns[-1]["content"]) + _blocks(turn["content"])
            else:
                turns.append(turn)
        params: dict[str, Any] = {}
        if system:
            params["system"] = system
        params["messages"] = turns
        tools = self.from_standard_tools(context.tools)
        if tools:
            params["tools"] = tools
        choice = self.tool_choice(context.tool_choice)
        if choice is not None:
            params["tool_choice"] = choice
        return params

    # -------------------------------------------------------------- messages

    def _convert(self, message: Any, index: int) -> dict[str, Any] | None:
        if isinstance(message, LLMSpecificMessage):
            body = message.message
            if isinstance(body, dict) and body.get("type") == "thought":
                if not body.get("signature"):
                    return None
                block = {
                    "type": "thinking",
                    "thinking": body.get("text") or "",
                    "signature": body["signature"],
                }
                return {"role": "assistant", "content": [block]}
            vendor: dict[str, Any] = copy.deepcopy(body)
            return vendor
        msg = check_message(message, index)
        role = msg["role"]
        where = f"message {index} ({role})"
        if role == "tool":
            content = msg.get("content")
            if not isinstance(content, (str, list)):
                content = json.dumps(content, ensure_ascii=False)
            if "tool_call_id" not in msg:
                raise LLMContextConversionError(f"{where}: tool message without tool_call_id")
            block = {"type": "tool_result", "tool_use_id": msg["tool_call_id"], "content": content or _EMPTY}
            return {"role": "user", "content": [block]}
        out_role = "assistant" if role == "assistant" else "user"
        blocks = self._content_blocks(msg.get("content"), where)
        for call in msg.get("tool_calls") or ():
            try:
                fn = call["function"]
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call["id"],
                        "name": fn["name"],
                        "input": parse_arguments(fn.get("arguments"), where),
                    }
                )
            except (KeyError, TypeError) as exc:
                raise LLMContextConversionError(f"{where}: malformed tool call {call!r}") from exc
        if not blocks:
            blocks = [{"type": "text", "text": _EMPTY}]
        if len(blocks) == 1 and blocks[0]["type"] == "text":
            return {"role": out_role, "content": blocks[0]["text"]}
        return {"role": out_role, "content": blocks}

    def _content_blocks(self, content: Any, where: str) -> list[dict[str, Any]]:
        if content is None:
            return []
        if isinstance(content, str):
            return [{"type": "text", "text": content or _EMPTY}]
        if not isinstance(content, list):
            raise LLMContextConversionError(f"{where}: content is neither text nor a list of parts")
        blocks: list[dict[str, Any]] = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                blocks.append({"type": "text", "text": part.get("text") or _EMPTY})
            elif kind == "image_url":
                url = (part.get("image_url") or {}).get("url", "")
                blocks.append({"type": "image", "source": _image_source(url, where)})
            elif kind == "input_audio":
                if not self._warned_audio:
                    self._warned_audio = True
                    logger.warning("Anthropic takes no audio input: %s left out", where)
            else:
                raise LLMContextConversionError(f"{where}: unsupported content part {kind!r}")
        # One image with text: the image goes first (the vendor's recommendation).
        images = [i for i, b in enumerate(blocks) if b["type"] == "image"]
        if len(images) == 1 and images[0] > 0 and blocks[0]["type"] == "text":
            blocks.insert(0, blocks.pop(images[0]))
        return blocks


def _image_source(url: str, where: str) -> dict[str, Any]:
    if url.startswith("data:"):
        try:
            header, data = url.split(",", 1)
            media_type = header[5:].split(";", 1)[0]
        except ValueError as exc:
            raise LLMContextConversionError(f"{where}: malformed data URL") from exc
        return {"type": "base64", "media_type": media_type, "data": data}
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    raise LLMContextConversionError(f"{where}: unsupported image URL scheme")


def _blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)


def add_cache_control(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` (the adapter's fields) with prompt-caching breakpoints, as a new dict.

    The system prompt becomes one text block with ``cache_control``; the last message's
    last content block gets ``cache_control`` (a string content becomes one text block).
    The messages are copied, never changed in place.
    """
    out = dict(params)
    system = out.get("system")
    if isinstance(system, str) and system:
        out["system"] = [{"type": "text", "text": system, "cache_control": dict(_EPHEMERAL)}]
    messages = list(out.get("messages") or ())
    if messages and isinstance(messages[-1], dict):
        last = dict(messages[-1])
        blocks = [dict(b) if isinstance(b, dict) else b for b in _blocks(last.get("content", ""))]
        if blocks and isinstance(blocks[-1], dict) and blocks[-1].get("type") not in ("thinking", "redacted_thinking"):
            blocks[-1]["cache_control"] = dict(_EPHEMERAL)
            last["content"] = blocks
            messages[-1] = last
        out["messages"] = messages
    return out
