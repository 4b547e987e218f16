"""SIP calls under the worker's agents and admission: :func:`serve_sip` and :func:`serve_sip_config`.

A :class:`~flowcat.transports.sip.SIPServer` whose factory is the worker's. Each
call's :class:`~flowcat.serializers.CallInfo` (carrier ``"sip"``, Call-ID, From/To
users, the dialled number and the configured headers in ``extra``) picks its agent:

* with a config's ``sip:`` section (``flowcat serve AGENTS.yaml``), the dialled
  number — the Request-URI's user, else the To user — looked up in ``sip.routes``,
  else ``sip.default_agent``; no agent: the INVITE is answered ``404 Not Found``;
* without one, the worker's app (``--app``, default echo) answers every call.

The agent's processors run between the call's SIP input and output with the
worker's pipeline rates and idle timeout. The call takes one slot of the worker's
:class:`~flowcat.server.ServerState` admission (shared with its WebSocket and
AudioSocket calls) and one of its agent's; over capacity or while draining the
INVITE is refused with ``503`` + ``Retry-After``. The call is counted in the worker's
calls like a carrier call (``/healthz``, ``/metrics``, a drain ends it with a goodbye).
OPTIONS report the worker's calls and capacity.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

from ..errors import CapacityError, ConfigError, SIPAuthError, SIPCallError, SIPRefusal
from ..runtime import Pipeline, PipelineParams, PipelineTask
from ..transports.sip import SessionTimers, SIPServer, SIPTransport
from ._agents import Agent
from ._apps import AppFactory, default_app, is_after_output
from ._calls import admit, user_processors
from ._logging import new_call_id
from ._session import CallRecord
from ._state import ServerConfig, ServerState

if TYPE_CHECKING:
    from ..config import SIPConfig

__all__ = ["agent_for_number", "serve_sip", "serve_sip_config"]

logger = logging.getLogger("flowcat.server")


def agent_for_number(
    state: ServerState, routes: dict[str, str], default: str | None, number: str | None
) -> Agent:
    """The agent a dialled ``number`` reaches (``routes``, else ``default``); raises
    :class:`~flowcat.errors.SIPRefusal` (``404``) when none does."""
    agents = state.config.agents
    name = routes.get(number or "") if number else None
    if name is None:
        name = default
    agent = agents.get(name) if name is not None else None
    if agent is None:
        raise SIPRefusal(f"no agent for {number!r}", 404, "Not Found")
    return agent


def _factory(state: ServerState, sip: SIPConfig | None = None) -> Any:
    routes = dict(sip.routes) if sip is not None else {}
    default = sip.default_agent if sip is not None else None

    def build(transport: SIPTransport) -> PipelineTask:
        call = transport.call
        agent: Agent | None = None
        if sip is not None:
            number = call.extra.get("dialled") or call.to_number
            agent = agent_for_number(state, routes, default, number)
        if not admit(state, agent):
            adm = state.admission
            raise CapacityError(
                f"{'draining' if adm.draining else 'at capacity'} ({adm.active} of {adm.capacity} calls)"
            )
        try:
            cfg = state.config
            if agent is not None:
                call.extra.setdefault("agent", agent.name)
            procs = user_processors(cfg, call, agent.app if agent is not None else None)
            head = [p for p in procs if not is_after_output(p)]
            tail = [p for p in procs if is_after_output(p)]
            name = agent.name if agent is not None else "default"
            record = CallRecord(agent=name, transport="sip", call_id=new_call_id())
            if agent is not None and state.config.turn_metrics and state.metrics.enabled:
                observer = state.metrics.observer(name)
                if observer is not None:
                    record.observers.append(observer)
            task = PipelineTask(
                Pipeline([transport.input(), *head, transport.output(), *tail]),
                params=PipelineParams(
                    audio_in_sample_rate=cfg.audio_in_sample_rate,
                    audio_out_sample_rate=cfg.audio_out_sample_rate,
                ),
                idle_timeout_secs=cfg.idle_timeout_secs,
                observers=record.observers or None,
            )
            record.task = task
        except BaseException:
            _release(state, agent)
            raise
        _track(state, agent, record)
        logger.info("sip: call %s to %s: agent %s", call.call_id, call.extra.get("dialled"), name)
        return task

    return build


def _release(state: ServerState, agent: Agent | None) -> None:
    state.admission.release()
    if agent is not None:
        agent.admission.release()


def _track(state: ServerState, agent: Agent | None, record: CallRecord) -> None:
    """Count the call in the worker (the SIP call's own task: ``state.calls``, drains, metrics)
    until that task ends; then its slots are released."""
    current = asyncio.current_task()
    assert current is not None  # noqa: S101 - invariant: factories run in the call's task
    name = record.agent
    state.calls.add(current)
    state.records[current] = record
    state.metrics.call_started(name, "sip")

    def done(task: asyncio.Task[Any]) -> None:
        state.calls.discard(task)
        state.records.pop(task, None)
        _release(state, agent)
        state.finished_calls += 1
        state.metrics.call_ended(name, "sip", record.task)
        if not state.calls and state.collector is not None:
            state.collector.idle()

    current.add_done_callback(done)


async def serve_sip(
    host: str,
    port: int,
    app_factory: AppFactory | None = None,
    *,
    state: ServerState | None = None,
    **kwargs: Any,
) -> SIPServer:
    """Answer SIP calls on ``host:port`` (UDP) with the worker's app, one pipeline per call,
    and return the started server.

    Args:
        host: Bind address of the SIP and RTP sockets.
        port: SIP port (0: ephemeral; read ``server.port``).
        app_factory: ``CallInfo → processors``; used only without ``state`` (default: echo).
        state: The worker state to share (admission, app, pipeline rates, idle timeout).
        kwargs: Passed to :class:`~flowcat.transports.sip.SIPServer` (``public_address``,
            ``rtp_ports``, ``codecs``, ``ring_secs``, ``inband_dtmf``, ``timers``, …).
    """
    st = state if state is not None else ServerState(ServerConfig(app=app_factory or default_app))
    kwargs.setdefault("load", lambda: _load(st))
    server = SIPServer(_factory(st), host=host, port=port, **kwargs)
    await server.start()
    return server


def _load(state: ServerState) -> tuple[int, int]:
    """What OPTIONS reports: the worker's calls and capacity, 0 while it drains (then OPTIONS is
    answered 503 and a dispatcher in front stops sending it calls)."""
    adm = state.admission
    return adm.active, 0 if adm.draining else adm.capacity


def _slice(ports: tuple[int, int], worker: int, workers: int) -> tuple[int, int]:
    """Worker ``worker``'s even-aligned share of the RTP range ``ports``."""
    first, last = ports
    size = ((last - first) // max(1, workers)) & ~1  # even: each slice starts on an even port
    if size < 2:
        raise ConfigError(f"sip.rtp_ports {list(ports)}: too small for {workers} workers")
    start = first + worker * size
    return start, start + size - 1 if worker < workers - 1 else last


async def serve_sip_config(
    state: ServerState,
    sip: SIPConfig,
    *,
    host: str,
    port: int | None = None,
    worker: int = 0,
    workers: int = 1,
    **kwargs: Any,
) -> SIPServer:
    """The ``sip:`` section of a config, served by one worker: the listener (``port`` overrides
    ``sip.port``; worker ``i`` of several listens on ``port + i`` with its slice of the RTP
    range), the number → agent routes, and the registration at ``sip.registrar`` (credentials
    from the environment). ``kwargs`` go to :class:`~flowcat.transports.sip.SIPServer`."""
    base = sip.port if port is None else port
    timers = sip.session_timers
    kwargs.setdefault("load", lambda: _load(state))
    server = SIPServer(
        _factory(state, sip),
        host=sip.host or host,
        port=base + worker if base else 0,
        public_address=sip.public_address,
        rtp_ports=_slice(sip.rtp_ports, worker, workers),
        codecs=tuple(sip.codecs),
        ring_secs=sip.ring_secs,
        inband_dtmf=sip.inband_dtmf,
        call_headers=tuple(sip.headers),
        refer_policy=sip.refer,
        session_timers=SessionTimers(timers.session_expires, timers.min_se, timers.refresh_method)
        if timers.enabled
        else None,
        **kwargs,
    )
    creds = _credentials(sip.registrar) if sip.registrar is not None else None
    await server.start()
    if sip.registrar is not None and creds is not None:
        try:
            await _register(server, sip.registrar, *creds)
        except SIPAuthError as exc:  # wrong credentials: the configuration's to fix
            await server.stop()
            raise ConfigError(f"sip.registrar: {exc}") from None
        except SIPCallError as exc:  # the registrar is unreachable or failing: keep trying
            logger.error("sip: registration at %s failed (%s); retrying every %g s", sip.registrar.address,
                         exc, REGISTER_RETRY)  # fmt: skip
            server.track(
                asyncio.get_running_loop().create_task(_register_later(server, sip.registrar, *creds))
            )
        except BaseException:
            await server.stop()
            raise
    return server


REGISTER_RETRY = 30.0
"""Seconds between registration attempts while the registrar fails."""


async def _register_later(server: SIPServer, reg: Any, username: str | None, password: str | None) -> None:
    while True:
        await asyncio.sleep(REGISTER_RETRY)
        try:
            await _register(server, reg, username, password)
            return
        except SIPCallError as exc:
            logger.warning("sip: registration at %s failed again: %s", reg.address, exc)


def _credentials(reg: Any) -> tuple[str | None, str | None]:
    """The registrar's digest username and password, from the environment variables named."""
    username = os.environ.get(reg.username_env) if reg.username_env else None
    password = os.environ.get(reg.password_env) if reg.password_env else None
    for field, var, value in (
        ("username_env", reg.username_env, username),
        ("password_env", reg.password_env, password),
    ):
        if var and value is None:
            raise ConfigError(f"sip.registrar.{field}: the environment variable {var} is not set")
    return username, password


async def _register(server: SIPServer, reg: Any, username: str | None, password: str | None) -> None:
    host, _, port_text = reg.address.rpartition(":")
    if not host or not port_text.isdigit():
        host, port_text = reg.address, ""
    port = int(port_text) if port_text else 5060
    await server.register(
        (host.strip("[]"), port), reg.user, password, username=username or None, domain=reg.domain,
        expires=reg.expires,
    )  # fmt: skip
    logger.info("sip: registered %s at %s:%d", reg.user, host, port)
