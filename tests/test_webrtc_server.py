"""The playground's routes: the page, /api/agents, /api/offer (and its refusals), /api/events.

A call is driven by a plain aiortc peer on 127.0.0.1 against ``create_app`` with an app
whose processors emit the frames the events are made of, so the event stream can be
checked exactly.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from _helpers import require

require("aiortc")

from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402

from flowcat import FrameDirection, FrameProcessor  # noqa: E402
from flowcat.frames import (  # noqa: E402
    Frame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    StartFrame,
    TranscriptionFrame,
)
from flowcat.server import CallInfo, ServerConfig, create_app  # noqa: E402
from flowcat.server._webrtc_events import CallEvents, EventsObserver  # noqa: E402
from flowcat.server._webrtc_routes import MAX_OFFER_BYTES, WEBRTC_KEY  # noqa: E402
from flowcat.transports._webrtc import set_ice_host_addresses  # noqa: E402

DOWN = FrameDirection.DOWNSTREAM


@pytest.fixture(autouse=True)
def loopback_ice() -> Any:
    set_ice_host_addresses(["127.0.0.1"])
    yield
    set_ice_host_addresses(None)


class Scripted(FrameProcessor):
    """On the first caller audio: an interim and a final transcript, a function call, a reply."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[CallInfo] = []
        self._done = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame) and not self._done:
            self._done = True
            for f in (
                InterimTranscriptionFrame(text="what is", user_id="", timestamp=""),
                TranscriptionFrame(text="what is the weather", user_id="", timestamp=""),
                LLMFullResponseStartFrame(),
                FunctionCallInProgressFrame(function_name="weather", tool_call_id="t1", arguments={"city": "Oslo"}),
                FunctionCallResultFrame(function_name="weather", tool_call_id="t1", arguments={}, result={"sky": "clear"}),
                LLMTextFrame(text="It is "),
                LLMTextFrame(text="clear."),
                LLMFullResponseEndFrame(),
            ):
                await self.push_frame(f, DOWN)


@pytest.fixture
async def server() -> Any:
    infos: list[CallInfo] = []

    def app_factory(call: CallInfo) -> list[FrameProcessor]:
        infos.append(call)
        return [Scripted()]

    app = create_app(ServerConfig(app=app_factory, capacity=2))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as http:
        yield f"http://127.0.0.1:{port}", http, app, infos
    await runner.cleanup()


async def _offer_sdp() -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def test_page_and_agents(server: Any) -> None:
    base, http, _app, _ = server
    async with http.get(base + "/") as r:
        assert r.status == 200
        assert r.content_type == "text/html"
        html = await r.text()
    assert '<script src="/playground/app.js">' in html
    assert "http" not in html.replace("http-equiv", "")  # nothing from another origin
    for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css")):
        async with http.get(f"{base}/playground/{name}") as r:
            assert r.status == 200 and r.content_type == ctype
    for bad in ("../_app.py", "nope.js", ".hidden.css", "__init__.py"):
        async with http.get(f"{base}/playground/{bad}") as r:
            assert r.status == 404
    async with http.get(base + "/api/agents") as r:
        assert await r.json() == {"agents": ["default"], "default": "default"}


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"not json", 400, "not JSON"),
        (b"[]", 400, "expected"),
        (json.dumps({"type": "offer"}).encode(), 400, "expected"),
        (json.dumps({"sdp": "v=0", "type": "answer"}).encode(), 400, "type must be 'offer'"),
        (json.dumps({"sdp": "this is no sdp", "type": "offer"}).encode(), 400, "bad SDP"),
        (json.dumps({"sdp": "v=0\r\n", "type": "offer", "agent": "nobody"}).encode(), 404, "unknown agent"),
        (json.dumps({"sdp": "v=0\r\n", "type": "offer", "agent": 3}).encode(), 400, "agent must be"),
        (json.dumps({"sdp": "x" * (MAX_OFFER_BYTES + 1), "type": "offer"}).encode(), 413, "over"),
    ],
)
async def test_offer_refusals(server: Any, body: bytes, status: int, needle: str) -> None:
    base, http, app, _ = server
    async with http.post(base + "/api/offer", data=body, headers={"Content-Type": "application/json"}) as r:
        assert r.status == status
        payload = await r.json()
    assert needle in payload["error"]
    state = app[WEBRTC_KEY].state
    assert state.admission.snapshot()["active"] == 0  # nothing admitted stays
    assert app[WEBRTC_KEY].calls == {}


