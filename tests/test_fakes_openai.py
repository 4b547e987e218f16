"""The fake OpenAI Chat Completions server, driven by a raw aiohttp client: SSE chunk
shapes, tool-call deltas by index, usage chunk, [DONE], errors and faults."""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
import pytest

from flowcat.testing.fakes import Behaviour, FakeOpenAI, Reply, ToolCall

KEY = "sk-test-0123456789-SECRET"
BODY = {
    "model": "gpt-4o-mini",
    "stream": True,
    "stream_options": {"include_usage": True},
    "messages": [{"role": "user", "content": "Weather in Paris?"}],
}


async def _post(fake: FakeOpenAI, body: Any = BODY, key: str = KEY) -> tuple[int, list[str], str]:
    """Returns status, the raw SSE ``data:`` payloads, and the whole body text."""
    async with aiohttp.ClientSession() as s, s.post(
        f"{fake.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as r:
        raw = await r.read()
    text = raw.decode()
    data = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    return r.status, data, text


async def test_stream_text_with_usage_and_done() -> None:
    async with FakeOpenAI(["Sure, it is sunny."], api_key=KEY) as fake:
        status, data, _ = await _post(fake)
    assert status == 200
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Sure, it is sunny."
    assert [c["choices"][0]["delta"]["content"] for c in chunks[:4]] == ["Sure,", " it", " is", " sunny."]
    finish = chunks[-2]
    assert finish["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    last = chunks[-1]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 4
    assert last["usage"]["total_tokens"] == last["usage"]["prompt_tokens"] + 4
    assert all(c["usage"] is None for c in chunks[:-1])
    assert fake.completed == 1 and fake.bodies == [BODY]


async def test_no_usage_chunk_without_include_usage() -> None:
    body = {**BODY, "stream_options": None}
    async with FakeOpenAI(["Hi."], api_key=KEY) as fake:
        _, data, _ = await _post(fake, body)
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["choices"] for c in chunks) and all("usage" not in c for c in chunks)


async def test_parallel_tool_calls_accumulate_by_index() -> None:
    reply = Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_a"),
                              ToolCall("get_time", {"tz": "Europe/Paris"}, id="call_b")])
    async with FakeOpenAI([reply], api_key=KEY, arg_chunk=5, interleave_tool_calls=True) as fake:
        _, data, _ = await _post(fake)
    chunks = [json.loads(d) for d in data[:-1]]
    calls: dict[int, dict[str, str]] = {}
    order = []
    for c in chunks:
        if not c["choices"]:
            continue
        for tc in c["choices"][0]["delta"].get("tool_calls") or []:
            order.append(tc["index"])
            acc = calls.setdefault(tc["index"], {"id": "", "name": "", "arguments": ""})
            acc["id"] += tc.get("id", "")
            acc["name"] += tc.get("function", {}).get("name", "")
            acc["arguments"] += tc.get("function", {}).get("arguments", "")
    assert calls[0] == {"id": "call_a", "name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert calls[1] == {"id": "call_b", "name": "get_time", "arguments": '{"tz":"Europe/Paris"}'}
    assert order[:4] == [0, 1, 0, 1]  # interleaved
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant" and first["content"] is None
    assert first["tool_calls"][0]["type"] == "function"
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_responder_and_script_cycle() -> None:
    async with FakeOpenAI(["one", "two"], api_key=KEY) as fake:
        texts = []
        for _ in range(3):
            _, data, _ = await _post(fake)
            texts.append("".join(json.loads(d)["choices"][0]["delta"].get("content") or ""
                                 for d in data[:-1] if json.loads(d)["choices"]))
    assert texts == ["one", "two", "one"]

    def responder(body: dict[str, Any]) -> str:
        return "tool said " + body["messages"][-1]["content"]

    async with FakeOpenAI(responder=responder, api_key=None) as fake:
        body = {**BODY, "messages": [{"role": "tool", "tool_call_id": "c", "content": "sunny"}]}
        _, data, _ = await _post(fake, body, key="anything")
    assert "".join(json.loads(d)["choices"][0]["delta"].get("content") or ""
                   for d in data[:-1] if json.loads(d)["choices"]) == "tool said sunny"


async def test_non_stream_completion() -> None:
    async with FakeOpenAI([Reply("Done.", [ToolCall("f", {"x": 1}, id="call_1")])], api_key=KEY) as fake:
        async with aiohttp.ClientSession() as s, s.post(
            f"{fake.url}/v1/chat/completions", json={**BODY, "stream": False},
            headers={"Authorization": f"Bearer {KEY}"},
        ) as r:
            body = await r.json()
    assert body["object"] == "chat.completion"
    msg = body["choices"][0]["message"]
    assert msg["content"] == "Done." and msg["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"x":1}'}
    assert body["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(("status", "etype", "code"), [
    (400, "invalid_request_error", None),
    (429, "requests", "rate_limit_exceeded"),
    (500, "server_error", None),
    (503, "server_error", None),
])
async def test_injected_status_errors(status: int, etype: str, code: str | None) -> None:
    async with FakeOpenAI(api_key=KEY, retry_after=0.5) as fake:
        fake.set(Behaviour.STATUS, failures=1, status=status)
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{fake.url}/v1/chat/completions", json=BODY,
                              headers={"Authorization": f"Bearer {KEY}"}) as r:
                err = await r.json()
                assert r.status == status
                if status == 429:
                    assert r.headers["x-ratelimit-remaining-requests"] == "0"
                    assert r.headers["retry-after"] == "0.5"
            assert set(err["error"]) == {"message", "type", "param", "code"}
            assert err["error"]["type"] == etype and err["error"]["code"] == code
            status2, data, _ = await _post(fake)  # only one failure was asked for
    assert status2 == 200 and data[-1] == "[DONE]"
    assert fake.requests == 2


