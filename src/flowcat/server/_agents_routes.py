"""``GET /api/agents``: the agents this server serves (behind the API token like every ``/api/*``)."""

from __future__ import annotations

from aiohttp import web

from ._app import STATE_KEY

__all__ = ["_agents"]


async def _agents(request: web.Request) -> web.Response:
    """``{"agents": [{name, description, transports, ready}], "not_served": {name: [problems]}}``."""
    state = request.app[STATE_KEY]
    agents = state.config.agents
    adm = state.admission
    out = [
        {
            "name": a.name,
            "description": a.description,
            "transports": sorted(a.transports),
            "ready": not state.warming and adm.has_room() and a.admission.has_room(),
        }
        for a in agents
    ]
    return web.json_response({"agents": out, "not_served": dict(sorted(agents.problems.items()))})
