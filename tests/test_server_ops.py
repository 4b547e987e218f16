"""Server operations and security, in process: agents by name, readiness reasons, /metrics (and
501 without prometheus-client), CORS, the token bucket, call ids in log records, drain."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from flowcat.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame, TTSSpeakFrame
from flowcat.runtime import FrameDirection, FrameProcessor
from flowcat.server import Admission, CallInfo, EchoProcessor, ServerConfig, create_app
from flowcat.server._agents import Agent, Agents
from flowcat.server._app import drain
from flowcat.server._logging import CallIdFilter, JsonFormatter, call_id
from flowcat.server._security import RateLimiter, Security
from flowcat.server._state import STATE_KEY


class Tagger(FrameProcessor):
    """Answers each caller chunk with ``tag`` bytes (which agent served the call), and a
    TTSSpeakFrame with b"BYE!" audio (what the goodbye became)."""

    def __init__(self, tag: bytes) -> None:
        super().__init__()
        self.tag = tag

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self.push_frame(OutputAudioRawFrame(self.tag * (len(frame.audio) // len(self.tag)), 8000))
        elif isinstance(frame, TTSSpeakFrame):
            await self.push_frame(OutputAudioRawFrame(b"BYE!" * 80, 8000))
        else:
            await self.push_frame(frame, direction)


def _agent(name: str, tag: bytes, transports: tuple[str, ...], capacity: int = 10) -> Agent:
    return Agent(name, lambda call: [Tagger(tag)], frozenset(transports), Admission(capacity=capacity))


async def _client(**kw: object) -> TestClient:
    agents = Agents([_agent("alpha", b"AA", ("protobuf", "twilio")), _agent("beta", b"BB", ("protobuf",), 1)],
                    {"gamma": ["a.yaml:3:5: agents.gamma: broken"]})
    cfg = ServerConfig(audio_in_sample_rate=8000, audio_out_sample_rate=8000, agents=agents, **kw)  # type: ignore[arg-type]
    client = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    return client


async def test_unprefixed_routes_serve_the_app_or_the_default_agent() -> None:
    client = await _client()
    try:
        ws = await client.ws_connect("/ws?sample_rate=8000")
        await ws.send_bytes(b"\x01\x02" * 160)
        assert (await asyncio.wait_for(ws.receive(), 5.0)).data == b"\x01\x02" * 160  # the echo app
        await ws.close()
    finally:
        await client.close()
    client = await _client(use_default_agent=True)
    try:
        ws = await client.ws_connect("/ws?sample_rate=8000")
        await ws.send_bytes(b"\x01\x02" * 160)
        assert (await asyncio.wait_for(ws.receive(), 5.0)).data == b"AA" * 160  # the first agent
        await ws.close()
    finally:
        await client.close()


async def test_readyz_says_why_per_agent() -> None:
    client = await _client()
    try:
        state = client.server.app[STATE_KEY]
        body = await (await client.get("/readyz")).json()
        assert body["ready"] is True and body["reasons"] == []
        assert body["agents"]["gamma"] == {"ready": False, "reasons": ["not served: configuration problems"]}
        listed = await (await client.get("/api/agents")).json()
        assert listed["not_served"] == {"gamma": ["a.yaml:3:5: agents.gamma: broken"]}
        state.warming = True
        r = await client.get("/readyz")
        body = await r.json()
        assert r.status == 503 and body["reasons"] == ["warming up (loading models)"]
        assert body["agents"]["alpha"]["reasons"] == ["warming up (loading models)"]
        state.warming = False
        # beta (capacity 1) holds one call: it alone is not ready, the worker still is.
        ws = await client.ws_connect("/protobuf/beta/ws")
        for _ in range(100):
            if state.config.agents.get("beta").admission.active == 1:
                break
            await asyncio.sleep(0.01)
        r = await client.get("/readyz")
        body = await r.json()
        assert r.status == 200 and body["agents"]["beta"]["reasons"] == ["at capacity (1/1 calls)"]
        assert body["agents"]["alpha"]["ready"] is True
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await client.ws_connect("/protobuf/beta/ws")
        assert err.value.status == 503
        await ws.close()
        state.admission.draining = True
        r = await client.get("/readyz")
        assert r.status == 503 and (await r.json())["reasons"] == ["draining"]
    finally:
        await client.close()


async def test_agent_routes_pick_the_agent_and_refuse_unlisted_transports() -> None:
    client = await _client(verify_signatures=False)
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await client.ws_connect("/telephony/twilio/beta/ws")
        assert err.value.status == 404
        r = await client.post("/telephony/twilio/beta/answer")
        assert r.status == 404 and "not reachable by twilio" in await r.text()
        r = await client.post("/telephony/nosuch/alpha/answer")
        assert r.status == 404 and "unknown carrier" in await r.text()
    finally:
        await client.close()


async def test_metrics_count_calls_per_agent_and_transport() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    client = await _client()
    try:
        from flowcat.transports import ProtobufFrameSerializer  # noqa: F401 (the route needs it)

        ws = await client.ws_connect("/protobuf/alpha/ws")
        await ws.close()
        state = client.server.app[STATE_KEY]
        for _ in range(200):
            if not state.calls:
                break
            await asyncio.sleep(0.01)
        text = await (await client.get("/metrics")).text()
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(text) for s in f.samples}
        assert samples[("flowcat_calls_total", (("agent", "alpha"), ("transport", "protobuf")))] == 1.0
        assert samples[("flowcat_calls_active", (("agent", "alpha"), ("transport", "protobuf")))] == 0.0
    finally:
        await client.close()


async def test_metrics_without_prometheus_client_is_501_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    client = await _client()
    try:
        r = await client.get("/metrics")
        assert r.status == 501 and "pip install 'flowcat[metrics]'" in await r.text()
        assert (await client.get("/healthz")).status == 200
    finally:
        await client.close()


async def test_cors_is_closed_unless_the_origin_is_allowed() -> None:
    client = await _client(security=Security(cors_origins=("https://ok.example",)))
    try:
        r = await client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in r.headers
        r = await client.get("/healthz", headers={"Origin": "https://ok.example"})
        assert r.headers["Access-Control-Allow-Origin"] == "https://ok.example"
        r = await client.options("/api/agents", headers={"Origin": "https://ok.example"})
        assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "https://ok.example"
    finally:
        await client.close()
    client = await _client()
    try:
        r = await client.get("/api/agents", headers={"Origin": "https://ok.example"})
        assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers  # no token set: open
    finally:
        await client.close()


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)
    assert limiter.take("b") == 0.0  # per key
    now[0] = 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


def test_log_records_carry_the_call_id_and_json_lines_parse() -> None:
    record = logging.LogRecord("flowcat.x", logging.INFO, __file__, 1, "hello %s", ("there",), None)
    CallIdFilter().filter(record)
    assert record.call_id is None and json.loads(JsonFormatter().format(record))["msg"] == "hello there"

    async def in_call() -> logging.LogRecord:
        from flowcat.server._logging import new_call_id

        cid = new_call_id()

        async def child() -> logging.LogRecord:  # a task the call starts inherits the id
            rec = logging.LogRecord("flowcat.x", logging.INFO, __file__, 1, "in call", (), None)
            CallIdFilter().filter(rec)
            return rec

        rec = await asyncio.get_running_loop().create_task(child())
        assert rec.call_id == cid
        return rec

    rec = asyncio.run(in_call())
    line = json.loads(JsonFormatter().format(rec))
    assert line["call_id"] == rec.call_id and len(line["call_id"]) == 12
    assert call_id.get() is None  # outside the call nothing leaked


async def test_drain_says_goodbye_to_calls_left_then_ends_them() -> None:
    client = await _client(use_default_agent=True)
    try:
        ws = await client.ws_connect("/ws?sample_rate=8000")
        await ws.send_bytes(b"\x00\x00" * 160)
        assert (await asyncio.wait_for(ws.receive(), 5.0)).data == b"AA" * 160
        app = client.server.app
        left = await drain(app, 0.2, goodbye="Goodbye.")
        assert left == 0  # ended by the goodbye and the EndFrame, not cancelled
        got = []
        async for msg in ws:
            got.append(msg.data)
        assert got and all(chunk == b"BYE!" * 80 for chunk in got)
        assert not app[STATE_KEY].calls
    finally:
        await client.close()


def test_call_info_names_the_agent() -> None:
    from flowcat.config import parse_config
    from flowcat.server._agents import agents_from_config

    loaded = parse_config("agents:\n  a:\n    brain: {kind: llm}\n    topology: {stt: {provider: deepgram}, "
                          "tts: {provider: cartesia}}\n", "x.yaml")
    agents = agents_from_config(loaded, capacity=5)
    assert not agents and agents.problems["a"][0].startswith("x.yaml:")
    call = CallInfo(carrier="twilio")
    assert call.extra == {}
    _ = EchoProcessor  # the default app stays importable


async def test_picows_engine_routes_agents_and_checks_the_token() -> None:
    from _helpers import require

    require("picows")
    from flowcat.server import ServerState
    from flowcat.server._calls import drain_state
    from flowcat.server._picows_engine import serve_picows

    agents = Agents([_agent("alpha", b"AA", ("protobuf",)), _agent("beta", b"BB", ("twilio",))])
    cfg = ServerConfig(audio_in_sample_rate=8000, audio_out_sample_rate=8000, agents=agents,
                       security=Security(token="s3cret"))
    state = ServerState(cfg)
    server = await serve_picows(state, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await s.ws_connect(base + "/protobuf/alpha/ws")
            assert err.value.status == 401
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await s.ws_connect(base + "/protobuf/beta/ws?token=s3cret")
            assert err.value.status == 404  # beta is not reachable by protobuf
            ws = await s.ws_connect(base + "/protobuf/alpha/ws?token=s3cret")
            for _ in range(100):
                if agents.get("alpha").admission.active == 1:  # type: ignore[union-attr]
                    break
                await asyncio.sleep(0.01)
            assert agents.get("alpha").admission.active == 1  # type: ignore[union-attr]
            async with s.get(base + "/readyz") as r:
                body = await r.json()
                assert r.status == 200 and body["agents"]["alpha"]["active"] == 1
            await ws.close()
    finally:
        server.close()
        await drain_state(state, 0.0)


class Failing(FrameProcessor):
    """Reports one ErrorFrame upstream on the first caller audio (as a failing provider does)."""

    def __init__(self) -> None:
        super().__init__(name="FakeSTT#1")
        self.failed = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame) and not self.failed:
            self.failed = True
            await self.push_error("provider went away")
        await self.push_frame(frame, direction)


async def test_provider_errors_are_counted_by_processor_without_an_observer() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from flowcat.server._session import CURRENT_CALL  # noqa: F401 (the record the call runs under)

    tasks: list[object] = []
    agent = Agent("alpha", lambda call: [Failing(), EchoProcessor()], frozenset({"protobuf"}), Admission(10))
    cfg = ServerConfig(audio_in_sample_rate=8000, audio_out_sample_rate=8000, agents=Agents([agent]),
                       use_default_agent=True)
    client = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    try:
        state = client.server.app[STATE_KEY]
        ws = await client.ws_connect("/ws?sample_rate=8000")
        await ws.send_bytes(b"\x01\x00" * 160)
        await asyncio.wait_for(ws.receive(), 5.0)
        tasks = [r.task for r in state.records.values()]
        assert tasks and all(t is not None and t.observers == [] for t in tasks)  # type: ignore[attr-defined]
        await ws.close()
        for _ in range(200):
            text = await (await client.get("/metrics")).text()
            samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                       for f in text_string_to_metric_families(text) for s in f.samples}
            key = ("flowcat_provider_errors_total", (("agent", "alpha"), ("service", "FakeSTT#1")))
            if samples.get(key) == 1.0:
                break
            await asyncio.sleep(0.01)
        assert samples.get(key) == 1.0, samples
    finally:
        await client.close()


CONFIG = """\
server: {host: 127.0.0.2, port: 9100, public_url: "https://cfg.example", token_env: MY_TOKEN}
agents:
  a:
    brain: {kind: llm}
    topology: {stt: {provider: deepgram}, llm: {provider: openai}, tts: {provider: cartesia}}