async def test_bad_key_401_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeOpenAI(api_key=KEY) as fake:
        status, _, text = await _post(fake, key="sk-wrong-key-SECRET")
        status_ok, _, _ = await _post(fake)
    assert status == 401 and "invalid_api_key" in text and "sk-wrong-key-SECRET" not in text
    assert status_ok == 200
    assert fake.auth_failures == 1 and not fake.received[0].authorized
    assert all(r.headers["Authorization"] == "<redacted>" for r in fake.received)
    assert not [r for r in caplog.records if KEY in r.getMessage() or "sk-wrong" in r.getMessage()]


async def test_malformed_request_is_400() -> None:
    async with FakeOpenAI(api_key=KEY) as fake:
        status, _, text = await _post(fake, {"messages": "nope"})
    assert status == 400 and json.loads(text)["error"]["type"] == "invalid_request_error"


async def test_mid_stream_error_and_malformed_chunk() -> None:
    async with FakeOpenAI(["a b c"], api_key=KEY) as fake:
        fake.set(Behaviour.STREAM_ERROR, failures=1)
        _, data, _ = await _post(fake)
        assert json.loads(data[0])["choices"][0]["delta"]["content"] == "a"
        assert json.loads(data[1])["error"]["type"] == "server_error"
        assert "[DONE]" not in data
        fake.set(Behaviour.MALFORMED, failures=1)
        _, data, _ = await _post(fake)
        with pytest.raises(ValueError):
            json.loads(data[1])


async def test_disconnect_mid_stream() -> None:
    async with FakeOpenAI(["a b c"], api_key=KEY) as fake:
        fake.set(Behaviour.DISCONNECT, failures=1)
        async with aiohttp.ClientSession() as s, s.post(
            f"{fake.url}/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {KEY}"}
        ) as r:
            assert r.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()


async def test_comments_and_split_writes_keep_the_stream_parseable() -> None:
    async with FakeOpenAI(["héllo wörld"], api_key=KEY, sse_comments=True, split_writes=True) as fake:
        _, data, text = await _post(fake)
    assert text.startswith(": keep-alive\n\n")
    assert "".join(json.loads(d)["choices"][0]["delta"].get("content") or ""
                   for d in data[:-1] if json.loads(d)["choices"]) == "héllo wörld"


async def test_ttft_and_inter_token_delays() -> None:
    import asyncio

    async with FakeOpenAI(["a b c"], api_key=KEY, ttft=0.2, inter_token=0.05) as fake:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        arrivals = []
        async with aiohttp.ClientSession() as s, s.post(
            f"{fake.url}/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {KEY}"}
        ) as r:
            async for line in r.content:
                if line.startswith(b"data: {") and b'"content"' in line:
                    arrivals.append(loop.time() - t0)
    assert arrivals[0] >= 0.2
    assert arrivals[2] - arrivals[0] >= 0.1


async def test_by_conversation_each_conversation_walks_the_script() -> None:
    script = [Reply(tool_calls=[ToolCall("f", {}, id="c1")]), "after the tool", "second turn"]
    user = {"role": "user", "content": "hi"}
    tool_turn = [user, {"role": "assistant", "tool_calls": [{"id": "c1"}]}, {"role": "tool", "content": "x"}]
    turn2 = [*tool_turn, {"role": "assistant", "content": "after the tool"}, user]

    def text_of(data: list[str]) -> str:
        chunks = [json.loads(d) for d in data[:-1]]
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])

    async with FakeOpenAI(script, api_key=KEY, by_conversation=True) as fake:
        _, first, _ = await _post(fake, {**BODY, "messages": [user]})
        _, other, _ = await _post(fake, {**BODY, "messages": [user]})  # another caller, same point
        _, after, _ = await _post(fake, {**BODY, "messages": tool_turn})
        _, second, _ = await _post(fake, {**BODY, "messages": turn2})
    assert '"tool_calls"' in first[0] and '"tool_calls"' in other[0]
    assert (text_of(after), text_of(second)) == ("after the tool", "second turn")


async def test_concurrent_streams_are_recorded_each_in_its_own_record(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from aiohttp import web

    prepare = web.StreamResponse.prepare

    async def slow_prepare(self: web.StreamResponse, request: web.BaseRequest) -> Any:
        await asyncio.sleep(0.05)  # a slow socket: other requests get in meanwhile
        return await prepare(self, request)

    monkeypatch.setattr(web.StreamResponse, "prepare", slow_prepare)

    def echo(body: dict[str, Any]) -> str:
        return str(body["messages"][0]["content"])

    async with FakeOpenAI(responder=echo, api_key=KEY, ttft=0.05) as fake:
        bodies = [{**BODY, "messages": [{"role": "user", "content": w}]} for w in ("alpha", "beta", "gamma")]
        await asyncio.gather(*(_post(fake, b) for b in bodies))
    for rec in fake.received:
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in rec.sent if c["choices"])
        assert text == rec.body["messages"][0]["content"]


async def test_record_payloads_off_keeps_counts_only() -> None:
    async with FakeOpenAI(["a b"], api_key=KEY, record_payloads=False) as fake:
        status, data, _ = await _post(fake)
    assert status == 200 and data[-1] == "[DONE]"
    assert fake.received[0].body is None and fake.received[0].sent == [] and fake.completed == 1
