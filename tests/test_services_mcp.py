"""MCPClient against a real MCP server built with the official SDK (tests/fixtures/mcp_server.py),
started by the tests: as a stdio subprocess and as a streamable-HTTP server on 127.0.0.1.

Covers: tools listed and registered with their schemas; an LLM tool call answered with the
tool's result; error results (tool error, bad arguments, server gone, unreachable server);
an interruption cancelling a slow tool on the server; one session reused across calls;
reconnection after the server died; a clean close at the end of the pipeline (no server
process, no task left).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from _helpers import require
from flowcat import FrameDirection, Pipeline, PipelineTask
from flowcat.errors import ConfigError, MissingExtraError, ServiceConnectionError
from flowcat.frames import (
    EndFrame,
    FunctionCallCancelFrame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    HeartbeatFrame,
    InterruptionFrame,
    LLMContext,
    LLMContextFrame,
    StartFrame,
)
from flowcat.services import Backoff, LLMChunk, LLMService, LLMToolCallDelta
from flowcat.services.adapters import ToolsSchema
from flowcat.testing import CaptureProcessor, assert_call_leaves_nothing

mcp = require("mcp")
from mcp.client.session_group import StreamableHttpParameters  # noqa: E402

from flowcat.services.mcp import MCPClient  # noqa: E402

SERVER = Path(__file__).parent / "fixtures" / "mcp_server.py"
BOUND = 20.0  # every wait below is bounded by this


def stdio_params() -> Any:
    return mcp.StdioServerParameters(command=sys.executable, args=[str(SERVER), "stdio"])


@asynccontextmanager
async def http_server(port: int = 0) -> AsyncIterator[str]:
    """The fixture server on streamable HTTP (on ``port``, else any); yields its URL."""
    proc = await asyncio.create_subprocess_exec(sys.executable, str(SERVER), "http", str(port),
                                                stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), BOUND)
        assert line.startswith(b"PORT "), line
        yield f"http://127.0.0.1:{int(line.split()[1])}/mcp"
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), BOUND)


class ToolLLM(LLMService):
    """Answers each context with the next scripted list of tool calls."""

    def __init__(self, *responses: list[tuple[str, str]]) -> None:
        super().__init__()
        self.responses = list(responses)
        self.n = 0

    async def run_inference(self, context: LLMContext) -> AsyncIterator[LLMChunk]:
        for i, (name, args) in enumerate(self.responses.pop(0)):
            self.n += 1
            yield LLMToolCallDelta(i, id=f"call_{self.n}", name=name)
            yield LLMToolCallDelta(i, arguments=args)


def ctx() -> LLMContextFrame:
    return LLMContextFrame(LLMContext([{"role": "user", "content": "hi"}]))


class Rig:
    """A running pipeline [llm, capture] with bounded waits on what comes out."""

    def __init__(self, llm: LLMService) -> None:
        self.down = CaptureProcessor(FrameDirection.DOWNSTREAM, [StartFrame, HeartbeatFrame])
        self.task = PipelineTask(Pipeline([llm, self.down]))
        self.run: asyncio.Future[None] | None = None

    async def __aenter__(self) -> Rig:
        started = asyncio.Event()
        self.task.add_event_handler("on_pipeline_started", lambda _t, _f: started.set())
        self.run = asyncio.ensure_future(self.task.run())
        await asyncio.wait_for(started.wait(), BOUND)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.run is not None
        if not self.run.done():
            await self.task.queue_frame(EndFrame())
        await asyncio.wait_for(self.run, BOUND)

    async def results(self, n: int) -> list[FunctionCallResultFrame]:
        async def wait() -> list[FunctionCallResultFrame]:
            while True:
                got = [f for f in self.down.frames if isinstance(f, FunctionCallResultFrame)]
                if len(got) >= n:
                    return got
                self.down._event.clear()
                await self.down._event.wait()

        return await asyncio.wait_for(wait(), BOUND)

    async def ask(self) -> None:
        await self.task.queue_frame(ctx())


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` (an MCP round trip each time) until true, bounded."""
    deadline = time.monotonic() + BOUND
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def stats(client: MCPClient) -> dict[str, Any]:
    value = await client.call_tool("stats")
    assert isinstance(value, str), value
    import json

    return dict(json.loads(value))


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def no_tasks_left() -> None:
    me = asyncio.current_task()
    deadline = time.monotonic() + BOUND
    while True:
        left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not left:
            return
        assert time.monotonic() < deadline, f"tasks left: {left}"
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------ schemas