"""


@pytest.mark.parametrize("how", ["positional", "option", "env"])
def test_serve_reads_the_config_and_flags_override_its_server_settings(
    how: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path

    import flowcat.server
    from flowcat.cli import main

    path = Path(str(tmp_path)) / "agents.yaml"
    path.write_text(CONFIG)
    for k in ("DEEPGRAM_API_KEY", "OPENAI_API_KEY", "CARTESIA_API_KEY", "MY_TOKEN"):
        monkeypatch.setenv(k, "x")
    monkeypatch.delenv("FLOWCAT_CONFIG", raising=False)
    seen: list[object] = []
    monkeypatch.setattr(flowcat.server, "supervise", lambda opts: seen.append(opts) or 0)
    args = {"positional": [str(path)], "option": ["--config", str(path)], "env": []}[how]
    if how == "env":
        monkeypatch.setenv("FLOWCAT_CONFIG", str(path))
    assert main(["serve", *args]) == 0
    opts = seen[-1]
    assert (opts.host, opts.port, opts.public_url, opts.token_env) == (  # type: ignore[attr-defined]
        "127.0.0.2", 9100, "https://cfg.example", "MY_TOKEN")
    assert opts.config == str(path) and opts.agents == ["a"]  # type: ignore[attr-defined]
    assert main(["serve", *args, "--host", "127.0.0.1", "--port", "9", "--public-url", "https://f.example"]) == 0
    opts = seen[-1]
    assert (opts.host, opts.port, opts.public_url) == ("127.0.0.1", 9, "https://f.example")  # type: ignore[attr-defined]
    monkeypatch.delenv("MY_TOKEN")  # 127.0.0.2 is loopback: no token needed
    assert main(["serve", *args]) == 0
    assert main(["serve", *args, "--host", "0.0.0.0"]) == 2  # off loopback without MY_TOKEN


def test_serve_without_a_config_keeps_todays_behaviour(monkeypatch: pytest.MonkeyPatch) -> None:
    import flowcat.server
    from flowcat.cli import main

    monkeypatch.delenv("FLOWCAT_CONFIG", raising=False)
    seen: list[object] = []
    monkeypatch.setattr(flowcat.server, "supervise", lambda opts: seen.append(opts) or 0)
    assert main(["serve", "--app", "flowcat.server._apps:async_app"]) == 0
    opts = seen[-1]
    assert (opts.host, opts.port, opts.config, opts.app) == (  # type: ignore[attr-defined]
        "127.0.0.1", 8765, None, "flowcat.server._apps:async_app")


async def test_agent_carrier_routes_keep_the_carrier_signature_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    from test_server import PUBLIC, _twilio_signature

    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "secret-token")
    client = await _client(public_url=PUBLIC)
    try:
        params = {"CallSid": "CA9", "From": "+15550009"}
        path = "/telephony/twilio/alpha/answer"
        bad = await client.post(path, data=params, headers={"X-Twilio-Signature": "AAAA"})
        assert bad.status == 403
        old_route = _twilio_signature(PUBLIC + "/twilio/answer", params, "secret-token")
        bad = await client.post(path, data=params, headers={"X-Twilio-Signature": old_route})
        assert bad.status == 403  # a signature is over the URL called, the agent's
        sig = _twilio_signature(PUBLIC + path, params, "secret-token")
        good = await client.post(path, data=params, headers={"X-Twilio-Signature": sig})
        text = await good.text()
        assert good.status == 200 and f"{PUBLIC.replace('https', 'wss')}/telephony/twilio/alpha/ws" in text
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await client.ws_connect("/telephony/twilio/alpha/ws", headers={"X-Twilio-Signature": "AAAA"})
        assert err.value.status == 403
    finally:
        await client.close()


async def test_an_app_factorys_warm_up_runs_off_the_loop_before_the_worker_is_ready(caplog) -> None:
    """``flowcat serve --app m:f``: ``f.warm_up`` (say, loading a model) runs once per worker in
    a thread, with /readyz answering "warming up" meanwhile; a failing one is logged, not fatal."""
    import threading

    from flowcat.server._state import ServerConfig, ServerState
    from flowcat.server._workers import _warm_up

    loop_thread = threading.get_ident()
    ran: list[int] = []
    release = threading.Event()

    def factory(call):  # the app itself is never called by the warm-up
        raise AssertionError("called")

    def warm_up() -> None:
        ran.append(threading.get_ident())
        release.wait(10)

    factory.warm_up = warm_up  # type: ignore[attr-defined]
    state = ServerState(ServerConfig(app=factory))
    state.warming = True
    job = asyncio.ensure_future(_warm_up(state))
    for _ in range(500):
        if ran:
            break
        await asyncio.sleep(0.01)
    assert ran and ran[0] != loop_thread  # running, and not on the event loop
    assert state.warming  # still loading: not ready
    release.set()
    await asyncio.wait_for(job, 10)
    assert not state.warming and len(ran) == 1

    def broken() -> None:
        raise RuntimeError("no model here")

    factory.warm_up = broken  # type: ignore[attr-defined]
    state = ServerState(ServerConfig(app=factory))
    state.warming = True
    await asyncio.wait_for(_warm_up(state), 10)
    assert not state.warming
    assert any("warm-up failed: no model here" in r.getMessage() for r in caplog.records)
