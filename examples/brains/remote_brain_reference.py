"""A reference brain service for flowcat's RemoteBrain (the two-endpoint HTTP contract).

Standard library only. Run it, then point ``RemoteBrain("http://127.0.0.1:8080", llm)``
at it::

    python examples/brains/remote_brain_reference.py [--port 8080] [--token SECRET]

The conversation is a tiny booking flow with two nodes:

* ``greeting`` — tools ``book_appointment{day}`` and ``end_call``;
  ``book_appointment`` moves to ``confirm``, stores ``requested_day`` and says
  "Sure — booking you for <day>. Shall I confirm?";
* ``confirm`` — tools ``confirm`` and ``end_call``; ``confirm`` ends the call with the
  disposition ``appointment_booked``;
* ``end_call`` ends the call (``caller_hung_up``) from either node; any other tool
  stays where it is.

The contract (docs/agents.md, "Remote brains"):

* ``POST /session {brain_config, provider}`` -> ``{system_prompt, tools, node_id, collected_vars}``;
* ``POST /tool-call {node_id, tool: {name, args}, collected_vars}`` -> ``{action:
  transition|stay|end, system_prompt?, tools?, say?, disposition?, node_id,
  collected_vars, finished}``.

The logic is in :func:`session_reply` and :func:`tool_call_reply` (pure functions of
the request body), the HTTP server around them in :func:`make_server`.
"""

from __future__ import annotations

import argparse
import hmac
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

END_CALL = {"name": "end_call", "description": "End the call when the caller is done.",
            "params": {"type": "object", "properties": {}}}
NODES: dict[str, dict[str, Any]] = {
    "greeting": {
        "system_prompt": "You are the receptionist of Acme Dental. Greet the caller and help them book an "
                         "appointment: when they name a day, call book_appointment with it.",
        "tools": [
            {"name": "book_appointment", "description": "Book an appointment on the day the caller asked for.",
             "params": {"type": "object", "properties": {"day": {"type": "string", "description": "Weekday"}},
                        "required": ["day"]}},
            END_CALL,
        ],
    },
    "confirm": {
        "system_prompt": "You are the receptionist of Acme Dental. The caller asked for {day}. Ask them to "
                         "confirm; when they do, call confirm.",
        "tools": [
            {"name": "confirm", "description": "The caller confirmed the booking.",
             "params": {"type": "object", "properties": {}}},
            END_CALL,
        ],
    },
}


def _node(node_id: str, variables: dict[str, Any]) -> dict[str, Any]:
    node = NODES[node_id]
    return {"system_prompt": node["system_prompt"].format(day=variables.get("requested_day", "a day")),
            "tools": node["tools"]}


def session_reply(body: dict[str, Any]) -> dict[str, Any]:
    """The answer to ``POST /session``: the greeting node."""
    variables: dict[str, Any] = {}
    config = body.get("brain_config")
    if isinstance(config, dict) and isinstance(config.get("seed_vars"), dict):
        variables.update(config["seed_vars"])
    return {**_node("greeting", variables), "node_id": "greeting", "collected_vars": variables}


def tool_call_reply(body: dict[str, Any]) -> dict[str, Any]:
    """The answer to ``POST /tool-call``."""
    node_id = body.get("node_id") if body.get("node_id") in NODES else "greeting"
    variables = dict(body.get("collected_vars") or {})
    tool = body.get("tool") or {}
    name, args = tool.get("name"), tool.get("args") or {}
    if name == "end_call":
        return {"action": "end", "say": "Thanks for calling. Goodbye!", "disposition": "caller_hung_up",
                "node_id": node_id, "collected_vars": variables, "finished": True}
    if node_id == "greeting" and name == "book_appointment":
        day = str(args.get("day") or "").strip() or "Monday"
        variables["requested_day"] = day
        return {"action": "transition", **_node("confirm", variables),
                "say": f"Sure — booking you for {day}. Shall I confirm?",
                "node_id": "confirm", "collected_vars": variables, "finished": False}
    if node_id == "confirm" and name == "confirm":
        variables["booked"] = True
        return {"action": "end", "say": f"You're booked for {variables.get('requested_day')}. Goodbye!",
                "disposition": "appointment_booked", "node_id": node_id, "collected_vars": variables,
                "finished": True}
    return {"action": "stay", "node_id": node_id, "collected_vars": variables, "finished": False}


ROUTES = {"/session": session_reply, "/tool-call": tool_call_reply}


def make_server(host: str = "127.0.0.1", port: int = 8080, token: str | None = None) -> ThreadingHTTPServer:
    """An HTTP server for the contract (call ``serve_forever``; port 0 picks a free port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            route = ROUTES.get(self.path)
            if route is None:
                return self._send(404, {"error": "not found"})
            if token is not None:
                presented = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if not hmac.compare_digest(presented.encode(), token.encode()):
                    return self._send(401, {"error": "unauthorized"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except ValueError:
                return self._send(400, {"error": "the body is not a JSON object"})
            self._send(200, route(body))

        def _send(self, status: int, obj: dict[str, Any]) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
            pass

    return ThreadingHTTPServer((host, port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--token", default=None, help="require this Bearer token")
    args = parser.parse_args()
    server = make_server(args.host, args.port, args.token)
    print(f"reference brain on http://{args.host}:{server.server_address[1]}")
    server.serve_forever()


if __name__ == "__main__":
    main()
