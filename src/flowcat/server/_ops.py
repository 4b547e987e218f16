"""Operations routes: ``/healthz`` (alive, counters), ``/readyz`` (would a new call be taken,
and if not why, per agent) and ``/metrics`` (Prometheus text; 501 without ``flowcat[metrics]``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ._metrics import INSTALL
from ._state import STATE_KEY, ServerState

__all__ = ["add_ops_routes", "readiness"]


def readiness(state: ServerState) -> tuple[bool, dict[str, Any]]:
    """Whether the worker is ready for new calls, and the JSON body saying why not (per agent)."""
    adm = state.admission
    reasons: list[str] = []
    if state.warming:
        reasons.append("warming up (loading models)")
    if adm.draining:
        reasons.append("draining")
    elif adm.active >= adm.capacity:
        reasons.append(f"at capacity ({adm.active}/{adm.capacity} calls)")
    agents: dict[str, Any] = {}
    any_ready = False
    for agent in state.config.agents:
        own: list[str] = []
        if agent.admission.active >= agent.admission.capacity:
            own.append(f"at capacity ({agent.admission.active}/{agent.admission.capacity} calls)")
        ok = not reasons and not own
        any_ready = any_ready or ok
        agents[agent.name] = {"ready": ok, "reasons": reasons + own, **agent.snapshot()}
    for name in state.config.agents.problems:  # the problems themselves: /api/agents (behind the token)
        agents[name] = {"ready": False, "reasons": ["not served: configuration problems"]}
    ready = not reasons and (any_ready or not state.config.agents)
    if not reasons and not ready:
        reasons.append("every agent is at capacity")
    body: dict[str, Any] = {"ready": ready, "reasons": reasons, **state.health()}
    if agents:
        body["agents"] = agents
    return ready, body


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].health())


async def _readyz(request: web.Request) -> web.Response:
    ready, body = readiness(request.app[STATE_KEY])
    return web.json_response(body, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    metrics = request.app[STATE_KEY].metrics
    if not metrics.enabled:
        return web.Response(
            status=501, text=f"/metrics needs prometheus-client: {INSTALL}\n", content_type="text/plain"
        )
    body, ctype = metrics.render()
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = ctype
    return resp


def add_ops_routes(app: web.Application) -> None:
    """Add ``/healthz``, ``/readyz`` and ``/metrics`` to ``app`` (``/api/agents`` is the playground's)."""
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
