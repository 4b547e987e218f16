"""Google Gemini ``generateContent`` adapter (https://ai.google.dev/api/generate-content).

Request fields (REST JSON, camelCase): ``systemInstruction`` (``{"parts": [{"text"}]}``),
``contents`` (``{"role": "user" | "model", "parts": [...]}``), ``tools``
(``[{"functionDeclarations": [...]}]`` plus custom entries such as
``{"googleSearch": {}}``) and ``toolConfig`` (``{"functionCallingConfig": {"mode", "allowedFunctionNames"?}}``).

Tool schemas are cut to the subset Gemini accepts (``additionalProperties`` and ``x-…``
keys dropped, list ``type`` → ``anyOf``, non-string ``enum`` dropped; logged once per tool).

Conversion from the OpenAI-style context:

* an initial ``system`` message becomes ``systemInstruction`` (``system_instruction``
  wins); later ``system``/``developer`` messages are sent as ``user`` turns;
  ``assistant`` becomes ``model``;
* ``tool_calls`` become ``functionCall`` parts (``name``, ``args``, ``id``);
* a ``tool`` message becomes a ``user`` turn with a ``functionResponse`` part,
  named after the call it answers (matched by ``tool_call_id``); its content is
  decoded from JSON when it is an object, and wrapped as ``{"value": ...}`` otherwise
  (the API wants an object);
* a call id made up locally for a call Gemini sent without one
  (:data:`LOCAL_CALL_ID_PREFIX`, see ``flowcat.services.llm.google``) is not sent back,
  neither on the ``functionCall`` nor on its ``functionResponse``;
* consecutive turns of the same role are merged into one (parallel calls' responses
  go back together, in one ``user`` turn);
* ``image_url`` parts become ``inlineData`` (``data:`` URLs) or ``fileData`` (other
  URLs); ``input_audio`` parts become ``inlineData`` with ``audio/wav``;
* vendor messages for ``"google"`` pass as they are.
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

__all__ = ["LOCAL_CALL_ID_PREFIX", "GeminiLLMAdapter"]

logger = logging.getLogger("flowcat.services.adapters")

LOCAL_CALL_ID_PREFIX = "fc_local_"
"""Prefix of the ids given to function calls that Gemini sent without one (never sent back)."""

_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


def _fit_schema(schema: Any, notes: set[str]) -> Any:
    """A JSON schema cut to the OpenAPI 3.0 subset Gemini takes (what changed goes into ``notes``).

    ``additionalProperties`` and ``x-…`` vendor keys are dropped, a list ``type`` becomes
    ``anyOf``, and an ``enum`` with non-string members is dropped (Gemini enums are strings).
    """
    if isinstance(schema, list):
        return [_fit_schema(item, notes) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "additionalProperties" or key.startswith("x-"):
            notes.add(f"dropped {key!r}")
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: _fit_schema(sub, notes) for name, sub in value.items()}  # names, not keywords
        elif key == "type" and isinstance(value, list):
            notes.add("a list 'type' became 'anyOf'")
            out["anyOf"] = [{"type": t} for t in value]
        elif key == "enum" and isinstance(value, list) and any(not isinstance(v, str) for v in value):
            notes.add("dropped a non-string 'enum'")
        else:
            out[key] = _fit_schema(value, notes)
    return out


class GeminiLLMAdapter(BaseLLMAdapter):
    """Context → Gemini ``generateContent`` request fields."""

    adapter_type = AdapterType.GEMINI

    def __init__(self) -> None:
        super().__init__()
        self._noted: dict[str, set[str]] = {}  # schema changes already logged, per tool

    @property
    def id_for_llm_specific_messages(self) -> str:
        """``"google"``."""
        return "google"

    def to_provider_tools_format(self, tools_schema: ToolsSchema) -> list[Any]:
        """``[{"functionDeclarations": [...]}]`` plus custom entries."""
        out: list[Any] = []
        if tools_schema.standard_tools:
            decls = []
            for t in tools_schema.standard_tools:
                notes: set[str] = set()
                params = _fit_schema(
                    {"type": "object", "properties": t.properties, "required": t.required}, notes
                )
                for note in sorted(notes - self._noted.get(t.name, set())):
                    logger.warning("Gemini tool %r: %s", t.name, note)
                self._noted.setdefault(t.name, set()).update(notes)
                decls.append({"name": t.name, "description": t.description, "parameters": params})
            out.append({"functionDeclarations": decls})
        return out + self.custom_tools(tools_schema)

    @staticmethod
    def tool_config(choice: Any) -> dict[str, Any] | None:
        """The context's tool choice as a ``toolConfig`` (None: leave it to the API)."""
        if choice is None:
            return None
        if isinstance(choice, str) and choice in _MODES:
            return {"functionCallingConfig": {"mode": _MODES[choice]}}
        if isinstance(choice, dict):
            fn = choice.get("function")
            if choice.get("type") == "function" and isinstance(fn, dict) and fn.get("name"):
                return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [fn["name"]]}}
        raise LLMContextConversionError(f"tool_choice {choice!r} has no Gemini equivalent")

    @staticmethod
    def function_response(content: Any) -> dict[str, Any]:
        """A tool result as the object ``functionResponse.response`` requires."""
        if isinstance(content, dict):
            return content
        if isinstance(content, str):
            try:
                decoded = json.loads(content)
            except ValueError:
                return {"value": content}
            return decoded if isinstance(decoded, dict) else {"value": decoded}
        return {"value": content}

    def get_llm_invocation_params(
        self, context: _BaseContext, *, system_instruction: str | None = None
    ) -> dict[str, Any]:
        """``{"systemInstruction"?, "contents", "tools"?, "toolConfig"?}``."""
        system, rest = self.split_initial_system(self.get_messages(context), system_instruction)
        names: dict[str, str] = {}
        contents: list[dict[str, Any]] = []
        mergeable = False  # whether contents[-1] is one of ours (a vendor message is never merged into)
        for i, m in enumerate(rest):
            if isinstance(m, LLMSpecificMessage):
                contents.append(copy.deepcopy(m.message))
                mergeable = False
                continue
            content = self._convert(check_message(m, i), i, names)
            if not content["parts"]:
                continue
            if mergeable and contents[-1]["role"] == content["role"]:
                contents[-1]["parts"] += content["parts"]
            else:
                contents.append(content)
                mergeable = True
        params: dict[str, Any] = {}
        if system:
            params["systemInstruction"] = {"parts": [{"text": system}]}
        params["contents"] = contents
        tools = self.from_standard_tools(context.tools)
        if tools:
            params["tools"] = tools
        config = self.tool_config(context.tool_choice)
        if config is not None:
            params["toolConfig"] = config
        return params

    def _convert(self, msg: dict[str, Any], index: int, names: dict[str, str]) -> dict[str, Any]:
        role = msg["role"]
        where = f"message {index} ({role})"
        parts: list[dict[str, Any]] = []
        if role == "tool":
            call_id = msg.get("tool_call_id")
            response: dict[str, Any] = {
                "name": names.get(call_id or "", "tool_call_result"),
                "response": self.function_response(msg.get("content")),
            }
            if call_id and not call_id.startswith(LOCAL_CALL_ID_PREFIX):
                response["id"] = call_id
            return {"role": "user", "parts": [{"functionResponse": response}]}
        parts.extend(self._parts(msg.get("content"), where))
        for call in msg.get("tool_calls") or ():
            try:
                fn = call["function"]
                names[call["id"]] = fn["name"]
                function_call: dict[str, Any] = {"name": fn["name"], "args": parse_arguments(fn.get("arguments"), where)}
                if call["id"] and not str(call["id"]).startswith(LOCAL_CALL_ID_PREFIX):
                    function_call["id"] = call["id"]
                parts.append({"functionCall": function_call})
            except (KeyError, TypeError) as exc:
                raise LLMContextConversionError(f"{where}: malformed tool call {call!r}") from exc
        return {"role": "model" if role == "assistant" else "user", "parts": parts}

    @staticmethod
    def _parts(content: Any, where: str) -> list[dict[str, Any]]:
        if content is None:
            return []
        if isinstance(content, str):
            return [{"text": content}] if content else []
        if not isinstance(content, list):
            raise LLMContextConversionError(f"{where}: content is neither text nor a list of parts")
        parts: list[dict[str, Any]] = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                if part.get("text"):
                    parts.append({"text": part["text"]})
            elif kind == "image_url":
                url = (part.get("image_url") or {}).get("url", "")
                if url.startswith("data:"):
                    header, _, data = url.partition(",")
                    parts.append({"inlineData": {"mimeType": header[5:].split(";", 1)[0], "data": data}})
                else:
                    parts.append({"fileData": {"fileUri": url}})
            elif kind == "input_audio":
                audio = part.get("input_audio") or {}
                parts.append({"inlineData": {"mimeType": "audio/wav", "data": audio.get("data", "")}})
            else:
                raise LLMContextConversionError(f"{where}: unsupported content part {kind!r}")
        return parts
