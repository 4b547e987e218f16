"""``flowcat serve AGENTS.yaml``: two agents from one file on one server, each reached by its own
carrier routes; a broken third agent reported with file:line and not served; /readyz per agent;
/metrics scraped and parsed; the API token, size and rate limits; JSON logs with call ids; no
secret in logs or error bodies; SIGTERM drains with a goodbye.

Every provider is a local fake (``python -m flowcat.testing.fakes``); callers are the scripted
Twilio callers of ``flowcat bench agent`` (recorded speech, real time).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from _server_helpers import free_port, kill_group

pytestmark = pytest.mark.timeout(240)

TOKEN = "tok-secret-4f9a1c"
KEYS = {"DEEPGRAM_API_KEY": "dg-secret-77aa", "OPENAI_API_KEY": "oa-secret-88bb", "CARTESIA_API_KEY": "ca-secret-99cc"}
PUBLIC = "https://agents.example.test"


def _yaml(fakes: dict[str, Any], port: int) -> str:
    stt = f'{{provider: deepgram, options: {{base_url: "{fakes["deepgram_url"]}"}}}}'
    llm = f'{{provider: openai, model: gpt-4.1, options: {{base_url: "{fakes["openai_base_url"]}"}}}}'
    tts = f'{{provider: cartesia, voice: v1, options: {{base_url: "{fakes["deepgram_url"]}"}}}}'
    return f"""\
version: 1
server:
  host: 127.0.0.1
  port: {port}
  public_url: {PUBLIC}
agents:
  alpha:
    description: The first agent.
    brain: {{kind: llm, system_prompt: Be brief.}}
    topology: {{stt: {stt}, llm: {llm}, tts: {tts}}}
    transports: [twilio, protobuf]
  beta:
    brain: {{kind: llm, system_prompt: Be very brief.}}
    topology: {{stt: {stt}, llm: {llm}, tts: {tts}}}
    transports: [telnyx, twilio]
    capacity: 3
  broken:
    brain: {{kind: llm}}
    topology:
      stt: {{provider: deepgramm}}
      llm: {llm}
      tts: {tts}
    transports: [twilio]