async def test_events_of_unknown_call_is_404(server: Any) -> None:
    base, http, _app, _ = server
    async with http.get(base + "/api/events/pc-nope") as r:
        assert r.status == 404


async def test_a_call_streams_its_events_and_ends(server: Any) -> None:
    base, http, app, infos = server
    pc, sdp = await _offer_sdp()
    # Caller audio: aiortc's default sender track for a transceiver without one is silence,
    # which still reaches the pipeline as InputAudioRawFrames.
    from aiortc.mediastreams import AudioStreamTrack

    pc.getTransceivers()[0].sender.replaceTrack(AudioStreamTrack())
    async with http.post(base + "/api/offer", json={"sdp": sdp, "type": "offer"}) as r:
        assert r.status == 200, await r.text()
        answer = await r.json()
    assert answer["type"] == "answer" and answer["pc_id"].startswith("pc-")
    assert "a=candidate" in answer["sdp"] and " 127.0.0.1 " in answer["sdp"]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    events: list[dict[str, Any]] = []
    async with http.ws_connect(f"{base}/api/events/{answer['pc_id']}") as ws:
        async def read_until(kind: str) -> None:
            async for msg in ws:
                ev = json.loads(msg.data)
                events.append(ev)
                if ev["type"] == kind:
                    return

        await asyncio.wait_for(read_until("bot-llm-stopped"), 15)
        await pc.close()
        await asyncio.wait_for(read_until("call-ended"), 15)
    kinds = [e["type"] for e in events]
    assert kinds == [
        "user-transcription",
        "user-transcription",
        "bot-llm-started",
        "function-call-start",
        "function-call-end",
        "bot-text",
        "bot-text",
        "bot-llm-stopped",
        "call-ended",
    ]
    assert events[0]["data"] == {"text": "what is", "final": False}
    assert events[1]["data"] == {"text": "what is the weather", "final": True}
    assert events[3]["data"] == {"name": "weather", "id": "t1", "arguments": {"city": "Oslo"}}
    assert events[4]["data"] == {"name": "weather", "id": "t1", "result": {"sky": "clear"}}
    assert "".join(e["data"]["text"] for e in events if e["type"] == "bot-text") == "It is clear."
    assert events[-1]["data"]["reason"] == "peer left"
    assert all(isinstance(e["ts"], float) for e in events)
    assert infos[0].carrier == "webrtc" and infos[0].call_id == answer["pc_id"] and infos[0].agent is None
    state = app[WEBRTC_KEY].state
    for _ in range(100):
        if state.admission.snapshot()["active"] == 0:
            break
        await asyncio.sleep(0.05)
    assert state.admission.snapshot()["active"] == 0
    assert state.finished_calls == 1
    # A page that connects after the end still gets the whole call.
    async with http.ws_connect(f"{base}/api/events/{answer['pc_id']}") as ws:
        late = [json.loads(m.data)["type"] async for m in ws]
    assert late == kinds


async def test_observer_reports_each_frame_once_and_speaking_on_change() -> None:
    from flowcat.frames import BotStartedSpeakingFrame, BotStoppedSpeakingFrame
    from flowcat.runtime import FramePushed

    events = CallEvents()
    obs = EventsObserver(events)
    a, b, c = FrameProcessor(), FrameProcessor(), FrameProcessor()
    text = TranscriptionFrame(text="hi", user_id="", timestamp="")
    for frame in (text, text, BotStartedSpeakingFrame(), BotStartedSpeakingFrame(), BotStoppedSpeakingFrame()):
        for src, dst in ((a, b), (b, c)):
            await obs.on_push_frame(FramePushed(src, dst, frame, DOWN, 0))
    # The LLM pushes a function call's frames both ways, each direction a frame of its own.
    for _ in range(2):
        start = FunctionCallInProgressFrame(function_name="f", tool_call_id="c1", arguments={})
        await obs.on_push_frame(FramePushed(a, b, start, DOWN, 0))
    for _ in range(2):
        end = FunctionCallResultFrame(function_name="f", tool_call_id="c1", arguments={}, result=1)
        await obs.on_push_frame(FramePushed(a, b, end, DOWN, 0))
    assert [e["type"] for e in events.buffered] == [
        "user-transcription",
        "bot-started-speaking",
        "bot-stopped-speaking",
        "function-call-start",
        "function-call-end",
    ]
    assert StartFrame not in obs.frame_types and InputAudioRawFrame not in obs.frame_types