async def test_stdio_tools_are_listed_and_registered_with_their_schemas() -> None:
    llm = ToolLLM()
    client = MCPClient(stdio_params(), tools_arguments={"weather": {"unit": "f"}})
    try:
        tools = await client.register_tools(llm)
        assert isinstance(tools, ToolsSchema)
        schemas = {s.name: s for s in tools.standard_tools}
        assert set(schemas) == {"add", "weather", "plan", "slow", "fail", "crash", "stats"}
        add = schemas["add"]
        assert add.description == "Add two integers."
        assert {k: v["type"] for k, v in add.properties.items()} == {"a": "integer", "b": "integer"}
        assert sorted(add.required) == ["a", "b"]
        assert add.to_openai()["function"]["parameters"]["type"] == "object"
        # A fixed argument is hidden from the model (and filled in on every call).
        assert set(schemas["weather"].properties) == {"city"} and schemas["weather"].required == ["city"]
        assert await client.call_tool("weather", {"city": "Oslo", "unit": "c"}) == "Sunny, 70 degrees in Oslo"
        assert all(llm.has_function(n) for n in schemas) and not llm.has_function("other")
        # A model argument's $ref is inlined: the schema stands alone.
        stops = schemas["plan"].properties["stops"]
        assert "$ref" not in str(stops) and stops["items"]["properties"]["city"]["type"] == "string"
        assert stops["items"]["required"] == ["city"]
        # The schemas go into a context as pipecat's do; the service offers them to the model.
        offered = llm.tools_for(LLMContext([], tools=tools))
        assert offered is not None and {t["function"]["name"] for t in offered} == set(schemas)
        plan = await client.call_tool("plan", {"stops": [{"city": "Rome", "nights": 2}, {"city": "Pisa"}]})
        assert plan == "Rome (2), Pisa (1)"
    finally:
        await client.close()


async def test_tools_filter_registers_only_the_named_tools() -> None:
    llm = ToolLLM()
    async with MCPClient(stdio_params(), tools_filter=["add"]) as client:
        assert [s.name for s in (await client.register_tools(llm)).standard_tools] == ["add"]
        assert (await client.get_tools_schema()).names() == {"add"}
        assert llm.has_function("add") and not llm.has_function("weather")


# ------------------------------------------------------------ calls (stdio)


async def test_llm_tool_calls_get_results_over_one_session_and_the_end_closes_it() -> None:
    llm = ToolLLM([("add", '{"a": 2, "b": 3}'), ("weather", '{"city": "Paris"}')],
                  [("stats", "{}")], [("stats", "{}")])
    client = MCPClient(stdio_params())
    await client.register_tools(llm)
    async with Rig(llm) as rig:
        await rig.ask()
        res = await rig.results(2)
        assert {r.tool_call_id: r.result for r in res} == {"call_1": "5", "call_2": "Sunny, 21 degrees in Paris"}
        await rig.ask()
        await rig.ask()
        res = await rig.results(4)
    import json

    first, second = (json.loads(r.result) for r in res[2:])
    # One server process and one session served every call.
    assert first["pid"] == second["pid"]
    assert client.connects == 1
    # The end of the pipeline closed the client: no session, no server process, no task.
    assert not client.connected
    assert process_gone(first["pid"])
    await no_tasks_left()


async def test_a_call_with_mcp_tools_leaves_nothing_behind() -> None:
    async def call() -> tuple[str, bool]:
        llm = ToolLLM([("add", '{"a": 20, "b": 22}')])
        client = MCPClient(stdio_params())
        await client.register_tools(llm)
        async with Rig(llm) as rig:
            await rig.ask()
            res = await rig.results(1)
        return str(res[0].result), client.connected

    # No flowcat object left in a reference cycle, no task still running (the session's included).
    assert await assert_call_leaves_nothing(call) == ("42", False)


async def test_error_results_for_a_failing_tool_and_bad_arguments() -> None:
    llm = ToolLLM([("fail", '{"reason": "boom"}'), ("add", '{"a": "x"}')])
    client = MCPClient(stdio_params())
    await client.register_tools(llm)
    async with Rig(llm) as rig:
        await rig.ask()
        res = {r.tool_call_id: r.result for r in await rig.results(2)}
    assert res["call_1"] == "The tool `fail` failed: Error executing tool fail: failing on purpose: boom"
    assert res["call_2"].startswith("The tool `add` failed:") and "validation error" in res["call_2"]
    assert not client.connected


