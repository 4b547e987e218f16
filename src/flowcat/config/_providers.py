"""Providers named in a configuration: checked against the registry, built into services.

A :class:`~flowcat.config.ProviderConfig` names a registered provider
(``flowcat.services.providers()``); its ``model``, ``voice`` and ``options`` are mapped
onto the service's constructor by name, and options that are fields of the service's
settings dataclass go into a settings object. Keys come only from the environment: the
provider's variable (``ProviderInfo.env``) must be set, else the agent is reported.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import typing
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError, MissingExtraError
from ..services import ProviderInfo, extra_missing, providers
from ._load import ConfigProblem, LoadedConfig, _suggest
from ._schema import (
    AgentConfig,
    CascadedTopology,
    GraphBrainConfig,
    LLMBrainConfig,
    ProviderConfig,
    RealtimeTopology,
)

__all__ = ["build_service", "check_agent", "find_provider", "realtime_spec", "summarizer_spec"]

_KIND_TITLE = {"stt": "STT", "llm": "LLM", "tts": "TTS", "realtime": "realtime"}


def find_provider(kind: str, name: str) -> ProviderInfo:
    """The registered ``kind`` provider called ``name``.

    Raises:
        ConfigError: No such provider (with the close names).
    """
    known = {p.name: p for p in providers(kind)}  # type: ignore[arg-type]
    info = known.get(name)
    if info is None:
        raise ConfigError(
            f"unknown {_KIND_TITLE[kind]} provider {name!r}{_suggest(name, list(known))}; "
            f"known: {', '.join(sorted(known))}"
        )
    return info


def realtime_spec(topo: RealtimeTopology, agent: AgentConfig) -> ProviderConfig:
    """The realtime service's provider spec: the topology's, plus the turns (``server_vad``) and
    the llm brain's system prompt as ``instructions`` (an option of the same name wins)."""
    options: dict[str, Any] = {"server_vad": topo.turns == "server"}
    if isinstance(agent.brain, LLMBrainConfig):
        options["instructions"] = agent.brain.system_prompt
    options.update(topo.options)
    return ProviderConfig(provider=topo.provider, model=topo.model, voice=topo.voice, options=options)


def summarizer_spec(topo: RealtimeTopology) -> ProviderConfig | None:
    """The LLM that summarizes for ContextRelay (None: verbatim). ``auto``: the LLM provider of the
    same name as the realtime one, else the first sharing its key variable (``gemini`` → ``google``)."""
    relay = topo.context_relay
    if relay is None or relay.summarizer == "verbatim":
        return None
    if isinstance(relay.summarizer, ProviderConfig):
        return relay.summarizer
    llms = {p.name: p for p in providers("llm")}
    if topo.provider in llms:
        return ProviderConfig(provider=topo.provider)
    try:
        env = find_provider("realtime", topo.provider).env
    except ConfigError:
        return None
    same_key = sorted(name for name, p in llms.items() if env and p.env == env)
    return ProviderConfig(provider=same_key[0]) if same_key else None


def _needed_providers(agent: AgentConfig) -> list[tuple[str, ProviderConfig, tuple[str, ...]]]:
    """(kind, spec, location under the agent) of each provider the agent builds."""
    topo = agent.topology
    out: list[tuple[str, ProviderConfig, tuple[str, ...]]]
    if isinstance(topo, RealtimeTopology):
        out = [("realtime", realtime_spec(topo, agent), ("topology",))]
        relay = topo.context_relay
        if relay is not None and isinstance(relay.summarizer, ProviderConfig):
            out.append(("llm", relay.summarizer, ("topology", "context_relay", "summarizer")))
        return out
    out = [("stt", topo.stt, ("topology", "stt")), ("tts", topo.tts, ("topology", "tts"))]
    if topo.llm is not None:
        out.insert(1, ("llm", topo.llm, ("topology", "llm")))
    return out


def _inits(cls: type) -> list[Any]:
    """The ``__init__`` chain of ``cls``: its own, then its parents' while each passes ``**kwargs`` on."""
    out = []
    for k in cls.__mro__:
        init = k.__dict__.get("__init__")
        if init is None or k is object:
            continue
        out.append(init)
        if not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(init).parameters.values()):
            break
    return out


def _settings_type(cls: type) -> type | None:
    """The settings dataclass a service's ``settings`` parameter takes, if any."""
    for init in _inits(cls):
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # noqa: BLE001 - annotations a provider did not make resolvable
            return None
        if "settings" not in hints:
            continue
        ann = hints["settings"]
        for arg in typing.get_args(ann) or (ann,):
            if isinstance(arg, type) and dataclasses.is_dataclass(arg):
                return arg
        return None
    return None


_NOT_OPTIONS = frozenset({"self", "settings", "api_key"})


