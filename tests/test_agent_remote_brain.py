"""RemoteBrain against the reference HTTP brain (a real server on 127.0.0.1) with OpenAILLMService
talking to the local fake OpenAI: the session, a transition (the next LLM request carries the new
prompt and tools), the end with its disposition, and every failure of the brain service turning
into *stay* with the state unchanged while the conversation goes on."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import _fake_openai
from flowcat.agent import (
    AgentBrain,
    BotInterrupted,
    BrainAction,
    BrainCall,
    BrainEvent,
    CallStarted,
    CallTool,
    Dtmf,
    EndCall,
    RemoteBrain,
    Say,
    SetVariable,
    ToolResult,
    Transition,
    UserTurn,
)
from flowcat.services import Backoff, close_http_sessions
from flowcat.services.llm import OpenAILLMService
from flowcat.testing.conformance import Behaviour

pytestmark = pytest.mark.usefixtures("no_outside_connections")

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "brain-token-0123456789-SECRET"
FAST = Backoff(initial=0.02, max_delay=0.1, max_attempts=1)


def load_example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / "brains" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref = load_example("remote_brain_reference")


async def collect(brain: AgentBrain, event: BrainEvent) -> list[BrainAction]:
    return [a async for a in brain.handle(event)]


def tool_names(body: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools") or []]


def system_of(body: dict[str, Any]) -> str:
    first = body["messages"][0]
    assert first["role"] == "system"
    return str(first["content"])


@pytest.fixture
def reference_brain() -> Iterator[str]:
    server = ref.make_server("127.0.0.1", 0, token=TOKEN)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
async def fake() -> AsyncIterator[_fake_openai.FakeOpenAI]:
    f = _fake_openai.FakeOpenAI()
    await f.start()
    try:
        yield f
    finally:
        await close_http_sessions()
        await f.close()


def make_llm(fake: _fake_openai.FakeOpenAI) -> OpenAILLMService:
    return OpenAILLMService(base_url=fake.base_url, api_key=fake.api_key, model="gpt-test", retry=FAST)


async def test_booking_conversation_session_transition_end(
    reference_brain: str, fake: _fake_openai.FakeOpenAI
) -> None:
    fake.scripts = [
        _fake_openai.reply("Hello! This is Acme Dental. How can I help?"),
        _fake_openai.reply("", [("call_1", "book_appointment", {"day": "Tuesday"})]),
        _fake_openai.reply("", [("call_2", "confirm", {})]),
    ]
    call = BrainCall("call-42", caller="+15550001")
    brain = RemoteBrain(reference_brain, make_llm(fake), allow_private=True, token=TOKEN, brain_config={"seed_vars": {"brand": "Acme"}})

    assert await collect(brain, CallStarted(call)) == [
        Transition("greeting"), SetVariable("brand", "Acme"),
        Say("Hello!"), Say("This is Acme Dental."), Say("How can I help?"),
    ]
    greeting = fake.bodies[0]
    assert system_of(greeting) == ref.NODES["greeting"]["system_prompt"]
    assert tool_names(greeting) == ["book_appointment", "end_call"]
    assert greeting["tools"][0]["function"]["parameters"]["required"] == ["day"]

    actions = await collect(brain, UserTurn("Can I come in on Tuesday?"))
    assert actions == [Transition("confirm"), SetVariable("requested_day", "Tuesday"),
                       Say("Sure — booking you for Tuesday. Shall I confirm?")]
    assert brain.node_id == "confirm" and call.variables == {"brand": "Acme", "requested_day": "Tuesday"}
    assert len(fake.bodies) == 2  # the brain's say ends the turn: no second LLM run

    actions = await collect(brain, UserTurn("Yes please."))
    # The LLM request after the transition carries the confirm node's prompt and tools.
    third = fake.bodies[2]
    assert system_of(third) == "You are the receptionist of Acme Dental. The caller asked for Tuesday. " \
                               "Ask them to confirm; when they do, call confirm."
    assert tool_names(third) == ["confirm", "end_call"]
    assert third["messages"][3:] == [
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "book_appointment", "arguments": '{"day": "Tuesday"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "moved"}'},
        {"role": "assistant", "content": "Sure — booking you for Tuesday. Shall I confirm?"},
        {"role": "user", "content": "Yes please."},
    ]
    assert actions == [SetVariable("booked", True),
                       EndCall("You're booked for Tuesday. Goodbye!", "appointment_booked")]
    assert all(h["Authorization"] == f"Bearer {fake.api_key}" for h in fake.headers)
    assert brain.failures == 0


class FaultyBrain:
    """The reference logic behind an aiohttp server whose /tool-call misbehaves as told."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[tuple[str, dict[str, Any], str | None]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def session(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("/session", body, request.headers.get("Authorization")))
        return web.json_response(ref.session_reply(body))

    async def tool_call(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(("/tool-call", body, request.headers.get("Authorization")))
        mode = self.mode
        if mode == "slow":
            await asyncio.sleep(5)
        if mode == "500":
            return web.Response(status=500, text="internal error")
        if mode == "garbage":
            return web.Response(text="{not json", content_type="application/json")
        if mode == "not-object":
            return web.json_response([1, 2])
        answer = ref.tool_call_reply(body)
        if mode == "no-prompt":
            answer.pop("system_prompt", None)
        if mode == "bad-action":
            answer["action"] = "jump"
        return web.json_response(answer)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/session", self.session)
        app.router.add_post("/tool-call", self.tool_call)
        self.runner = web.AppRunner(app, handler_cancellation=True)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def faulty() -> AsyncIterator[FaultyBrain]:
    b = FaultyBrain()
    await b.start()
    try:
        yield b
    finally:
        await b.close()


async def stops_after_fault(
    faulty: FaultyBrain, fake: _fake_openai.FakeOpenAI, mode: str, *, before: Callable[[], Awaitable[None]] | None = None
) -> RemoteBrain:
    """Open a session, break /tool-call as ``mode`` says, call book_appointment: the brain stays."""
    fake.scripts = [
        _fake_openai.reply("", [("call_1", "book_appointment", {"day": "Friday"})]),
        _fake_openai.reply("Sorry, let me try that again."),
        _fake_openai.reply("Hello again."),
    ]
    brain = RemoteBrain(faulty.url, make_llm(fake), allow_private=True, token=TOKEN, timeout=0.3, greet=False)
    assert await collect(brain, CallStarted(BrainCall("call-7"))) == [Transition("greeting")]
    faulty.mode = mode
    if before is not None:
        await before()
    actions = await collect(brain, UserTurn("Friday please"))
    # Stay: no transition, no variables, the LLM hears {"status": "stay"} and goes on talking.
    assert actions == [Say("Sorry, let me try that again.")]
    assert brain.node_id == "greeting" and brain.collected_vars == {}
    assert [t.name for t in brain.tools] == ["book_appointment", "end_call"]
    second = fake.bodies[1]
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "stay"}'}
    assert system_of(second) == ref.NODES["greeting"]["system_prompt"]
    assert tool_names(second) == ["book_appointment", "end_call"]
    assert brain.failures == 1
    return brain