def test_ci_installs_the_browser_the_playground_test_needs() -> None:
    from pathlib import Path

    script = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    # .ci/run collects the Debian packages a fresh machine lacks in `_apt`, then installs them in one step.
    wanted = " ".join(line.split("_apt+=(", 1)[1] for line in script.splitlines() if "_apt+=(" in line)
    assert {"chromium", "chromium-driver"} <= set(wanted.replace(")", " ").split())
    assert 'apt-get install -y -qq "${_apt[@]}"' in script


async def test_offer_while_draining_is_503(server: Any) -> None:
    base, http, app, _ = server
    app[WEBRTC_KEY].state.admission.draining = True
    pc, sdp = await _offer_sdp()
    async with http.post(base + "/api/offer", json={"sdp": sdp, "type": "offer"}) as r:
        assert r.status == 503
        assert r.headers["Retry-After"] == "1"
        assert (await r.json())["error"] == "draining"
    await pc.close()
    assert app[WEBRTC_KEY].calls == {}


async def test_a_peer_that_never_connects_is_closed(server: Any, monkeypatch: Any) -> None:
    from flowcat.server import _webrtc_routes

    monkeypatch.setattr(_webrtc_routes, "_CONNECT_TIMEOUT", 0.5)
    base, http, app, _ = server
    pc, sdp = await _offer_sdp()
    async with http.post(base + "/api/offer", json={"sdp": sdp, "type": "offer"}) as r:
        answer = await r.json()
    await pc.close()  # the answer is never applied: no ICE, no DTLS
    call = app[WEBRTC_KEY].calls[answer["pc_id"]]
    assert call.task is not None
    await asyncio.wait_for(asyncio.shield(call.task), 10)
    assert call.events.buffered[-1]["type"] == "call-ended"
    assert app[WEBRTC_KEY].state.admission.snapshot()["active"] == 0


async def test_a_configured_agent_counts_its_webrtc_calls_and_its_capacity() -> None:
    """A playground call to a configuration's agent takes a slot of that agent (its capacity applies)
    and is tracked under its name and the webrtc transport, as a carrier call would be."""
    from flowcat.server._admission import Admission
    from flowcat.server._agents import Agent, Agents

    def app_factory(call: CallInfo) -> list[FrameProcessor]:
        return [Scripted()]

    clinic = Agent(name="clinic", app=app_factory, transports=frozenset({"webrtc"}), admission=Admission(capacity=1))
    app = create_app(ServerConfig(app=app_factory, capacity=5, agents=Agents([clinic])))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    pcs = []
    try:
        async with aiohttp.ClientSession() as http:
            pc, sdp = await _offer_sdp()
            pcs.append(pc)
            async with http.post(base + "/api/offer", json={"sdp": sdp, "type": "offer", "agent": "clinic"}) as r:
                assert r.status == 200, await r.text()
            assert clinic.admission.active == 1
            pc2, sdp2 = await _offer_sdp()
            pcs.append(pc2)
            async with http.post(base + "/api/offer", json={"sdp": sdp2, "type": "offer", "agent": "clinic"}) as r:
                assert r.status == 503  # the agent's capacity (1), though the worker has room
                assert (await r.json())["agent"] == "clinic"
            state = app[WEBRTC_KEY].state
            assert state.admission.active == 1  # the refused offer gave its worker slot back
            records = list(state.records.values())
            assert [(rec.agent, rec.transport) for rec in records] == [("clinic", "webrtc")]
    finally:
        for pc in pcs:
            await pc.close()
        await runner.cleanup()
    assert clinic.admission.active == 0
