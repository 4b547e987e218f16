"""Tool schemas: :class:`FunctionSchema` and building one from a plain function.

A *direct function* is ``async def fn(params: FunctionCallParams, a: int, b: str = "x")``
with a Google-style docstring: the summary becomes the tool description, each
``Args:`` entry the description of its parameter, the annotations the JSON-schema
types; parameters without a default are required.
"""

from __future__ import annotations

import enum
import inspect
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

from ..errors import ConfigError

__all__ = ["FunctionSchema", "function_schema"]


@dataclass
class FunctionSchema:
    """A provider-neutral tool definition (pipecat's ``FunctionSchema`` fields).

    One class for every layer: :class:`flowcat.services.adapters.ToolsSchema` holds
    these, and ``flowcat.agent.FunctionSchema`` is this class.

    Attributes:
        name: Tool name (the function name the model calls).
        description: What the tool does (for the model).
        properties: JSON-schema properties of the arguments.
        required: Names of the required arguments.
        handler: Optional handler; an LLM service may register it by name (not compared).

    Raises:
        ConfigError: ``name`` is empty.
    """

    name: str
    description: str = ""
    properties: dict[str, Any] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)
    handler: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"FunctionSchema: name must be a non-empty string, got {self.name!r}")
        self.properties = dict(self.properties or {})
        self.required = list(self.required or [])

    def parameters(self) -> dict[str, Any]:
        """The arguments as one JSON-schema object."""
        return {"type": "object", "properties": self.properties, "required": self.required}

    def to_default_dict(self) -> dict[str, Any]:
        """``{"name", "description", "parameters"}`` (the common function-declaration shape)."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters()}

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI Chat Completions ``tools[]`` entry."""
        return {"type": "function", "function": self.to_default_dict()}


def _json_type(tp: Any) -> dict[str, Any]:
    if tp is inspect.Parameter.empty or tp is Any:
        return {}
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _json_type(args[0])
        return {"anyOf": [_json_type(a) for a in args]}
    if origin is Literal:
        values = list(get_args(tp))
        out = _json_type(type(values[0])) if values else {}
        out["enum"] = values
        return out
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set):
        items = get_args(tp)
        arr: dict[str, Any] = {"type": "array"}
        if items and items[0] is not Ellipsis:
            arr["items"] = _json_type(items[0])
        return arr
    if origin is dict or tp is dict:
        return {"type": "object"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    return {}


_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?)\s*:\s*$")
_ARG = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    lines = inspect.cleandoc(doc).splitlines() if doc else []
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent = -1
    for line in lines:
        m = _SECTION.match(line)
        if m:
            section = m.group(1)
            current = None
            arg_indent = -1
            continue
        if section is None:
            summary.append(line)
            continue
        if section not in ("Args", "Arguments", "Parameters") or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        am = _ARG.match(line)
        if am and (arg_indent < 0 or indent <= arg_indent):
            arg_indent = indent
            current = am.group(1).lstrip("*")
            args[current] = am.group(2).strip()
        elif current is not None:
            args[current] = (args[current] + " " + line.strip()).strip()
    return " ".join(s.strip() for s in summary if s.strip()), args


def function_schema(fn: Callable[..., Any], name: str | None = None) -> FunctionSchema:
    """Build the schema of a direct function (its first parameter, the call params, is skipped).

    Raises:
        ConfigError: The function takes no ``params`` parameter, or uses ``*args``/``**kwargs``.
    """
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    if not params:
        raise ConfigError(f"direct function {fn.__name__} must take FunctionCallParams first")
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolved forward references: fall back to raw annotations
        hints = {}
    description, arg_docs = _parse_docstring(inspect.getdoc(fn) or "")
    properties: dict[str, Any] = {}
    required: list[str] = []
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ConfigError(f"direct function {fn.__name__}: *args/**kwargs cannot be described")
        prop = _json_type(hints.get(p.name, p.annotation))
        if p.name in arg_docs and arg_docs[p.name]:
            prop["description"] = arg_docs[p.name]
        properties[p.name] = prop
        if p.default is p.empty:
            required.append(p.name)
    return FunctionSchema(name or fn.__name__, description, properties, required)