@pytest.mark.parametrize("mode", ["slow", "500", "garbage", "not-object", "no-prompt", "bad-action"])
async def test_brain_failure_is_stay_and_the_call_goes_on(
    faulty: FaultyBrain, fake: _fake_openai.FakeOpenAI, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "flowcat.agent.remote_brain")
    brain = await stops_after_fault(faulty, fake, mode)
    assert "call-7" in caplog.text and "/tool-call" in caplog.text
    assert TOKEN not in caplog.text
    # The conversation goes on: the next turn runs the LLM with the unchanged node.
    faulty.mode = "ok"
    assert await collect(brain, UserTurn("Hello?")) == [Say("Hello again.")]
    assert [b[2] for b in faulty.requests] == [f"Bearer {TOKEN}"] * len(faulty.requests)


async def test_brain_gone_connection_refused_is_stay(faulty: FaultyBrain, fake: _fake_openai.FakeOpenAI) -> None:
    await stops_after_fault(faulty, fake, "ok", before=faulty.close)


async def test_session_unreachable_speaks_the_fallback_then_retries(
    faulty: FaultyBrain, fake: _fake_openai.FakeOpenAI
) -> None:
    fake.scripts = [_fake_openai.reply("Hi there.")]
    url = faulty.url
    await faulty.close()
    brain = RemoteBrain(url, make_llm(fake), allow_private=True, timeout=0.5, greet=False, fallback_text="One moment please.")
    assert await collect(brain, CallStarted(BrainCall("call-9"))) == [Say("One moment please.")]
    assert fake.bodies == []
    # The brain service is back: the next turn opens the session and converses.
    faulty.runner = None
    await faulty.start()
    brain.url = faulty.url
    assert await collect(brain, UserTurn("Hello")) == [Transition("greeting"), Say("Hi there.")]
    assert fake.bodies[0]["messages"][1:] == [{"role": "user", "content": "Hello"}]


