"""The agents a server serves: each a name, a per-call factory, the transports it answers on
and its own admission (capacity).

:func:`agents_from_config` checks every agent of a loaded configuration file
(:mod:`flowcat.config`) at start-up: an agent with problems is reported (``file:line``)
and left out, the others are served. The routes find an agent by name with
:meth:`Agents.get`; a transport the agent does not list is refused with 404
(:meth:`Agents.require`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..runtime import FrameProcessor
from ._admission import Admission
from ._apps import AppFactory, CallInfo, after_output

if TYPE_CHECKING:
    from ..config import LoadedConfig

__all__ = ["Agent", "Agents", "agents_from_config"]

logger = logging.getLogger("flowcat.server")


@dataclass
class Agent:
    """One served agent."""

    name: str
    app: AppFactory
    transports: frozenset[str]
    admission: Admission
    description: str = ""
    variables: dict[str, Any] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        out = self.admission.snapshot()
        out["transports"] = sorted(self.transports)
        return out


class Agents:
    """The agents of one worker, by name (the first is the default agent: the old unprefixed
    carrier routes and ``/protobuf/ws`` serve it when no ``--app`` is given)."""

    def __init__(self, agents: list[Agent] | None = None, problems: dict[str, list[str]] | None = None) -> None:
        self.by_name: dict[str, Agent] = {a.name: a for a in agents or []}
        self.problems: dict[str, list[str]] = dict(problems or {})
        """Agents of the file that are not served, with what keeps each from running."""

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def __iter__(self) -> Any:
        return iter(self.by_name.values())

    @property
    def default(self) -> Agent | None:
        return next(iter(self.by_name.values()), None)

    def get(self, name: str) -> Agent | None:
        return self.by_name.get(name)

    def require(self, name: str, transport: str) -> Agent:
        """The agent ``name`` if it answers on ``transport`` (else 404 with a body that says why)."""
        agent = self.by_name.get(name)
        if agent is None:
            why = f"no agent {name!r}"
            if name in self.problems:
                why += " (it is configured but not served: see the server's start-up log)"
            raise web.HTTPNotFound(text=why)
        if transport not in agent.transports:
            raise web.HTTPNotFound(
                text=f"agent {name!r} is not reachable by {transport} "
                f"(its transports: {', '.join(sorted(agent.transports)) or 'none'})"
            )
        return agent


def _config_app(make: Callable[[], Any], name: str) -> AppFactory:
    """An :data:`AppFactory` over a config agent's per-call factory."""

    def app(call: CallInfo) -> list[FrameProcessor]:
        built = make()
        call.extra.setdefault("agent", name)
        _tell_brain(built.brain, call)
        return [*built.processors, *(after_output(p) for p in built.after_output)]

    return app


def _tell_brain(brain: Any, call: CallInfo) -> None:
    """Give a brain's :class:`~flowcat.agent.BrainCall` what the transport knows of the call:
    caller, callee, transport and, for SIP, ``variables["sip"]`` (Call-ID, From, To, the
    dialled number and the configured headers)."""
    info = getattr(brain, "call", None)
    if info is None or call.carrier == "warmup":
        return
    info.caller = info.caller or call.from_number
    info.callee = info.callee or call.to_number
    info.transport = info.transport or call.carrier
    if call.carrier == "sip":
        extra = call.extra
        info.variables["sip"] = {
            "call_id": call.call_id,
            "from": extra.get("from"),
            "to": extra.get("to"),
            "request_uri": extra.get("request_uri"),
            "dialled": extra.get("dialled"),
            "headers": dict(extra.get("headers") or {}),
        }


def agents_from_config(
    loaded: LoadedConfig, *, capacity: int, only: Callable[[str], bool] | None = None
) -> Agents:
    """Check and build every agent of ``loaded``; the ones with problems are left out
    (``Agents.problems`` says why, one ``file:line: …`` line per problem)."""
    from ..config import agent_pipeline
    from ..errors import ConfigError

    served: list[Agent] = []
    problems: dict[str, list[str]] = {}
    for name, spec in loaded.config.agents.items():
        try:
            make = agent_pipeline(loaded, name)
        except ConfigError as exc:
            found = getattr(exc, "problems", None)
            problems[name] = [str(p) for p in found] if found else [str(exc)]
            continue
        if only is not None and not only(name):
            problems[name] = ["left out at start-up"]
            continue
        served.append(
            Agent(
                name=name,
                app=_config_app(make, name),
                transports=frozenset(spec.transports),
                admission=Admission(capacity=spec.capacity or capacity),
                description=spec.description,
                variables=dict(spec.variables),
            )
        )
    return Agents(served, problems)
