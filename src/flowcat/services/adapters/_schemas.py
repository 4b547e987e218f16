"""Provider-neutral tool schemas: :class:`FunctionSchema`, :class:`ToolsSchema`.

A context's tools are a :class:`ToolsSchema` (or ``None``: no tools). Its
*standard* tools are function schemas every adapter can translate (direct functions
are turned into one); its *custom*
tools are vendor-shaped entries passed to one adapter type as they are (e.g.
Gemini's ``google_search``). :class:`FunctionSchema` is the services layer's one
class (re-exported here); any object with ``name``, ``description``, ``properties``
and ``required`` attributes also counts as a function schema (a plain dataclass,
say), so schemas built elsewhere mix freely.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

from ...errors import ConfigError
from .._function_schema import FunctionSchema, function_schema

__all__ = ["NOT_GIVEN", "AdapterType", "FunctionSchema", "ToolsSchema", "normalize_tools"]

NOT_GIVEN: None = None
"""pipecat's "no tools / no tool choice" sentinel; in flowcat it is simply ``None``."""


class AdapterType(Enum):
    """Which adapter a custom (vendor-shaped) tool is meant for."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"
    BEDROCK = "bedrock"


def _from_openai_dict(tool: Any) -> Any:
    """An OpenAI Chat Completions ``tools[]`` entry as a :class:`FunctionSchema`; anything else as is."""
    if not (isinstance(tool, dict) and tool.get("type") == "function" and isinstance(tool.get("function"), dict)):
        return tool
    fn = tool["function"]
    params = fn.get("parameters") or {}
    return FunctionSchema(
        name=fn.get("name", ""),
        description=fn.get("description", ""),
        properties=params.get("properties", {}),
        required=params.get("required", []),
    )


def _is_schema_like(tool: Any) -> bool:
    return all(hasattr(tool, a) for a in ("name", "description", "properties", "required"))


class ToolsSchema:
    """The tools offered to the model: standard function schemas plus custom vendor entries.

    Args:
        standard_tools: Function schemas (or objects shaped like one), or direct functions
            ``async def fn(params, city: str)`` whose schema is built from their signature
            and docstring (:func:`flowcat.services.function_schema`).
        custom_tools: Vendor-shaped tool entries per adapter type, passed through as they are.

    Raises:
        ConfigError: A standard tool is not schema-shaped, or two share a name.
    """

    __slots__ = ("_custom", "_direct", "_standard")

    def __init__(
        self,
        standard_tools: Iterable[Any] = (),
        custom_tools: Mapping[AdapterType, list[dict[str, Any]]] | None = None,
    ) -> None:
        standard: list[Any] = []
        self._direct: list[tuple[Any, Any]] = []
        for tool in standard_tools:
            if _is_schema_like(tool):
                standard.append(tool)
            elif callable(tool):  # a direct function: its schema comes from its signature and docstring
                schema = function_schema(tool)
                standard.append(schema)
                self._direct.append((schema, tool))
            else:
                raise ConfigError(
                    f"ToolsSchema: {tool!r} is neither a function schema (name, description, properties, "
                    "required) nor a function"
                )
        seen: set[str] = set()
        for tool in standard:
            if tool.name in seen:
                raise ConfigError(f"ToolsSchema: two tools are named {tool.name!r}")
            seen.add(tool.name)
        self._standard = standard
        self._custom: dict[AdapterType, list[dict[str, Any]]] | None = (
            dict(custom_tools) if custom_tools is not None else None
        )

    @property
    def standard_tools(self) -> list[Any]:
        """The function schemas, in order."""
        return self._standard

    @property
    def direct_functions(self) -> list[tuple[Any, Any]]:
        """``(schema, function)`` for each standard tool given as a plain function (to register on the LLM)."""
        return self._direct

    @property
    def custom_tools(self) -> dict[AdapterType, list[dict[str, Any]]] | None:
        """Vendor-shaped entries per adapter type (None: none)."""
        return self._custom

    @custom_tools.setter
    def custom_tools(self, value: Mapping[AdapterType, list[dict[str, Any]]] | None) -> None:
        self._custom = dict(value) if value is not None else None

    def names(self) -> set[str]:
        """The standard tools' names."""
        return {t.name for t in self._standard}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ToolsSchema):
            return NotImplemented
        return self._standard == other._standard and self._custom == other._custom

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ToolsSchema({sorted(self.names())})"


def normalize_tools(tools: Any) -> ToolsSchema | None:
    """Bring ``tools`` to a :class:`ToolsSchema` (or ``None``: no tools).

    Accepts a ``ToolsSchema``, ``None``, or a list of function schemas. OpenAI-shaped
    entries (``{"type": "function", "function": {"name", "description", "parameters"}}``,
    as pipecat users often pass) become function schemas, so every adapter can send
    them. An empty list means no tools.

    Raises:
        ConfigError: Anything else (the message names what was received).
    """
    if tools is None or isinstance(tools, ToolsSchema):
        return tools
    if isinstance(tools, (list, tuple)):
        return ToolsSchema([_from_openai_dict(t) for t in tools]) if tools else None
    raise ConfigError(
        f"tools must be a ToolsSchema, a list of FunctionSchema or None, got {type(tools).__name__}"
    )