async def test_other_tools_go_to_the_runner_and_the_llm_resumes_with_their_results(
    faulty: FaultyBrain, fake: _fake_openai.FakeOpenAI
) -> None:
    fake.scripts = [
        _fake_openai.reply("Let me look.", [("call_w", "get_weather", {"city": "Paris"})]),
        _fake_openai.reply("It is sunny."),
    ]
    brain = RemoteBrain(faulty.url, make_llm(fake), allow_private=True, greet=False)
    await collect(brain, CallStarted(BrainCall("c")))
    assert await collect(brain, UserTurn("Weather?")) == [
        Say("Let me look."), CallTool("call_w", "get_weather", {"city": "Paris"})]
    assert [r[0] for r in faulty.requests] == ["/session"]  # not the brain's tool: never posted
    assert await collect(brain, ToolResult("call_w", "get_weather", {"sky": "sunny"})) == [Say("It is sunny.")]
    assert fake.bodies[1]["messages"][-1] == {"role": "tool", "tool_call_id": "call_w",
                                              "content": json.dumps({"sky": "sunny"})}


async def test_barge_in_keeps_only_what_was_heard(faulty: FaultyBrain, fake: _fake_openai.FakeOpenAI) -> None:
    fake.scripts = [_fake_openai.reply("First sentence here. Second sentence there."), _fake_openai.reply("Ok.")]
    brain = RemoteBrain(faulty.url, make_llm(fake), allow_private=True, greet=False)
    await collect(brain, CallStarted(BrainCall("c")))
    agen = brain.handle(UserTurn("Tell me"))
    assert await agen.__anext__() == Say("First sentence here.")
    await agen.aclose()  # the runner closes the reply on a barge-in
    assert await collect(brain, BotInterrupted("First sentence")) == []
    assert await collect(brain, UserTurn("Stop")) == [Say("Ok.")]
    assert fake.bodies[1]["messages"][1:] == [
        {"role": "user", "content": "Tell me"},
        {"role": "assistant", "content": "First sentence"},
        {"role": "user", "content": "Stop"},
    ]


async def test_llm_failure_speaks_the_fallback_and_keys_reach_the_llm(
    faulty: FaultyBrain, fake: _fake_openai.FakeOpenAI
) -> None:
    fake.set(Behaviour.STATUS, failures=1, status=500)
    fake.scripts = [_fake_openai.reply("You pressed one two.")]
    brain = RemoteBrain(faulty.url, make_llm(fake), allow_private=True, greet=False, fallback_text="One moment please.")
    await collect(brain, CallStarted(BrainCall("c")))
    assert await collect(brain, UserTurn("Hello")) == [Say("One moment please.")]
    assert brain.failures == 1 and brain.node_id == "greeting"
    # The next event works; keys pressed reach the LLM as a user message.
    assert await collect(brain, Dtmf("12")) == [Say("You pressed one two.")]
    assert fake.bodies[-1]["messages"][-1] == {"role": "user", "content": "(keypad: 12)"}
