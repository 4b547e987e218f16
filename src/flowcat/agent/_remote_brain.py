"""RemoteBrain: the AgentBrain seam over the two-endpoint HTTP brain contract.

A remote brain service owns the conversation's state machine (nodes, prompts, which
tools exist where, collected variables); flowcat's LLM does the talking. The contract
(unchanged from the system it comes from, so existing brain services work as they are):

* ``POST {url}/session`` ``{"brain_config": <opaque>, "provider": "<llm vendor>"}``
  -> ``{"system_prompt", "tools": [{"name", "description", "params"}], "node_id",
  "collected_vars"}`` (``params``: the arguments' JSON Schema object);
* ``POST {url}/tool-call`` ``{"node_id", "tool": {"name", "args"}, "collected_vars"}``
  -> ``{"action": "transition" | "stay" | "end", "system_prompt"?, "tools"?, "say"?,
  "disposition"?, "node_id", "collected_vars", "finished"}``.

Optional ``Authorization: Bearer <token>``; each request is bounded (30 s by
default). Any failure — connection refused, timeout, an error status, a body that is
not the JSON object described, a transition without ``system_prompt``/``tools``, an
unknown action — is logged (rate-limited, with the call id, never the token) and
treated as *stay* with the brain's state unchanged; the conversation goes on.

How a call runs: on :class:`CallStarted` the session is opened and (``greet=True``)
the LLM speaks first. Each :class:`UserTurn` is added to the LLM context and the LLM
runs (:meth:`LLMService.run_inference` directly: this brain is not a pipeline
processor); its text comes out as :class:`Say` pieces, a sentence at a time. A tool
call naming one of the brain's tools goes to ``/tool-call``; the answer's
``collected_vars`` become :class:`SetVariable` actions, a transition swaps the system
prompt and tools (the next LLM request carries them) and yields :class:`Transition`,
``end`` (or ``finished``) yields :class:`EndCall` with the ``say`` and
``disposition``. When the answer has a ``say`` it is spoken and the turn ends;
otherwise the LLM runs again with the tool's outcome (``{"status": "moved" | "stay"}``)
so it can go on talking. A tool call naming anything else (a function registered on
the LLM, an MCP tool) is handed to the runner as :class:`CallTool`; the LLM runs again
when its :class:`ToolResult` (all of them, for parallel calls) has come back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import aiohttp

from .._ratelimit import RateLimitedLog
from ..errors import OutboundAddressError, ServiceProtocolError
from ..services import (
    LLMService,
    LLMTextDelta,
    LLMToolCallDelta,
    Secret,
    SentenceAggregator,
    http_session,
    outbound_guard,
    redact,
)
from ..services._ssrf import AllowPrivate
from ..services.adapters import FunctionSchema, LLMContext
from ._brain import (
    AgentBrain,
    BotInterrupted,
    BrainAction,
    BrainCall,
    BrainEvent,
    CallStarted,
    CallTool,
    Dtmf,
    EndCall,
    Say,
    SetVariable,
    ToolResult,
    Transition,
    UserTurn,
)

__all__ = ["RemoteBrain"]

logger = logging.getLogger("flowcat.agent.remote_brain")
_FAIL = RateLimitedLog(logger)

DEFAULT_FALLBACK = "Sorry, I'm having trouble right now. Please give me a moment."
_ACTIONS = ("transition", "stay", "end")


def _provider_of(llm: LLMService) -> str:
    name = type(llm).__name__.lower()
    for suffix in ("llmservice", "service"):
        name = name.removesuffix(suffix)
    return name or "llm"


def _tools_of(raw: Any) -> list[FunctionSchema]:
    if not isinstance(raw, list):
        raise ServiceProtocolError("tools is not a list")
    tools = []
    for t in raw:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]:
            raise ServiceProtocolError("a tool without a name")
        params = t.get("params") or {}
        if not isinstance(params, dict):
            raise ServiceProtocolError(f"tool {t['name']!r}: params is not a JSON Schema object")
        properties, required = params.get("properties") or {}, params.get("required") or []
        if not isinstance(properties, dict) or not isinstance(required, list):
            raise ServiceProtocolError(f"tool {t['name']!r}: params.properties is not an object "
                                       "or params.required is not a list")
        tools.append(FunctionSchema(t["name"], str(t.get("description") or ""), dict(properties), list(required)))
    return tools


class RemoteBrain(AgentBrain):
    """An :class:`AgentBrain` whose decisions come from a remote HTTP brain service.

    Args:
        url: The brain service's base URL (``/session`` and ``/tool-call`` are appended).
        llm: The LLM that converses (its ``run_inference`` is called directly).
        token: Bearer token for the brain service (never logged).
        brain_config: Opaque configuration sent with ``/session``.
        provider: The ``provider`` sent with ``/session`` (default: from the LLM's class,
            e.g. ``"openai"``).
        timeout: Bound on each brain request, seconds.
        greet: Let the LLM speak first when the call starts.
        fallback_text: Spoken when the session cannot be opened or the LLM fails.
        max_tool_rounds: LLM runs per event at most (tool call, outcome, run again ...).
        allow_private: The SSRF guard (:class:`~flowcat.services.OutboundGuard`): by default
            the URL must resolve to public addresses only; ``True`` allows any address, a
            list of networks allows those (e.g. ``["10.1.2.0/24"]``).

    Raises:
        ConfigError: ``url`` is not an http(s) URL.
        OutboundAddressError: ``url``'s host is an address the guard refuses.
    """

    def __init__(
        self,
        url: str,
        llm: LLMService,
        *,
        token: str | None = None,
        brain_config: Any = None,
        provider: str | None = None,
        timeout: float = 30.0,
        greet: bool = True,
        fallback_text: str = DEFAULT_FALLBACK,
        max_tool_rounds: int = 4,
        allow_private: AllowPrivate = False,
    ) -> None:
        self.url = url.rstrip("/")
        self._guard = outbound_guard(allow_private)
        self._guard.check_url(self.url)
        self.llm = llm
        self._token = Secret(token) if token else None
        self.brain_config = brain_config
        self.provider = provider or _provider_of(llm)
        self.timeout = timeout
        self.greet = greet
        self.fallback_text = fallback_text
        self.max_tool_rounds = max_tool_rounds
        self.call: BrainCall | None = None
        self.node_id: str | None = None
        self.collected_vars: dict[str, Any] = {}
        self.tools: list[FunctionSchema] = []
        self.context = LLMContext([{"role": "system", "content": ""}])
        self.failures = 0  # brain requests that failed or broke the contract (the log's counter)
        self._session = False
        self._pending: set[str] = set()  # CallTool ids whose ToolResult has not come back

    # ------------------------------------------------------------ the seam

    async def handle(self, event: BrainEvent) -> AsyncIterator[BrainAction]:
        if isinstance(event, CallStarted):
            self.call = event.call
            async with aclosing(self._open()) as actions:
                async for a in actions:
                    yield a
            if self._session and self.greet:
                async with aclosing(self._respond()) as actions:
                    async for a in actions:
                        yield a
        elif isinstance(event, UserTurn):
            if not event.text.strip():
                return
            async with aclosing(self._ensure_session()) as actions:
                async for a in actions:
                    yield a
            if self._session:
                self.context.add_message({"role": "user", "content": event.text})
                async with aclosing(self._respond()) as actions:
                    async for a in actions:
                        yield a
        elif isinstance(event, Dtmf):
            async with aclosing(self._ensure_session()) as actions:
                async for a in actions:
                    yield a
            if self._session:
                self.context.add_message({"role": "user", "content": f"(keypad: {event.digits})"})
                async with aclosing(self._respond()) as actions:
                    async for a in actions:
                        yield a
        elif isinstance(event, BotInterrupted):
            self._cut_last_reply(event.spoken)
        elif isinstance(event, ToolResult):
            if event.tool_call_id not in self._pending:
                return
            self._pending.discard(event.tool_call_id)
            content = {"error": event.error} if event.error is not None else event.result
            self.context.add_message({"role": "tool", "tool_call_id": event.tool_call_id,
                                      "content": content if isinstance(content, str) else json.dumps(content)})
            if not self._pending:
                async with aclosing(self._respond()) as actions:
                    async for a in actions:
                        yield a
        # Silence and CallEnded: the contract has nothing for them.

    # ------------------------------------------------------------ session

    async def _ensure_session(self) -> AsyncGenerator[BrainAction, None]:
        if not self._session:
            async with aclosing(self._open()) as actions:
                async for a in actions:
                    yield a

    async def _open(self) -> AsyncGenerator[BrainAction, None]:
        body = await self._post("/session", {"brain_config": self.brain_config, "provider": self.provider})
        try:
            if body is None:
                raise ServiceProtocolError("no session")
            prompt = body.get("system_prompt")
            if not isinstance(prompt, str):
                raise ServiceProtocolError("/session: system_prompt is not a string")
            tools = _tools_of(body.get("tools", []))
        except ServiceProtocolError as exc:
            if body is not None:
                self._fail("%s", exc)
            yield Say(self.fallback_text)
            return
        self._session = True
        self._set_prompt(prompt, tools)
        node = body.get("node_id")
        if node is not None:
            self.node_id = str(node)
            yield Transition(self.node_id)
        for a in self._vars(body.get("collected_vars")):
            yield a

    def _set_prompt(self, prompt: str, tools: list[FunctionSchema]) -> None:
        msgs = self.context.messages
        msgs[0] = {"role": "system", "content": prompt}
        self.tools = tools
        self.context.set_tools(tools or None)

    def _vars(self, raw: Any) -> list[BrainAction]:
        if not isinstance(raw, dict):
            return []
        out: list[BrainAction] = []
        for name, value in raw.items():
            if name not in self.collected_vars or self.collected_vars[name] != value:
                out.append(SetVariable(str(name), value))
                if self.call is not None:
                    self.call.variables[str(name)] = value
        self.collected_vars = dict(raw)
        return out

    # ------------------------------------------------------------ the LLM

    async def _respond(self) -> AsyncGenerator[BrainAction, None]:
        for _ in range(self.max_tool_rounds):
            text: list[str] = []
            calls: dict[int, list[Any]] = {}  # index -> [id, name, [argument pieces]]
            sentences = SentenceAggregator()
            ok = True
            try:
                async with aclosing(self.llm.run_inference(self.context)) as agen:
                    it = agen.__aiter__()
                    wait = self.llm.request_timeout_secs
                    while True:
                        try:
                            async with asyncio.timeout(wait):
                                chunk = await it.__anext__()
                        except StopAsyncIteration:
                            break
                        wait = self.llm.chunk_timeout_secs
                        if isinstance(chunk, LLMTextDelta):
                            text.append(chunk.text)
                            for s in sentences.aggregate(chunk.text):
                                yield Say(s)
                        elif isinstance(chunk, LLMToolCallDelta):
                            acc = calls.setdefault(chunk.index, ["", "", []])
                            acc[0] = chunk.id or acc[0]
                            acc[1] += chunk.name or ""
                            acc[2].append(chunk.arguments)
            except Exception as exc:  # noqa: BLE001 - any LLM failure: speak the fallback, the call goes on
                ok = False
                self._fail("the LLM failed: %s: %s", type(exc).__name__, exc)
            finally:
                # Also on a barge-in (the runner closes us mid-reply): keep what was generated;
                # BotInterrupted then trims it to what was heard.
                self._add_reply("".join(text), calls if ok else {})
            rest = sentences.flush()
            if rest:
                yield Say(rest)
            if not ok:
                if not text:
                    yield Say(self.fallback_text)
                return
            if not calls:
                return
            say: str | None = None
            for _index, (call_id, name, pieces) in sorted(calls.items()):
                args = self._args(name, "".join(pieces))
                if not any(t.name == name for t in self.tools):
                    self._pending.add(call_id)
                    yield CallTool(call_id, name, args)
                    continue
                outcome, actions, said, end = await self._tool_call(name, args)
                self.context.add_message({"role": "tool", "tool_call_id": call_id,
                                          "content": json.dumps({"status": outcome})})
                for a in actions:
                    yield a
                if end is not None:
                    if self._pending:
                        self._pending.clear()
                    yield end
                    return
                say = said or say
            if say:
                self.context.add_message({"role": "assistant", "content": say})
                yield Say(say)
                return
            if self._pending:
                return  # the LLM runs again when the runner's tool results are in

    def _add_reply(self, text: str, calls: dict[int, list[Any]]) -> None:
        if not text and not calls:
            return
        msg: dict[str, Any] = {"role": "assistant"}
        if text or not calls:
            msg["content"] = text
        if calls:
            msg["tool_calls"] = [{"id": c[0], "type": "function", "function": {"name": c[1], "arguments":
                                  "".join(c[2]) or "{}"}} for _, c in sorted(calls.items())]
        self.context.add_message(msg)

    def _cut_last_reply(self, spoken: str) -> None:
        msgs = self.context.messages
        if msgs and msgs[-1].get("role") == "assistant" and not msgs[-1].get("tool_calls"):
            if spoken:
                msgs[-1] = {"role": "assistant", "content": spoken}
            else:
                msgs.pop()

    def _args(self, name: str, raw: str) -> dict[str, Any]:
        try:
            args = json.loads(raw) if raw.strip() else {}
        except ValueError:
            args = None
        if not isinstance(args, dict):
            self._fail("tool call %r with arguments that are not a JSON object: %.200r", name, raw)
            return {}
        return args

    # ------------------------------------------------------------ the brain service

    async def _tool_call(
        self, name: str, args: dict[str, Any]
    ) -> tuple[str, list[BrainAction], str | None, EndCall | None]:
        """(outcome for the LLM, actions, say, EndCall or None); state unchanged on any failure."""
        body = await self._post("/tool-call", {"node_id": self.node_id, "tool": {"name": name, "args": args},
                                               "collected_vars": self.collected_vars})
        if body is None:
            return "stay", [], None, None
        try:
            action = body.get("action")
            if action not in _ACTIONS:
                raise ServiceProtocolError(f"/tool-call: unknown action {action!r}")
            say = body.get("say")
            if say is not None and not isinstance(say, str):
                raise ServiceProtocolError("/tool-call: say is not a string")
            prompt, tools = body.get("system_prompt"), None
            if action == "transition":
                if not isinstance(prompt, str) or "tools" not in body:
                    raise ServiceProtocolError("/tool-call: a transition without system_prompt and tools")
                tools = _tools_of(body["tools"])
        except ServiceProtocolError as exc:
            self._fail("%s (tool %r): staying", exc, name)
            return "stay", [], None, None
        actions: list[BrainAction] = []
        node = body.get("node_id")
        if action == "transition":
            assert isinstance(prompt, str) and tools is not None  # noqa: S101 - invariant (type narrowing), not input validation
            self._set_prompt(prompt, tools)
            if node is not None:
                self.node_id = str(node)
            actions.append(Transition(self.node_id or ""))
        elif node is not None:
            self.node_id = str(node)
        actions += self._vars(body.get("collected_vars"))
        if action == "end" or body.get("finished") is True:
            disposition = body.get("disposition")
            return "ended", actions, None, EndCall(say or None, None if disposition is None else str(disposition))
        return ("moved" if action == "transition" else "stay"), actions, say or None, None

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        headers = {"Authorization": f"Bearer {self._token.reveal()}"} if self._token else {}
        try:
            session = await http_session(self._guard)
            async with session.post(self.url + path, json=payload, headers=headers, allow_redirects=False,
                                    timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
                raw = await resp.read()
                if resp.status >= 300:
                    raise ServiceProtocolError(f"{path}: HTTP {resp.status}: {raw[:200]!r}")
                body = json.loads(raw)
                if not isinstance(body, dict):
                    raise ServiceProtocolError(f"{path}: the answer is not a JSON object")
                return body
        except TimeoutError:
            self._fail("%s: no answer within %g s: staying", path, self.timeout)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than json can read
            self._fail("%s: the answer is not JSON (%s): staying", path, exc)
        except (ServiceProtocolError, OutboundAddressError, aiohttp.ClientError, OSError) as exc:
            self._fail("%s: %s: staying", path, exc)
        return None

    def _fail(self, msg: str, *args: object) -> None:
        self.failures += 1
        line = msg % args if args else msg
        _FAIL(self.failures, "RemoteBrain %s: call %s: %s", self.url,
              self.call.call_id if self.call else "-", redact(line, self._token))
