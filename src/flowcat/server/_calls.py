"""Calls, whatever engine serves them (aiohttp or picows): admission (:func:`admit`,
:func:`has_room`, the 503 body), :func:`track` (a call counted while it runs), the app's processors,
the raw, protobuf and carrier calls on an accepted socket, and :func:`drain_state`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..errors import ConfigError
from ..runtime import FrameProcessor, Pipeline, PipelineParams
from ._agents import Agent
from ._apps import AppFactory, CallInfo, is_after_output
from ._carriers import CarrierError, raw_serializer
from ._logging import new_call_id
from ._session import CURRENT_CALL, CallRecord, CallSocket, serve_call
from ._state import ServerConfig, ServerState

__all__ = [
    "RETRY_AFTER",
    "admit",
    "agent_of",
    "busy_payload",
    "carrier_call",
    "drain_state",
    "has_room",
    "protobuf_call",
    "raw_call",
    "track",
    "user_processors",
]

logger = logging.getLogger("flowcat.server")


def _params(cfg: ServerConfig, in_rate: int | None = None, out_rate: int | None = None) -> PipelineParams:
    return PipelineParams(
        audio_in_sample_rate=in_rate or cfg.audio_in_sample_rate,
        audio_out_sample_rate=out_rate or cfg.audio_out_sample_rate,
    )


def _transport_options(cfg: ServerConfig) -> dict[str, Any]:
    """The media WebSocket's transport parameters that the server config sets."""
    return {"audio_out_chunk_ms": cfg.audio_out_chunk_ms}


def user_processors(cfg: ServerConfig, call: CallInfo, app: AppFactory | None = None) -> list[FrameProcessor]:
    """The app's processors for ``call`` (``app``, default the configured one; a single
    processor becomes a list); every transport's server builds its pipeline around them."""
    built = (app or cfg.app)(call)
    if isinstance(built, FrameProcessor):
        return [built]
    procs = list(built)
    if len(procs) > 1 and not all(isinstance(p, FrameProcessor) for p in procs):
        raise ConfigError("the app factory must return processors")
    tail = [p for p in procs if is_after_output(p)]  # stay marked: serve_call puts them after the output
    head = [p for p in procs if not is_after_output(p)]
    return (head if len(head) <= 1 else [Pipeline(head)]) + tail


def agent_of(state: ServerState, request: Any, transport: str) -> Agent | None:
    """The agent a request is for: the route's ``{agent}`` (404 if unknown or not reachable by
    ``transport``), else the default agent where the unprefixed routes serve it, else None."""
    cfg = state.config
    name = request.match_info.get("agent") if hasattr(request, "match_info") else getattr(request, "agent", None)
    if name is not None:
        return cfg.agents.require(name, transport)
    return cfg.agents.default if cfg.use_default_agent else None


def _app_of(cfg: ServerConfig, agent: Agent | None) -> AppFactory:
    return agent.app if agent is not None else cfg.app


def busy_payload(state: ServerState, agent: Agent | None = None) -> dict[str, Any]:
    """The JSON body of a 503 refusal (at capacity or draining)."""
    adm = state.admission
    if agent is not None and not adm.draining and adm.has_room():
        return {"error": "at capacity", "agent": agent.name, **agent.admission.snapshot()}
    return {"error": "at capacity" if not adm.draining else "draining", **adm.snapshot()}


RETRY_AFTER = {"Retry-After": "1"}
"""Headers of a 503 refusal."""


def admit(state: ServerState, agent: Agent | None) -> bool:
    """Take a slot for a new call in the worker and in its agent (False: refused, counted)."""
    if not state.admission.try_admit():
        state.metrics.call_rejected(agent.name if agent else "default",
                                    "draining" if state.admission.draining else "capacity")
        return False
    if agent is not None and not agent.admission.try_admit():
        state.admission.undo_admit()
        state.metrics.call_rejected(agent.name, "capacity")
        return False
    return True


def has_room(state: ServerState, agent: Agent | None) -> bool:
    """Whether a new call for ``agent`` would be admitted now (without taking a slot)."""
    return state.admission.has_room() and (agent is None or agent.admission.has_room())


