"""MCP tool listings and results in flowcat's terms (no SDK import: works on its models by field).

* A listed tool (``name``, ``description``, ``input_schema``) becomes a
  :class:`~flowcat.services.FunctionSchema`: the input schema's ``properties`` (local
  ``$ref``s inlined, since ``$defs`` stay behind) and ``required``, minus the arguments the
  client fixes itself.
* A ``CallToolResult`` becomes what the function call reports: the text blocks joined
  (the MCP spec asks a tool returning structured content to mirror it as JSON text),
  else the structured content, else a short description of what non-text blocks came
  back. ``is_error`` results become the error text the model reads.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ...errors import ServiceProtocolError
from .._function_schema import FunctionSchema

__all__ = ["EMPTY_RESULT", "call_error_text", "tool_result", "tool_schema"]

EMPTY_RESULT = "The tool returned nothing."
_MAX_DETAIL = 300
_MAX_REF_DEPTH = 8


def _inline_refs(node: Any, defs: dict[str, Any], depth: int = 0) -> Any:
    """``node`` with local ``$ref``s (``#/$defs/X``, ``#/definitions/X``) replaced by their definitions.

    The properties leave the schema that held ``$defs``, so a reference would dangle;
    recursive definitions are cut (``{}``: any value) past a few levels.
    """
    if isinstance(node, list):
        return [_inline_refs(v, defs, depth) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(("#/$defs/", "#/definitions/")):
        target = defs.get(ref.rsplit("/", 1)[1])
        if target is None or depth >= _MAX_REF_DEPTH:
            return {k: v for k, v in node.items() if k != "$ref"}
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline_refs(merged, defs, depth + 1)
    return {k: _inline_refs(v, defs, depth) for k, v in node.items() if k not in ("$defs", "definitions")}


def tool_schema(tool: Any, hidden: Collection[str] = ()) -> FunctionSchema:
    """The :class:`FunctionSchema` of an MCP ``Tool`` (``hidden``: arguments the client fills in)."""
    schema = getattr(tool, "input_schema", None) or {}
    props = schema.get("properties") or {}
    required = schema.get("required") or []
    if not isinstance(props, dict) or not isinstance(required, list):
        raise ServiceProtocolError(f"tool {tool.name!r}: input schema without object properties")
    defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    if defs:
        props = _inline_refs(props, defs)
    return FunctionSchema(
        name=tool.name,
        description=getattr(tool, "description", None) or "",
        properties={k: v for k, v in props.items() if k not in hidden},
        required=[r for r in required if r not in hidden],
    )


def _text_of(result: Any) -> str:
    parts: list[str] = []
    other: list[str] = []
    for block in getattr(result, "content", None) or ():
        kind = getattr(block, "type", "")
        if kind == "text":
            if block.text:
                parts.append(block.text)
        elif kind == "resource":
            text = getattr(getattr(block, "resource", None), "text", None)
            if text:
                parts.append(text)
            else:
                other.append("resource")
        elif kind == "resource_link":
            other.append(f"resource link {getattr(block, 'uri', '')}")
        else:
            mime = getattr(block, "mime_type", None)
            other.append(f"{kind} ({mime})" if mime else str(kind))
    if parts:
        return "\n".join(parts)
    if other:
        return "The tool returned non-text content: " + ", ".join(other) + "."
    return ""


def tool_result(result: Any) -> Any:
    """What a successful ``CallToolResult`` reports to the model."""
    text = _text_of(result)
    if text and not text.startswith("The tool returned non-text"):
        return text
    structured = getattr(result, "structured_content", None)
    if structured is not None:
        return structured
    return text or EMPTY_RESULT


def call_error_text(name: str, detail: str) -> str:
    """The error result of a failed call (one line, bounded)."""
    detail = " ".join(detail.split()) or "no detail"
    if len(detail) > _MAX_DETAIL:
        detail = detail[:_MAX_DETAIL] + "…"
    return f"The tool `{name}` failed: {detail}"