async def test_an_interruption_cancels_the_slow_tool_on_the_server() -> None:
    llm = ToolLLM([("slow", '{"seconds": 60}')])
    client = MCPClient(stdio_params())
    await client.register_tools(llm)
    async with Rig(llm) as rig:
        await rig.ask()
        await rig.down.wait_for(FunctionCallInProgressFrame, BOUND)

        async def slow_started() -> bool:
            return (await stats(client))["slow_started"] == 1

        await until(slow_started, "the slow tool to start on the server")
        await rig.task.queue_frame(InterruptionFrame())
        cancel = await rig.down.wait_for(FunctionCallCancelFrame, BOUND)
        assert cancel.tool_call_id == "call_1"  # type: ignore[attr-defined]

        async def slow_cancelled() -> bool:
            return (await stats(client))["slow_cancelled"] == 1

        # The server saw notifications/cancelled and stopped the tool.
        await until(slow_cancelled, "the server to cancel the slow tool")
        s = await stats(client)
        assert s["slow_finished"] == 0
    assert not any(isinstance(f, FunctionCallResultFrame) for f in rig.down.frames)
    assert client.connects == 1


async def test_the_deadline_of_a_call_cancels_it_on_the_server() -> None:
    llm = ToolLLM([("slow", '{"seconds": 60}')])
    client = MCPClient(stdio_params(), timeout_secs=0.5)
    await client.register_tools(llm)
    async with Rig(llm) as rig:
        await rig.ask()
        res = await rig.results(1)
        assert res[0].result == "The function `slow` timed out after 0.5 s and returned no result."

        async def cancelled() -> bool:
            return (await stats(client))["slow_cancelled"] == 1

        await until(cancelled, "the server to cancel the slow tool")


async def test_a_dead_server_gives_an_error_result_and_the_next_call_reconnects() -> None:
    llm = ToolLLM([("stats", "{}")], [("crash", "{}")], [("stats", "{}")])
    client = MCPClient(stdio_params())
    await client.register_tools(llm)
    async with Rig(llm) as rig:
        await rig.ask()
        await rig.results(1)
        await rig.ask()
        res = await rig.results(2)
        assert res[1].result == "The tool `crash` failed: the connection to the MCP server was lost"
        await rig.ask()
        res = await rig.results(3)
    import json

    before, after = json.loads(res[0].result), json.loads(res[2].result)
    assert before["pid"] != after["pid"] and client.connects == 2
    assert process_gone(before["pid"]) and process_gone(after["pid"])


async def test_an_unreachable_server_fails_bounded() -> None:
    client = MCPClient(mcp.StdioServerParameters(command=sys.executable, args=["-c", "raise SystemExit(1)"]),
                       connect_timeout_secs=1.0, retry=Backoff(initial=0.05, max_attempts=2))
    with pytest.raises(ServiceConnectionError):
        await client.start()
    assert not client.connected
    # A call reports an error result instead of raising.
    text = await client.call_tool("add", {"a": 1, "b": 2})
    assert text == "The tool `add` failed: the MCP server is unreachable"
    await client.close()
    await no_tasks_left()


async def test_a_call_on_a_closed_client_is_an_error_result() -> None:
    client = MCPClient(stdio_params())
    assert await client.call_tool("add", {"a": 1, "b": 2}) == "The tool `add` failed: the MCP client is closed"


# --------------------------------------------------------- streamable HTTP


async def test_streamable_http_tools_results_cancel_and_one_session() -> None:
    async with http_server() as url:
        llm = ToolLLM([("add", '{"a": 40, "b": 2}')], [("slow", '{"seconds": 60}')])
        client = MCPClient(StreamableHttpParameters(url=url), allow_private=True)
        names = {s.name for s in (await client.register_tools(llm)).standard_tools}
        assert {"add", "weather", "slow", "fail", "stats"} <= names
        async with Rig(llm) as rig:
            await rig.ask()
            assert (await rig.results(1))[0].result == "42"
            s1 = await stats(client)
            await rig.ask()
            await rig.down.wait_for(FunctionCallInProgressFrame, BOUND)

            async def slow_started() -> bool:
                return (await stats(client))["slow_started"] == 1

            await until(slow_started, "the slow tool to start")
            await rig.task.queue_frame(InterruptionFrame())
            await rig.down.wait_for(FunctionCallCancelFrame, BOUND)

            async def slow_cancelled() -> bool:
                return (await stats(client))["slow_cancelled"] == 1

            await until(slow_cancelled, "the server to cancel the slow tool")
            s2 = await stats(client)
            assert s1["session"] == s2["session"] != "stdio" and client.connects == 1
        assert not client.connected
        await no_tasks_left()


