"""AWS Bedrock Converse / ConverseStream adapter.

Request fields (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html ,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Message.html ,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ContentBlock.html ,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ToolResultBlock.html ,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ToolConfiguration.html):
``system`` (``[{"text"}]``), ``messages`` (``user``/``assistant`` turns whose ``content`` is
a list of blocks: ``{"text"}``, ``{"image": {"format", "source": {"bytes": base64}}}``,
``{"toolUse": {"toolUseId", "name", "input"}}``, ``{"toolResult": {"toolUseId", "content":
[{"json"} | {"text"}], "status"?}}``) and ``toolConfig`` (``{"tools": [{"toolSpec": {"name",
"description", "inputSchema": {"json"}}}], "toolChoice"?: {"auto": {}} | {"any": {}} |
{"tool": {"name"}}}``).

Conversion from the OpenAI-style context:

* an initial ``system`` message becomes ``system`` (``system_instruction`` wins); later
  ``system``/``developer`` messages are sent as ``user`` turns;
* an assistant message's ``tool_calls`` become ``toolUse`` blocks (arguments parsed), after
  its text; a ``tool`` message becomes a ``user`` turn with a ``toolResult`` block whose
  content is ``{"json": …}`` when the result is a JSON object, else ``{"text": …}``
  (``status`` is sent only when the tool message carries one: not every model accepts it);
* consecutive turns of the same role are merged (the API wants them alternating), so the
  results of parallel calls share one user turn; empty text becomes ``"(empty)"`` (blank
  text blocks are rejected), and a conversation that ends with the assistant gets a ``"."``
  user turn (most models take no assistant prefill);
* ``image_url`` parts with ``data:`` URLs become ``image`` blocks; other URLs and
  ``input_audio`` are left out (logged once);
* the tool choice ``"none"`` has no Converse equivalent (the tools stay declared because a
  history with ``toolUse`` blocks needs them; logged once);
* vendor messages for ``"aws"`` (Bedrock-shaped ``{"role", "content": [...]}``) pass as they are.
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

__all__ = ["AWSBedrockLLMAdapter"]

logger = logging.getLogger("flowcat.services.adapters")

_EMPTY = "(empty)"
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}


class AWSBedrockLLMAdapter(BaseLLMAdapter):
    """Context → Bedrock Converse request fields (``system``, ``messages``, ``toolConfig``)."""

    adapter_type = AdapterType.BEDROCK

    def __init__(self) -> None:
        super().__init__()
        self._warned: set[str] = set()

    @property
    def id_for_llm_specific_messages(self) -> str:
        """``"aws"`` (pipecat's id)."""
        return "aws"

    def to_provider_tools_format(self, tools_schema: ToolsSchema) -> list[Any]:
        """``[{"toolSpec": {"name", "description", "inputSchema": {"json"}}}, …]`` plus custom entries."""
        out: list[Any] = [tool_spec(t.name, t.description, t.properties, t.required)
                          for t in tools_schema.standard_tools]
        return out + self.custom_tools(tools_schema)

    def tool_choice(self, choice: Any) -> dict[str, Any] | None:
        """The context's tool choice as a Converse ``toolChoice`` (None: leave it to the model)."""
        if choice is None or choice == "auto":
            return None if choice is None else {"auto": {}}
        if choice == "required":
            return {"any": {}}
        if choice == "none":
            self._warn_once("none", "Bedrock Converse has no tool choice 'none': the model may still call tools")
            return None
        if isinstance(choice, dict):
            fn = choice.get("function")
            if choice.get("type") == "function" and isinstance(fn, dict) and fn.get("name"):
                return {"tool": {"name": fn["name"]}}
            if len(choice) == 1 and next(iter(choice)) in ("auto", "any", "tool"):
                return dict(choice)  # already Converse-shaped
        raise LLMContextConversionError(f"tool_choice {choice!r} has no Bedrock Converse equivalent")

    def get_llm_invocation_params(
        self, context: _BaseContext, *, system_instruction: str | None = None
    ) -> dict[str, Any]:
        """``{"system"?, "messages", "toolConfig"?}``."""
        system, rest = self.split_initial_system(self.get_messages(context), system_instruction)
        turns: list[dict[str, Any]] = []
        for i, m in enumerate(rest):
            turn = self._convert(m, i)
            if turns and turns[-1]["role"] == turn["role"]:
                turns[-1]["content"] = list(turns[-1]["content"]) + list(turn["content"])
            else:
                turns.append(turn)
        if turns and turns[-1]["role"] == "assistant":
            turns.append({"role": "user", "content": [{"text": "."}]})
        params: dict[str, Any] = {}
        if system:
            params["system"] = [{"text": system}]
        params["messages"] = turns
        tools = self.from_standard_tools(context.tools)
        if tools:
            config: dict[str, Any] = {"tools": tools}
            choice = self.tool_choice(context.tool_choice)
            if choice is not None:
                config["toolChoice"] = choice
            params["toolConfig"] = config
        return params

    # -------------------------------------------------------------- messages

    def _warn_once(self, what: str, msg: str, *args: object) -> None:
        if what not in self._warned:
            self._warned.add(what)
            logger.warning(msg, *args)

    def _convert(self, message: Any, index: int) -> dict[str, Any]:
        if isinstance(message, LLMSpecificMessage):
            body = message.message
            if not isinstance(body, dict) or body.get("role") not in ("user", "assistant") or not isinstance(
                body.get("content"), list
            ):
                raise LLMContextConversionError(f"message {index}: an 'aws' message must be {{role, content: [...]}}")
            vendor: dict[str, Any] = copy.deepcopy(body)
            return vendor
        msg = check_message(message, index)
        role = msg["role"]
        where = f"message {index} ({role})"
        if role == "tool":
            if "tool_call_id" not in msg:
                raise LLMContextConversionError(f"{where}: tool message without tool_call_id")
            result: dict[str, Any] = {"toolUseId": msg["tool_call_id"], "content": _result_content(msg.get("content"))}
            if msg.get("status") in ("success", "error"):
                result["status"] = msg["status"]
            return {"role": "user", "content": [{"toolResult": result}]}
        blocks = self._content_blocks(msg.get("content"), where)
        for call in msg.get("tool_calls") or ():
            try:
                fn = call["function"]
                blocks.append({"toolUse": {"toolUseId": call["id"], "name": fn["name"],
                                           "input": parse_arguments(fn.get("arguments"), where)}})
            except (KeyError, TypeError) as exc:
                raise LLMContextConversionError(f"{where}: malformed tool call {call!r}") from exc
        if not blocks:
            blocks = [{"text": _EMPTY}]
        return {"role": "assistant" if role == "assistant" else "user", "content": blocks}

    def _content_blocks(self, content: Any, where: str) -> list[dict[str, Any]]:
        if content is None:
            return []
        if isinstance(content, str):
            return [{"text": content if content.strip() else _EMPTY}]
        if not isinstance(content, list):
            raise LLMContextConversionError(f"{where}: content is neither text nor a list of parts")
        blocks: list[dict[str, Any]] = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                text = part.get("text") or ""
                blocks.append({"text": text if text.strip() else _EMPTY})
            elif kind == "image_url":
                image = self._image(str((part.get("image_url") or {}).get("url", "")), where)
                if image is not None:
                    blocks.append(image)
            elif kind == "input_audio":
                self._warn_once("audio", "Bedrock Converse takes no audio input: %s left out", where)
            else:
                raise LLMContextConversionError(f"{where}: unsupported content part {kind!r}")
        return blocks

    def _image(self, url: str, where: str) -> dict[str, Any] | None:
        if not url.startswith("data:"):
            self._warn_once("image-url", "Bedrock Converse takes images inline only: %s left out", where)
            return None
        try:
            header, data = url.split(",", 1)
        except ValueError as exc:
            raise LLMContextConversionError(f"{where}: malformed data URL") from exc
        mime = header[5:].split(";", 1)[0].lower()
        fmt = _IMAGE_FORMATS.get(mime)
        if fmt is None:
            raise LLMContextConversionError(f"{where}: image type {mime!r} is not one Bedrock takes")
        return {"image": {"format": fmt, "source": {"bytes": data}}}


def tool_spec(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """One Converse ``tools[]`` entry."""
    schema = {"type": "object", "properties": properties, "required": list(required)}
    return {"toolSpec": {"name": name, "description": description or name, "inputSchema": {"json": schema}}}


def _result_content(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, list):  # text parts
        texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return [{"text": "".join(texts) or _EMPTY}]
    if isinstance(content, dict):
        return [{"json": content}]
    if isinstance(content, str):
        stripped = content.strip()
        if stripped.startswith("{"):
            try:
                value = json.loads(stripped)
            except ValueError:
                value = None
            if isinstance(value, dict):
                return [{"json": value}]
        return [{"text": content or _EMPTY}]
    return [{"text": json.dumps(content, ensure_ascii=False)}]
