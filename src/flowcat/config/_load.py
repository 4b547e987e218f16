"""Loading a configuration file: YAML or JSON, validated, every mistake located.

Errors name the file, the line and column, the setting's path and what to do:
an unknown field or provider gets the close names, a missing extra the install
command, a missing key the environment variable, a key written in the file the
variable to move it to.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError
from ._schema import AgentConfig, FlowcatConfig

__all__ = ["ConfigProblem", "LoadedConfig", "load_config", "parse_config"]

_AGENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_SECRET_NAME = re.compile(r"(api[_-]?key|secret|password|passwd|token|credential)", re.IGNORECASE)
_TAGS = ("cascaded", "realtime", "llm", "graph", "remote", "websocket")
_SECRET_NAME_OK = {"token_env", "max_tokens", "max_completion_tokens", "tokens", "max_context_tokens"}


@dataclass(frozen=True)
class ConfigProblem:
    """One mistake: where (``file:line:col``, the setting's path) and what to do."""

    file: str
    line: int | None
    column: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.path or '(top)'}: {self.message}"


@dataclass
class LoadedConfig:
    """A validated configuration and where it came from (paths resolve against ``base_dir``)."""

    config: FlowcatConfig
    file: str
    base_dir: Path
    positions: dict[tuple[str | int, ...], tuple[int, int]] = field(default_factory=dict, repr=False)

    def problem(self, loc: Sequence[str | int], message: str) -> ConfigProblem:
        """A :class:`ConfigProblem` at the setting ``loc`` (its closest known position)."""
        line, col = _position(self.positions, tuple(loc))
        return ConfigProblem(self.file, line, col, _dotted(loc), message)

    def resolve(self, path: str) -> Path:
        """``path`` relative to the configuration file's directory."""
        p = Path(path)
        return p if p.is_absolute() else self.base_dir / p


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _position(
    positions: dict[tuple[str | int, ...], tuple[int, int]], loc: tuple[str | int, ...]
) -> tuple[int | None, int | None]:
    while True:
        if loc in positions:
            return positions[loc]
        if not loc:
            return None, None
        loc = loc[:-1]


MAX_NODES = 200_000
"""Most values a config may hold, aliases expanded (a few nested aliases can stand for billions)."""


def _yaml_error(exc: Exception, file: str) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    line = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
    return ConfigError(f"{file}{line}: not valid YAML/JSON: {getattr(exc, 'problem', None) or exc}")


def _compose(text: str, file: str) -> tuple[Any, dict[tuple[str | int, ...], tuple[int, int]]]:
    """Parse YAML (JSON is read as YAML too) keeping each value's line and column."""
    import yaml

    positions: dict[tuple[str | int, ...], tuple[int, int]] = {}
    nodes = 0

    def walk(node: Any, loc: tuple[str | int, ...]) -> None:
        nonlocal nodes
        nodes += 1
        if nodes > MAX_NODES:
            raise ConfigError(f"{file}: over {MAX_NODES} values (aliases expanded): not a config")
        positions[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if not isinstance(k, yaml.ScalarNode):
                    continue  # a complex key: the loader below says what is wrong with it
                key = k.value
                positions[(*loc, key)] = (k.start_mark.line + 1, k.start_mark.column + 1)
                walk(v, (*loc, key))
                positions[(*loc, key)] = (k.start_mark.line + 1, k.start_mark.column + 1)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, (*loc, i))

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None:
            walk(root, ())
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # also a tag, key or merge the safe loader cannot build
        raise _yaml_error(exc, file) from None
    except RecursionError:
        raise ConfigError(f"{file}: nested too deeply: not a config") from None
    return data, positions


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _fields_at(loc: tuple[str | int, ...]) -> list[str]:
    """Allowed field names of the model at ``loc`` (agent names and unions resolved by shape)."""
    from ._schema import (
        CascadedTopology,
        ContextRelayConfig,
        GraphBrainConfig,
        LLMBrainConfig,
        ProviderConfig,
        RealtimeTopology,
        RemoteBrainConfig,
        ServerConfig,
        ToolConfig,
        TurnsConfig,
        VADConfig,
        WebSocketBrainConfig,
    )

    if not loc:
        return list(FlowcatConfig.model_fields)
    if loc[0] == "server" and len(loc) == 1:
        return list(ServerConfig.model_fields)
    if loc[0] == "agents" and len(loc) >= 2:
        rest = loc[2:]
        if not rest:
            return list(AgentConfig.model_fields)
        head = rest[0]
        if head == "vad" and len(rest) == 1:
            return list(VADConfig.model_fields)
        if head == "turns" and len(rest) == 1:
            return list(TurnsConfig.model_fields)
        if head == "brain" and len(rest) == 3 and rest[1] == "tools":
            return list(ToolConfig.model_fields)
        if head == "brain" and len(rest) <= 2:
            names: set[str] = set()
            for m in (LLMBrainConfig, GraphBrainConfig, RemoteBrainConfig, WebSocketBrainConfig):
                names |= set(m.model_fields)
            return sorted(names)
        if head == "topology":
            if rest[1:] == ("context_relay",):
                return list(ContextRelayConfig.model_fields)
            if len(rest) <= 2:
                return sorted(set(CascadedTopology.model_fields) | set(RealtimeTopology.model_fields))
            if len(rest) <= 3 and rest[1] in ("stt", "llm", "tts"):
                return list(ProviderConfig.model_fields)
            if rest[1:] == ("context_relay", "summarizer"):
                return list(ProviderConfig.model_fields)
    return []


