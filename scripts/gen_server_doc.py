"""Regenerate the configuration reference in docs/server.md from the schema (flowcat.config._schema).

Run: uv run python scripts/gen_server_doc.py. Only the text between the BEGIN/END markers is
rewritten; the rest of docs/server.md is written by hand. tests/test_server_doc.py checks it is current.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from flowcat.config import _schema as schema

DOC = Path(__file__).resolve().parent.parent / "docs" / "server.md"
BEGIN = "<!-- BEGIN GENERATED: configuration reference (scripts/gen_server_doc.py) -->"
END = "<!-- END GENERATED -->"

MODELS: list[tuple[str, type[BaseModel]]] = [
    ("(top level)", schema.FlowcatConfig),
    ("server", schema.ServerConfig),
    ("sip", schema.SIPConfig),
    ("sip.registrar", schema.SIPRegistrarConfig),
    ("sip.session_timers", schema.SIPSessionTimersConfig),
    ("agents.NAME", schema.AgentConfig),
    ("agents.NAME.brain (kind: llm)", schema.LLMBrainConfig),
    ("agents.NAME.brain.tools[]", schema.ToolConfig),
    ("agents.NAME.brain (kind: graph)", schema.GraphBrainConfig),
    ("agents.NAME.brain (kind: remote)", schema.RemoteBrainConfig),
    ("agents.NAME.brain (kind: websocket)", schema.WebSocketBrainConfig),
    ("agents.NAME.topology (mode: cascaded)", schema.CascadedTopology),
    ("agents.NAME.topology (mode: realtime)", schema.RealtimeTopology),
    ("agents.NAME.topology.context_relay (mode: realtime)", schema.ContextRelayConfig),
    ("agents.NAME.topology.stt / .llm / .tts / .context_relay.summarizer", schema.ProviderConfig),
    ("agents.NAME.vad", schema.VADConfig),
    ("agents.NAME.turns", schema.TurnsConfig),
]


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type(a) for a in args)
    if origin in (list, tuple, set):
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__name__
    name = getattr(annotation, "__name__", None) or str(annotation)
    return {"Any": "any", "str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(name, name)


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "**required**"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(defaults below)"
    if value == "":
        return '`""`'
    if isinstance(value, str):
        text = " ".join(value.split())
        return f"`{text[:60]}…`" if len(text) > 60 else f"`{text}`"
    return f"`{value!r}`" if value not in ({}, []) else f"`{'{}' if value == {} else '[]'}`"


def _doc(model: type[BaseModel]) -> str:
    return " ".join((inspect.getdoc(model) or "").split("\n\n")[0].split())


def reference_markdown() -> str:
    """The generated part of docs/server.md."""
    out = [BEGIN, ""]
    for where, model in MODELS:
        out.append(f"### `{where}` — {model.__name__}")
        out.append("")
        out.append(_doc(model))
        out.append("")
        out.append("| setting | type | default | description |")
        out.append("|---|---|---|---|")
        for name, field in model.model_fields.items():
            desc = (field.description or "").replace("|", "\\|")
            ge = [m for m in field.metadata if hasattr(m, "ge")]
            le = [m for m in field.metadata if hasattr(m, "le")]
            bounds = []
            if ge:
                bounds.append(f">= {ge[0].ge}")
            if le:
                bounds.append(f"<= {le[0].le}")
            if bounds:
                desc = (desc + " " if desc else "") + f"({', '.join(bounds)})"
            out.append(f"| `{name}` | {_type(field.annotation)} | {_default(field)} | {desc} |")
        out.append("")
    out.append(f"Transports an agent can list: {', '.join(f'`{t}`' for t in schema.TRANSPORTS)}.")
    out.append("")
    out.append(END)
    return "\n".join(out)


def render(current: str) -> str:
    """``current`` (docs/server.md) with its generated part replaced."""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(current):
        raise SystemExit(f"{DOC}: markers not found")
    return pattern.sub(lambda _m: reference_markdown(), current)


def main() -> None:
    DOC.write_text(render(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