async def track(
    state: ServerState, coro: Any, *, agent: Agent | None = None, transport: str = "raw"
) -> None:
    """Run an admitted call in the current task: counted in ``state.calls`` (and its agent's
    admission), its slot released at the end; its log lines carry a call id."""
    task = asyncio.current_task()
    assert task is not None  # noqa: S101 - invariant (type narrowing), not input validation
    name = agent.name if agent is not None else "default"
    record = CallRecord(agent=name, transport=transport, call_id=new_call_id())
    metrics = state.metrics
    if metrics.enabled:
        observer = metrics.observer(name) if agent is not None and state.config.turn_metrics else None
        if observer is not None:
            record.observers.append(observer)

        async def on_error(_task: Any, frame: Any) -> None:
            await metrics.on_error(name, frame)

        record.on_error = on_error
    CURRENT_CALL.set(record)
    state.calls.add(task)
    state.records[task] = record
    state.metrics.call_started(name, transport)
    logger.debug("call started: agent %s, %s", name, transport)
    try:
        await coro
    finally:
        state.calls.discard(task)
        state.records.pop(task, None)
        state.admission.release()
        if agent is not None:
            agent.admission.release()
        state.finished_calls += 1
        state.metrics.call_ended(name, transport, record.task)
        # Whatever was created in the call's context keeps a copy of it (a pooled keep-alive
        # connection's transport, a handle): let it pin this small record, not the call.
        record.task, record.observers, record.on_error = None, [], None
        logger.debug("call ended")
        if not state.calls and state.collector is not None:
            state.collector.idle()  # nobody is on a call: a long collection is not heard


async def raw_call(state: ServerState, sock: CallSocket, request: Any, agent: Agent | None = None) -> None:
    """A raw call (``/ws?sample_rate=…``) on an accepted socket of either engine."""
    cfg = state.config
    rate = _query_rate(request) or cfg.audio_in_sample_rate
    call = CallInfo(carrier="raw", remote=request.remote, path=request.path, query=dict(request.query))
    await serve_call(
        sock,
        raw_serializer(rate),
        user_processors(cfg, call, _app_of(cfg, agent)),
        params=_params(cfg, rate, rate),
        idle_timeout_secs=cfg.idle_timeout_secs,
        transport_options=_transport_options(cfg),
    )


async def protobuf_call(state: ServerState, sock: CallSocket, request: Any, agent: Agent | None = None) -> None:
    """A pipecat protobuf call (``/protobuf/ws?sample_rate=…``) on an accepted socket of either engine.

    The pipeline runs at ``sample_rate`` both ways when the query gives one, else at
    the server's rates; caller audio at another rate is resampled to the input rate.
    """
    from ..transports import ProtobufFrameSerializer

    cfg = state.config
    rate = _query_rate(request)
    call = CallInfo(carrier="protobuf", remote=request.remote, path=request.path, query=dict(request.query))
    await serve_call(
        sock,
        ProtobufFrameSerializer(),
        user_processors(cfg, call, _app_of(cfg, agent)),
        params=_params(cfg, rate, rate),
        idle_timeout_secs=cfg.idle_timeout_secs,
        transport_options=_transport_options(cfg),
    )


def _query_rate(request: Any) -> int | None:
    """``?sample_rate=`` as an int (None when absent, empty or not a positive number)."""
    raw = request.query.get("sample_rate", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


async def carrier_call(
    state: ServerState, carrier: Any, request: Any, sock: CallSocket, agent: Agent | None = None
) -> None:
    """A carrier call on an accepted socket of either engine: handshake, then the pipeline."""
    cfg = state.config
    try:
        opened = await asyncio.wait_for(carrier.open(sock, request), timeout=10.0)
    except (TimeoutError, CarrierError) as exc:
        logger.warning("%s: handshake failed: %s", carrier.name, exc)
        await sock.close(code=1008)
        return
    if opened is None:  # socket closed during the handshake
        return
    call = opened.call
    await serve_call(
        sock,
        opened.serializer,
        user_processors(cfg, call, _app_of(cfg, agent)),
        params=_params(cfg, opened.in_rate, opened.out_rate),
        idle_timeout_secs=cfg.idle_timeout_secs,
        transport_options=_transport_options(cfg),
    )


async def drain_state(
    state: ServerState, grace: float, *, goodbye: str | None = None, end_grace: float = 5.0
) -> int:
    """:func:`drain` for a worker's state (whatever engine serves it).

    Calls still running after ``grace`` get ``TTSSpeakFrame(goodbye)`` and an ``EndFrame``
    (the output transport plays what was queued, then closes the socket) and up to
    ``end_grace`` s to finish; whatever is left then is cancelled.
    """
    from ..frames import EndFrame, TTSSpeakFrame

    state.admission.draining = True
    if state.calls and grace > 0:
        await asyncio.wait(list(state.calls), timeout=grace)
    left = [t for t in state.calls if not t.done()]
    if left and goodbye:
        ending = []
        for t in left:
            record = state.records.get(t)
            if record is not None and record.task is not None:
                await record.task.queue_frames([TTSSpeakFrame(goodbye), EndFrame()])
                ending.append(t)
        if ending:
            logger.info("drain: ending %d calls with a goodbye", len(ending))
            await asyncio.wait(ending, timeout=end_grace)
    left = [t for t in left if not t.done()]
    for task in left:
        task.cancel()
    if left:
        await asyncio.wait(left, timeout=5.0)
    return len(left)