def _plan(info: ProviderInfo, spec: ProviderConfig) -> tuple[type, dict[str, Any], dict[str, Any]]:
    """(class, constructor kwargs, settings fields) for ``spec``; raises ConfigError on a bad option
    or a required parameter left out."""
    cls = info.load()
    if not isinstance(cls, type):
        raise ConfigError(f"{info.service} is not a class")
    params: dict[str, inspect.Parameter] = {}
    for init in _inits(cls):  # a subclass's own parameters first, then those it passes on
        for pname, param in inspect.signature(init).parameters.items():
            if param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                params.setdefault(pname, param)
    settings_cls = _settings_type(cls)
    settings_fields = {f.name for f in dataclasses.fields(settings_cls)} if settings_cls else set()
    kwargs: dict[str, Any] = {}
    fields: dict[str, Any] = {}

    def put(name: str, value: Any, aliases: Sequence[str] = ()) -> None:
        for candidate in (name, *aliases):
            if candidate in params and candidate not in _NOT_OPTIONS:
                kwargs[candidate] = value
                return
        for candidate in (name, *aliases):
            if candidate in settings_fields:
                fields[candidate] = value
                return
        accepted = sorted((set(params) | settings_fields) - {"self", "settings", "api_key", "kwargs", "extra"})
        raise ConfigError(
            f"{cls.__name__} has no parameter or setting {name!r}{_suggest(name, accepted)}; "
            f"accepted: {', '.join(accepted)}"
        )

    if spec.model is not None:
        put("model", spec.model)
    if spec.voice is not None:
        put("voice", spec.voice, ("voice_id",))
    for key, value in spec.options.items():
        put(key, value)
    own = inspect.signature(_inits(cls)[0]).parameters.values()  # a parent's are filled by the subclass
    missing = [p.name for p in own if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
               and p.name not in _NOT_OPTIONS and p.name not in kwargs]
    if missing:
        raise ConfigError(f"{cls.__name__} needs {', '.join(repr(m) for m in missing)} in options")
    return cls, kwargs, fields


def build_service(kind: str, spec: ProviderConfig) -> Any:
    """Construct the service ``spec`` describes (its key from the environment).

    Raises:
        ConfigError: Unknown provider or option.
        MissingExtraError: The provider's extra is not installed.
    """
    info = find_provider(kind, spec.provider)
    cls, kwargs, fields = _plan(info, spec)
    if fields:
        settings_cls = _settings_type(cls)
        if settings_cls is None:  # a provider whose settings type cannot be read: say so, not AttributeError
            raise ConfigError(f"{kind} provider {spec.provider!r}: {cls.__name__} takes no settings "
                              f"({', '.join(sorted(fields))} cannot be set)")
        kwargs["settings"] = settings_cls(**fields)
    return cls(**kwargs)


def _extra_missing(info: ProviderInfo) -> str | None:
    """The extra to install, when the provider needs one that is not (fully) installed."""
    if info.extra is None:
        return None
    return info.extra if extra_missing(info.extra) else None


def check_agent(loaded: LoadedConfig, name: str, environ: dict[str, str] | None = None) -> list[ConfigProblem]:
    """What keeps agent ``name`` from running: unknown providers or options, a missing
    extra (with the install command), a missing key (with the variable), a brain that
    needs an LLM the topology lacks, a graph file that is not there."""
    env = os.environ if environ is None else environ
    agent = loaded.config.agents[name]
    base = ("agents", name)
    problems: list[ConfigProblem] = []
    topo = agent.topology
    for kind, spec, where in _needed_providers(agent):
        loc = (*base, *where)
        try:
            info = find_provider(kind, spec.provider)
            _plan(info, spec)
        except (ConfigError, MissingExtraError) as exc:
            problems.append(loaded.problem((*loc, "provider"), str(exc)))
            continue
        extra = _extra_missing(info)
        if extra is not None:
            problems.append(loaded.problem(
                (*loc, "provider"), f"{info.title} needs the '{extra}' extra: pip install 'flowcat[{extra}]'"
            ))
        if info.env and not env.get(info.env):
            problems.append(loaded.problem(
                (*loc, "provider"), f"{info.title} needs a key: set the environment variable {info.env}"
            ))
    if isinstance(topo, RealtimeTopology) and not isinstance(agent.brain, LLMBrainConfig):
        problems.append(loaded.problem(
            (*base, "brain", "kind"),
            f"topology mode: realtime runs the llm brain (the speech-to-speech model is the brain; its "
            f"system_prompt and tools go to the model), not kind: {agent.brain.kind}",
        ))
    if isinstance(agent.brain, LLMBrainConfig):
        from ._tools import load_tool

        for i, tool in enumerate(agent.brain.tools):
            try:
                load_tool(tool, loaded.base_dir)
            except ConfigError as exc:
                problems.append(loaded.problem((*base, "brain", "tools", i, "function"), str(exc)))
    brain = agent.brain
    needs_llm = isinstance(brain, LLMBrainConfig) or (isinstance(brain, GraphBrainConfig) and brain.decide == "llm")
    if needs_llm and isinstance(topo, CascadedTopology) and topo.llm is None:
        problems.append(loaded.problem((*base, "topology"), f"the {brain.kind} brain needs topology.llm"))
    if isinstance(brain, GraphBrainConfig) and isinstance(brain.graph, str):
        path = loaded.resolve(brain.graph)
        if not path.is_file():
            problems.append(loaded.problem((*base, "brain", "graph"), f"no graph file at {path}"))
    for field_name in ("token_env",):
        var = getattr(brain, field_name, None)
        if var and not env.get(var):
            problems.append(loaded.problem((*base, "brain", field_name), f"set the environment variable {var}"))
    return problems