"""


@dataclass
class Served:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    config: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    port_file = tmp_path_factory.mktemp("fakes") / "fakes.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowcat.testing.fakes", "--port-file", str(port_file), "--llm-reply", "Sure."],
        stdout=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        for _ in range(600):
            if port_file.exists():
                break
            assert proc.poll() is None, "fakes exited"
            time.sleep(0.05)
        yield json.loads(port_file.read_text())
    finally:
        kill_group(proc)


def _start(tmp: Path, fakes: dict[str, Any], *extra: str, env: dict[str, str] | None = None) -> Served:
    port = free_port()
    config = tmp / "agents.yaml"
    config.write_text(_yaml(fakes, port))
    log = tmp / f"serve-{port}.log"
    full_env = {**os.environ, **KEYS, "FLOWCAT_API_TOKEN": TOKEN, **(env or {})}
    full_env.pop("FLOWCAT_CONFIG", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowcat.cli", "-v", "serve", str(config), "--workers", "1", *extra],
            stdout=out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True,
        )
    served = Served(port, proc, log, config)
    _wait_ready(served)
    return served


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Connection": "close", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=5.0) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_ready(served: Served) -> None:
    for _ in range(1200):
        with contextlib.suppress(OSError):
            status, _ = _get(served.base + "/readyz")
            if status == 200:
                return
        assert served.proc.poll() is None, served.stderr()
        time.sleep(0.05)
    raise AssertionError("server not ready:\n" + served.stderr())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, fakes: dict[str, Any]) -> Iterator[Served]:
    s = _start(
        tmp_path_factory.mktemp("serve"), fakes,
        "--log-format", "json", "--turn-metrics", "--max-body", "4096", "--call-rate", "0.2", "--call-burst", "2",
    )
    try:
        yield s
    finally:
        kill_group(s.proc)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _metrics(served: Served) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    status, body = _get(served.base + "/metrics", AUTH)
    assert status == 200, body
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


# --- configuration --------------------------------------------------------------------------


def test_a_broken_agent_is_reported_with_file_and_line_and_not_served(served: Served) -> None:
    log = served.stderr()
    line = next(i + 1 for i, t in enumerate(served.config.read_text().splitlines()) if "deepgramm" in t)
    assert f"{served.config}:{line}:" in log and "agents.broken.topology.stt.provider" in log, log
    assert "agent 'broken' is not served" in log
    status, body = _get(served.base + "/readyz")
    ready = json.loads(body)
    assert status == 200 and ready["ready"] is True
    assert ready["agents"]["alpha"]["ready"] and ready["agents"]["beta"]["ready"]
    assert ready["agents"]["broken"]["ready"] is False and "problems" not in ready["agents"]["broken"]
    status, body = _get(served.base + "/api/agents", AUTH)
    listed = json.loads(body)
    assert list(listed["not_served"]) == ["broken"]
    assert any("deepgramm" in p for p in listed["not_served"]["broken"])


async def test_a_route_of_an_agent_not_served_or_a_transport_it_does_not_list_is_404(served: Served) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(served.base + "/telephony/twilio/broken/answer") as r:
            assert r.status == 404 and "configured but not served" in await r.text()
        async with s.post(served.base + "/telephony/telnyx/alpha/answer") as r:
            text = await r.text()
            assert r.status == 404 and "not reachable by telnyx" in text and "protobuf, twilio" in text
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await s.ws_connect(served.base + "/telephony/telnyx/alpha/ws")
        assert err.value.status == 404
        async with s.post(served.base + "/telephony/twilio/nobody/answer") as r:
            assert r.status == 404 and "no agent 'nobody'" in await r.text()


def test_no_servable_agent_exits_non_zero(tmp_path: Path, fakes: dict[str, Any]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(_yaml(fakes, free_port()))
    env = {k: v for k, v in os.environ.items() if k not in KEYS}  # no key: no agent can run
    r = subprocess.run([sys.executable, "-m", "flowcat.cli", "serve", "--config", str(config)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "no agent can be served" in r.stderr and "DEEPGRAM_API_KEY" in r.stderr
    assert f"{config}:" in r.stderr


# --- carrier routes per agent ---------------------------------------------------------------


async def test_answer_webhooks_name_the_agent_in_the_stream_url(served: Served) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(served.base + "/telephony/twilio/alpha/answer", data={"CallSid": "CA1"}) as r:
            text = await r.text()
            assert r.status == 200 and "wss://agents.example.test/telephony/twilio/alpha/ws" in text, text
        async with s.post(served.base + "/telephony/telnyx/beta/answer", data={}) as r:
            text = await r.text()
            assert r.status == 200 and "wss://agents.example.test/telephony/telnyx/beta/ws" in text, text
        async with s.post(served.base + "/telephony/twilio/alpha/event", data={"CallSid": "CA1"}) as r:
            assert r.status in (200, 204)


async def test_two_agents_each_hold_a_conversation_and_the_metrics_move(served: Served) -> None:
    from flowcat.bench import _agent_caller

    before = _metrics(served)
    for agent in ("alpha", "beta"):
        cfg = {"url": f"ws://127.0.0.1:{served.port}/telephony/twilio/{agent}/ws", "sessions": 1, "turns": 1,
               "answer_timeout": 15.0, "gap": 1.0}
        result = await _agent_caller.run(cfg)
        assert result["calls_failed"] == 0, result
        assert len(result["latencies_ms"]) == 1, result  # the agent answered the turn with audio
    active = [("flowcat_calls_active", (("agent", a), ("transport", "twilio"))) for a in ("alpha", "beta")]
    for _ in range(100):  # the callers hung up: the server ends the calls
        after = _metrics(served)
        if all(after[k] == 0.0 for k in active):
            break
        await asyncio.sleep(0.05)
    for agent in ("alpha", "beta"):
        key = ("flowcat_calls_total", (("agent", agent), ("transport", "twilio")))
        assert after[key] - before.get(key, 0.0) == 1.0, after
        total = ("flowcat_turn_stage_seconds_count", (("agent", agent), ("stage", "total")))
        assert after[total] - before.get(total, 0.0) >= 1.0
        assert after[("flowcat_calls_active", (("agent", agent), ("transport", "twilio")))] == 0.0
    assert after[("flowcat_event_loop_lag_seconds_count", ())] > 0
    # Every line logged inside a call carries its call id (JSON logs).
    lines = [json.loads(x) for x in served.stderr().splitlines() if x.startswith("{")]
    in_calls = [x for x in lines if x["logger"] == "flowcat.latency"]
    assert in_calls and all(len(x.get("call_id", "")) == 12 for x in in_calls), in_calls
    assert len({x["call_id"] for x in in_calls}) == 2


# --- security -------------------------------------------------------------------------------


async def test_the_api_token_is_required_and_compared(served: Served) -> None:
    async with aiohttp.ClientSession() as s:
        for headers, query in (({}, ""), ({"Authorization": "Bearer wrong"}, ""), ({}, "?token=wrong")):
            async with s.get(served.base + "/api/agents" + query, headers=headers) as r:
                body = await r.text()
                assert r.status == 401 and "Access-Control-Allow-Origin" not in r.headers
                assert TOKEN not in body
        async with s.get(served.base + f"/api/agents?token={TOKEN}") as r:
            assert r.status == 200
        async with s.get(served.base + "/metrics") as r:
            assert r.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await s.ws_connect(served.base + "/ws")
        assert err.value.status == 401
        # Health probes and carrier routes (own signature checks) need no API token.
        async with s.get(served.base + "/healthz") as r:
            assert r.status == 200


async def test_an_oversized_body_is_413(served: Served) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(served.base + "/telephony/twilio/alpha/answer", data=b"x" * 10000) as r:
            assert r.status == 413
        async with s.post(served.base + "/api/agents", data=b"x" * 10000, headers=AUTH) as r:
            assert r.status == 413


async def test_websocket_messages_over_the_limit_close_1009(served: Served) -> None:
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(served.base + "/telephony/twilio/alpha/ws")
        await ws.send_bytes(b"x" * 10000)
        msg = await asyncio.wait_for(ws.receive(), 10.0)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1009


async def test_new_calls_past_the_rate_are_429_with_retry_after(served: Served) -> None:
    async with aiohttp.ClientSession() as s:
        statuses = []
        for _ in range(4):
            try:
                ws = await s.ws_connect(served.base + "/protobuf/alpha/ws", headers=AUTH)
                statuses.append(101)
                await ws.close()
            except aiohttp.WSServerHandshakeError as exc:
                statuses.append(exc.status)
                if exc.status == 429:
                    assert exc.headers is not None and int(exc.headers["Retry-After"]) >= 1
        assert statuses[:2] == [101, 101] and 429 in statuses[2:], statuses


def test_no_secret_reaches_the_logs(served: Served) -> None:
    log = served.stderr()
    assert log
    for secret in (TOKEN, *KEYS.values()):
        assert secret not in log


def test_serving_off_loopback_needs_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLOWCAT_API_TOKEN"}
    r = subprocess.run([sys.executable, "-m", "flowcat.cli", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "needs an API token" in r.stderr and "FLOWCAT_API_TOKEN" in r.stderr


def test_bind_policy() -> None:
    from flowcat.server._security import bind_problem, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("")
    assert bind_problem("127.0.0.1", None, "T") is None
    assert bind_problem("0.0.0.0", "x", "T") is None
    assert "T" in (bind_problem("0.0.0.0", None, "T") or "")


# --- drain ----------------------------------------------------------------------------------


def test_sigterm_drains_then_says_goodbye_and_exits(tmp_path: Path, fakes: dict[str, Any]) -> None:
    served = _start(tmp_path, fakes, "--drain-timeout", "1")

    async def scenario() -> tuple[int, float]:
        sid = "MZdrain"
        media_after_term = 0
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(f"ws://127.0.0.1:{served.port}/telephony/twilio/alpha/ws")
            await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            await ws.send_str(json.dumps({"event": "start", "streamSid": sid, "start": {
                "streamSid": sid, "callSid": "CAdrain", "accountSid": "AC", "tracks": ["inbound"],
                "customParameters": {},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
            silence = base64.b64encode(b"\xff" * 160).decode()
            for _ in range(10):
                await ws.send_str(json.dumps({"event": "media", "streamSid": sid, "media": {"payload": silence}}))
                await asyncio.sleep(0.02)
            served.proc.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            status, body = 0, b""
            for _ in range(100):
                status, body = await asyncio.to_thread(_get, served.base + "/readyz")
                if status == 503:
                    break
                await asyncio.sleep(0.02)
            assert status == 503 and "draining" in json.loads(body)["reasons"]
            async for msg in ws:  # the goodbye is spoken (TTS audio as media), then the socket closes
                if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data).get("event") == "media":
                    media_after_term += 1
            return media_after_term, time.monotonic() - t0

    try:
        media, elapsed = asyncio.run(scenario())
        assert media > 0, "no goodbye audio"
        assert elapsed < 10
        assert served.proc.wait(timeout=20) == 0
        assert "ending 1 calls with a goodbye" in served.stderr()
    finally:
        kill_group(served.proc)