def _problems_from(exc: ValidationError, file: str, positions: dict[tuple[str | int, ...], tuple[int, int]]) -> list[ConfigProblem]:
    out = []
    for err in exc.errors():
        # drop the discriminator tags pydantic inserts after "brain" and "topology"
        clean: list[str | int] = []
        for p in err["loc"]:
            if clean and clean[-1] in ("brain", "topology") and p in _TAGS:
                continue
            clean.append(p)
        if "summarizer" in clean[:-1]:  # a name or a provider: keep the errors of the shape given
            at = clean.index("summarizer") + 1
            member, given = str(clean[at]), err.get("input")
            if (member == "ProviderConfig") == (not isinstance(given, dict) and at + 1 == len(clean)):
                continue
            del clean[at]
            if member != "ProviderConfig":
                line, col = _position(positions, tuple(clean))
                out.append(ConfigProblem(file, line, col, _dotted(clean), f"expected 'auto', 'verbatim' or an LLM "
                                         f"provider ({{provider: NAME, model: ...}}), got {given!r}"))
                continue
        line, col = _position(positions, tuple(clean))
        kind = err["type"]
        if kind == "extra_forbidden":
            name = str(clean[-1])
            msg = f"unknown setting {name!r}" + _suggest(name, _fields_at(tuple(clean[:-1])))
        elif kind == "missing":
            msg = "required setting is missing"
        elif kind == "union_tag_invalid":
            ctx = err.get("ctx", {})
            tag = ctx.get("tag")
            expected = ctx.get("expected_tags", "")
            msg = f"unknown kind {tag!r}; expected one of {expected}" + _suggest(str(tag), [t.strip(" '") for t in str(expected).split(",")])
        elif kind == "union_tag_not_found":
            msg = f"needs a {err.get('ctx', {}).get('discriminator', 'kind')} field"
        elif kind == "literal_error" and len(clean) >= 2 and clean[-2] == "transports":
            from ._schema import TRANSPORTS

            msg = f"unknown transport {err.get('input')!r}; expected one of {', '.join(TRANSPORTS)}" + _suggest(str(err.get("input")), TRANSPORTS)
        else:
            msg = f"{err['msg']} (got {err.get('input')!r})"
        out.append(ConfigProblem(file, line, col, _dotted(clean), msg))
    return out


def _secret_problems(data: Any, loc: tuple[str | int, ...], file: str, positions: dict[tuple[str | int, ...], tuple[int, int]]) -> list[ConfigProblem]:
    out: list[ConfigProblem] = []
    if isinstance(data, dict):
        for k, v in data.items():
            here = (*loc, k)
            if isinstance(k, str) and k not in _SECRET_NAME_OK and _SECRET_NAME.search(k) and not k.endswith("_env"):
                line, col = _position(positions, here)
                out.append(ConfigProblem(
                    file, line, col, _dotted(here),
                    "keys are never read from the configuration file: remove it and set the provider's "
                    "environment variable (docs/providers.md lists them)",
                ))
                continue
            out += _secret_problems(v, here, file, positions)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _secret_problems(v, (*loc, i), file, positions)
    return out


def parse_config(text: str, file: str = "<config>", base_dir: Path | None = None) -> LoadedConfig:
    """Validate ``text`` (YAML or JSON).

    Raises:
        ConfigError: Every problem found, one per line (``file:line:col: path: message``);
            the problems themselves are in ``exc.problems``.
    """
    data, positions = _compose(text, file)
    problems = _secret_problems(data, (), file, positions)
    config = None
    try:
        config = FlowcatConfig.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems += _problems_from(exc, file, positions)
    if config is not None:
        for name in config.agents:
            if not _AGENT_NAME.match(name):
                line, col = _position(positions, ("agents", name))
                problems.append(ConfigProblem(
                    file, line, col, f"agents.{name}",
                    "an agent name is lower-case letters, digits, '-' and '_' (it is part of URLs)",
                ))
        problems += _sip_problems(config, file, positions)
    if problems:
        raise _error(problems)
    assert config is not None  # noqa: S101 - invariant (type narrowing), not input validation
    return LoadedConfig(config, file, base_dir or Path.cwd(), positions)


def _sip_problems(
    config: FlowcatConfig, file: str, positions: dict[tuple[str | int, ...], tuple[int, int]]
) -> list[ConfigProblem]:
    """The ``sip:`` section's references to agents, and its port range."""
    sip = config.sip
    if sip is None:
        return []
    out: list[ConfigProblem] = []
    names = list(config.agents)
    refs: list[tuple[tuple[str | int, ...], str]] = [(("sip", "routes", k), v) for k, v in sip.routes.items()]
    if sip.default_agent is not None:
        refs.append((("sip", "default_agent"), sip.default_agent))
    for loc, agent in refs:
        if agent not in config.agents:
            line, col = _position(positions, loc)
            out.append(
                ConfigProblem(file, line, col, _dotted(loc), f"no agent {agent!r}" + _suggest(agent, names))
            )
    first, last = sip.rtp_ports
    if not 1024 <= first < last <= 65535 or last - first < 2:
        line, col = _position(positions, ("sip", "rtp_ports"))
        out.append(
            ConfigProblem(
                file,
                line,
                col,
                "sip.rtp_ports",
                f"expected [first, last] with 1024 <= first < last <= 65535, got {list(sip.rtp_ports)}",
            )
        )
    return out


def _error(problems: list[ConfigProblem]) -> ConfigError:
    err = ConfigError("\n".join(str(p) for p in problems))
    err.problems = problems  # type: ignore[attr-defined]
    return err


def load_config(path: str | os.PathLike[str]) -> LoadedConfig:
    """Read and validate the configuration file at ``path``.

    Raises:
        ConfigError: The file is missing or unreadable, or invalid (see :func:`parse_config`).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the configuration file: {exc.strerror or exc}") from None
    return parse_config(text, str(p), p.resolve().parent)
