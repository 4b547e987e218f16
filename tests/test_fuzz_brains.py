"""Fuzzing the remote brains' parsing: RemoteBrain's /session and /tool-call answers, WebSocket-brain messages.

Properties, per input:

* RemoteBrain: any HTTP answer body (bytes) to ``/session`` or ``/tool-call`` yields
  brain actions and never raises; a broken answer is counted (``failures``) and the
  brain speaks its fallback (``/session``) or stays (``/tool-call``). The answers come
  from an in-process fake session (the brain's real ``_post`` reads them), no sockets.
* WebSocketBrain: any text message is parsed (``_parse``), routed (``_route``) and
  turned into an action (``_action``) without raising; a rejected one is counted in
  ``bad_messages``; ``session.ready``'s tools (``_tools_of``) never raise.

See tests/_fuzz.py for the settings (``FLOWCAT_FUZZ_EXAMPLES``) and the saved corpus.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import flowcat.agent._remote_brain as remote_mod
from _fuzz import FUZZ, corpus_params, messages_from
from flowcat.agent import RemoteBrain, WebSocketBrain
from flowcat.agent._brain import BrainCall, CallStarted, EndCall, Say, Transition
from flowcat.agent._ws_brain import _tools_of as ws_tools_of

pytestmark = pytest.mark.fuzz

_LOOP = asyncio.new_event_loop()


@pytest.fixture(scope="module", autouse=True)
def _close_loop() -> Iterator[None]:
    yield
    _LOOP.close()


class _Resp:
    def __init__(self, body: bytes, status: int) -> None:
        self.body, self.status = body, status

    async def __aenter__(self) -> _Resp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def read(self) -> bytes:
        return self.body


class _Session:
    """Answers every POST with one body (what a brain service could send)."""

    def __init__(self, body: bytes, status: int = 200) -> None:
        self.body, self.status = body, status

    def post(self, url: str, **kw: Any) -> _Resp:
        return _Resp(self.body, self.status)


SESSION_SEEDS: list[Any] = [
    {"system_prompt": "You are a receptionist.", "node_id": "greet",
     "tools": [{"name": "book", "description": "Book a slot",
                "params": {"properties": {"day": {"type": "string"}}, "required": ["day"]}}],
     "collected_vars": {"name": "Ada"}},
    {"system_prompt": "", "tools": []},
]
TOOL_SEEDS: list[Any] = [
    {"action": "transition", "node_id": "confirm", "system_prompt": "Confirm the booking.",
     "tools": [{"name": "confirm", "params": {"properties": {}, "required": []}}],
     "collected_vars": {"day": "monday"}, "say": "One moment."},
    {"action": "stay", "say": "Which day?"},
    {"action": "end", "say": "Goodbye.", "disposition": "booked", "finished": True},
]


def _brain(body: bytes, status: int = 200) -> RemoteBrain:
    brain = RemoteBrain("http://brain.invalid", llm=None, provider="fake", greet=False)  # type: ignore[arg-type]
    return brain


async def _drive_remote(body: bytes, status: int) -> None:
    session = _Session(body, status)

    async def fake_http_session(*args: Any, **kwargs: Any) -> _Session:
        return session

    orig = remote_mod.http_session
    remote_mod.http_session = fake_http_session  # type: ignore[assignment]
    try:
        brain = _brain(body, status)
        actions = [a async for a in brain.handle(CallStarted(BrainCall("c1")))]
        if not brain._session:  # the fallback, the failure counted
            assert actions == [Say(brain.fallback_text)]
            assert brain.failures == 1
        else:
            assert all(not isinstance(a, EndCall) for a in actions)
        before = brain.failures
        node = brain.node_id
        outcome, acts, say, end = await brain._tool_call("book", {"day": "monday"})
        assert outcome in ("stay", "moved", "ended")
        assert say is None or isinstance(say, str)
        if outcome == "stay" and brain.failures > before:
            assert acts == [] and end is None and brain.node_id == node  # state unchanged on failure
        if outcome == "moved":
            assert isinstance(acts[0], Transition)
        assert (end is not None) == (outcome == "ended")
    finally:
        remote_mod.http_session = orig  # type: ignore[assignment]


def check_remote(body: str | bytes, status: int = 200) -> None:
    _LOOP.run_until_complete(_drive_remote(body.encode() if isinstance(body, str) else body, status))


@FUZZ
@given(body=messages_from(SESSION_SEEDS + TOOL_SEEDS), status=st.sampled_from([200, 200, 200, 204, 302, 500]))
def test_remote_brain_answers_never_raise(body: str | bytes, status: int) -> None:
    check_remote(body, status)


@pytest.mark.parametrize(("file", "message"), corpus_params("remote-brain"))
def test_remote_brain_corpus(file: str, message: str | bytes) -> None:
    check_remote(message)


# ------------------------------------------------------------------ WebSocket brain

WS_SEEDS: list[Any] = [
    {"type": "session.ready", "protocol": 1,
     "tools": [{"name": "lookup", "description": "Look up", "parameters": {"properties": {"q": {}}, "required": ["q"]}}]},
    {"type": "say", "turn_id": "t1", "text": "Hello there.", "allow_interruptions": False},
    {"type": "set_variable", "turn_id": "t1", "name": "day", "value": "monday"},
    {"type": "transition", "turn_id": "t1", "node": "confirm"},
    {"type": "tool.call", "turn_id": "t1", "id": "c1", "name": "book", "arguments": {"day": "monday"}},
    {"type": "transfer", "turn_id": "t1", "target": "+15550100", "say": "Transferring."},
    {"type": "end_call", "turn_id": "t1", "say": "Bye.", "disposition": "done"},
    {"type": "done", "turn_id": "t1"},
    {"type": "error", "turn_id": "t1", "message": "boom"},
    {"type": "tool.return", "id": "f1", "result": {"ok": True}},
    {"type": "tool.return", "id": "f1", "error": "nope"},
]


def check_ws(messages: list[str]) -> None:
    async def drive() -> None:
        brain = WebSocketBrain("ws://brain.invalid")
        brain._turn = "t1"
        fut = asyncio.get_running_loop().create_future()
        brain._invocations["f1"] = fut
        for data in messages:
            before = brain.bad_messages
            m = brain._parse(data)
            if m is None:
                assert brain.bad_messages == before + 1
                continue
            assert isinstance(m, dict) and isinstance(m["type"], str)
            if m["type"] == "session.ready":
                tools = ws_tools_of(m.get("tools"))
                assert all(t.name for t in tools)
            brain._route(m)
        while not brain._queue.empty():
            action, final = brain._action(brain._queue.get_nowait())
            assert isinstance(final, bool)
        if fut.done() and not fut.cancelled():
            fut.exception()  # retrieved: a failed tool.return is an answer, not a crash

    _LOOP.run_until_complete(drive())


def _texts(draw_list: list[str | bytes]) -> list[str]:
    return [m.decode("utf-8", "replace") if isinstance(m, bytes) else m for m in draw_list]


@FUZZ
@given(messages=st.lists(messages_from(WS_SEEDS), min_size=1, max_size=4))
def test_ws_brain_messages_never_raise(messages: list[str | bytes]) -> None:
    check_ws(_texts(messages))


@FUZZ
@given(tools=messages_from([[{"name": "a", "parameters": {"properties": {"x": {}}, "required": ["x"]}}]]))
def test_ws_brain_tools_never_raise(tools: str | bytes) -> None:
    try:
        raw = json.loads(tools)
    except (ValueError, RecursionError):
        return
    for t in ws_tools_of(raw):
        assert isinstance(t.name, str) and t.name


@pytest.mark.parametrize(("file", "message"), corpus_params("ws-brain"))
def test_ws_brain_corpus(file: str, message: str | bytes) -> None:
    check_ws(_texts([message]))