async def test_streamable_http_server_restart_error_then_reconnect() -> None:
    async with http_server() as url:
        client = MCPClient(url, allow_private=True, connect_timeout_secs=2.0, retry=Backoff(initial=0.05, max_attempts=3))
        await client.start()
        first = await stats(client)
        slow = asyncio.ensure_future(client.call_tool("slow", {"seconds": 60}))

        async def slow_started() -> bool:
            return (await stats(client))["slow_started"] == 1

        await until(slow_started, "the slow tool to start")
    # The server is gone: the call in flight and the next one end with error results.
    assert await asyncio.wait_for(slow, BOUND) == "The tool `slow` failed: the connection to the MCP server was lost"
    assert await client.call_tool("add", {"a": 1, "b": 1}) == "The tool `add` failed: the MCP server is unreachable"
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    async with http_server(port):
        # Back on the same address: the next call opens a new session.
        second = await stats(client)
        assert second["session"] != first["session"] and second["pid"] != first["pid"]
        assert client.connects == 2
        await client.close()
    await no_tasks_left()


async def test_a_url_is_taken_as_streamable_http() -> None:
    async with http_server() as url, MCPClient(url, allow_private=True) as client:
        assert await client.call_tool("add", {"a": 1, "b": 2}) == "3"


# -------------------------------------------------------------------- misc


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)
    with pytest.raises(MissingExtraError) as info:
        MCPClient("http://127.0.0.1:1/mcp")
    assert info.value.extra == "mcp" and "flowcat[mcp]" in str(info.value)


def test_results_of_other_shapes() -> None:
    from types import SimpleNamespace as NS

    from flowcat.services.mcp._convert import EMPTY_RESULT, tool_result

    structured = NS(content=[], structured_content={"temp": 21}, is_error=False)
    assert tool_result(structured) == {"temp": 21}
    image = NS(content=[NS(type="image", mime_type="image/png")], structured_content=None)
    assert tool_result(image) == "The tool returned non-text content: image (image/png)."
    texts = NS(content=[NS(type="text", text="a"), NS(type="resource", resource=NS(text="b"))],
               structured_content={"x": 1})
    assert tool_result(texts) == "a\nb"
    assert tool_result(NS(content=[], structured_content=None)) == EMPTY_RESULT


def test_recursive_refs_are_cut() -> None:
    from types import SimpleNamespace as NS

    from flowcat.services.mcp._convert import tool_schema

    node = {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}
    tool = NS(name="tree", description=None, input_schema={
        "type": "object", "properties": {"root": {"$ref": "#/$defs/Node", "description": "top"}},
        "required": ["root"], "$defs": {"Node": node}})
    root = tool_schema(tool).properties["root"]
    assert root["description"] == "top" and root["type"] == "object"
    depth, n = 0, root
    while "child" in n.get("properties", {}):
        n, depth = n["properties"]["child"], depth + 1
    assert 1 < depth < 20 and "$ref" not in str(root)


def test_a_malformed_input_schema_is_a_protocol_error() -> None:
    from types import SimpleNamespace as NS

    from flowcat.errors import ServiceProtocolError
    from flowcat.services.mcp._convert import tool_schema

    with pytest.raises(ServiceProtocolError):
        tool_schema(NS(name="t", description="", input_schema={"type": "object", "properties": ["a"]}))


def test_the_name_leaves_out_the_query_of_the_url() -> None:
    assert MCPClient("https://example.test/mcp?key=SECRET123").name == "mcp:https://example.test/mcp"


def test_bad_server_params_are_refused() -> None:
    with pytest.raises(ConfigError):
        MCPClient(42)


async def test_output_filter_shapes_the_result() -> None:
    async with MCPClient(stdio_params(), tools_output_filters={"add": lambda v: {"sum": int(v)}}) as client:
        assert await client.call_tool("add", {"a": 1, "b": 2}) == {"sum": 3}


async def test_close_is_idempotent_and_start_reopens() -> None:
    client = MCPClient(stdio_params())
    await client.close()
    await client.start()
    pid = (await stats(client))["pid"]
    await client.close()
    await client.close()
    assert process_gone(pid)
    await client.start()
    assert (await stats(client))["pid"] != pid
    await client.close()
    with suppress(Exception):
        await no_tasks_left()
