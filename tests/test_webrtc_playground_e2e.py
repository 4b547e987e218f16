"""The playground in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium) talks WebRTC to ``flowcat serve``'s app on 127.0.0.1.

The browser's microphone is a fake fed from a speech WAV (the weather question, with
silence around it). The server runs the cascaded agent of ``flowcat bench agent`` on the
local fakes: Silero VAD → Deepgram STT → user aggregator → OpenAI LLM → Cartesia TTS,
every provider on ``flowcat.testing.fakes`` (the STT fake answers the scripted
transcript once it heard speech followed by silence; the TTS fake speaks text as tones).

Checked in the page: it connects, the question appears as a final transcript, the agent's
answer is shown and its audio arrives (an AnalyserNode on the remote stream: loud for as
long as the tones last), the turn's latency row is in the table. A screenshot is saved to
``$FLOWCAT_ARTIFACTS`` (else the test's tmp dir) and its path printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import wave
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from _helpers import missing, require

require("aiortc")
require("onnxruntime")
webdriver = require("selenium.webdriver")

from flowcat.audio import StreamResampler  # noqa: E402
from flowcat.bench import _agent_app  # noqa: E402
from flowcat.server import ServerConfig, create_app  # noqa: E402
from flowcat.server._webrtc_routes import WEBRTC_KEY  # noqa: E402
from flowcat.services._http import close_http_sessions  # noqa: E402
from flowcat.testing.fakes import serve  # noqa: E402
from flowcat.testing.fakes.__main__ import build_fakes, parser  # noqa: E402
from flowcat.transports._webrtc import set_ice_host_addresses  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FIXTURES = Path(__file__).parent / "fixtures" / "speech"
QUESTION = "what is the weather like today"
ANSWER = "It is sunny and warm today. Anything else?"

if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    missing("Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")

# Flags from the research note (test-peers.md §4): loopback ICE needs the first two.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--window-size=1100,900",
]


def _fake_mic_wav(path: Path) -> Path:
    """The weather question at 48 kHz mono, 2 s of silence before (the call connects) and 8 s after."""
    with wave.open(str(FIXTURES / "utterance_weather.wav")) as w:
        rate = w.getframerate()
        pcm = w.readframes(w.getnframes())
    up = StreamResampler(rate, 48000, 1).resample(pcm)
    audio = bytes(2 * 48000 * 2) + up + bytes(8 * 48000 * 2)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(audio)
    return path


def _artifacts(tmp_path: Path) -> Path:
    root = os.environ.get("FLOWCAT_ARTIFACTS")
    out = Path(root) / "webrtc-playground" if root else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    return out


def _browser(wav: Path, profile: Path) -> Any:
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={wav}", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def _agent_with_weather(call: Any) -> Any:
    """``flowcat bench agent``'s agent with one function, ``get_weather``."""
    from flowcat.services import FunctionCallParams
    from flowcat.services.llm.openai import OpenAILLMService

    procs = _agent_app.agent_app(call)
    llm = next(p for p in procs if isinstance(p, OpenAILLMService))

    async def get_weather(params: FunctionCallParams) -> None:
        await params.result_callback({"sky": "sunny", "celsius": 24})

    llm.register_function("get_weather", get_weather)
    return procs


async def _until(what: str, check: Any, timeout: float) -> Any:
    """Poll ``check`` (run in a thread: Selenium blocks) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(check)
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@pytest.mark.timeout(120)
async def test_playground_call_in_headless_chromium(tmp_path: Path, monkeypatch: Any) -> None:
    # The LLM first calls get_weather (run by the agent), then answers (the fake picks the reply by
    # how many assistant messages the request holds).
    script = tmp_path / "llm.json"
    script.write_text(json.dumps([{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}, ANSWER]))
    fakes = build_fakes(parser().parse_args(["--stt-utterance", QUESTION, "--llm-script", str(script)]))
    fakes_runner, fakes_url = await serve(fakes, "127.0.0.1", 0)
    ws_url = fakes_url.replace("http://", "ws://", 1)
    monkeypatch.setattr(
        _agent_app, "_urls", {"deepgram_url": ws_url, "openai_base_url": f"{fakes_url}/v1"}
    )
    app = create_app(ServerConfig(app=_agent_with_weather, capacity=4))
    app[WEBRTC_KEY].host_ips = ["127.0.0.1"]
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    artifacts = _artifacts(tmp_path)
    driver = await asyncio.to_thread(_browser, _fake_mic_wav(tmp_path / "mic.wav"), tmp_path / "profile")
    state = app[WEBRTC_KEY]
    try:
        t0 = time.monotonic()
        await asyncio.to_thread(driver.get, base + "/")
        await _until(
            "the agent list",
            lambda: driver.execute_script("return document.getElementById('agent').options.length"),
            10,
        )
        await asyncio.to_thread(lambda: driver.find_element("id", "connect").click())
        await _until("the connection", lambda: driver.execute_script("return playground.state") == "connected", 20)
        connected = time.monotonic() - t0
        final = await _until(
            "the final transcript",
            lambda: driver.execute_script(
                "const e = document.querySelector('#transcript li.user.final .text'); return e && e.textContent"
            ),
            30,
        )
        assert final == QUESTION
        row = await _until(
            "the latency row",
            lambda: driver.execute_script(
                "const r = document.querySelector('#latency tbody tr.turn');"
                "return r && [...r.children].map(td => td.textContent)"
            ),
            30,
        )
        # The answer's tones: 35 voiced characters of 20 ms (0.7 s) reach the browser's speaker.
        audio = await _until(
            "the answer's audio",
            lambda: (a := driver.execute_script("return playground.audio"))["loudMs"] >= 450 and a,
            20,
        )
        await _until(
            "the end of the answer",
            lambda: driver.execute_script("return playground.events.some(e => e.type === 'bot-stopped-speaking')"),
            10,
        )
        await asyncio.sleep(0.3)  # the browser's jitter buffer plays out
        audio = await asyncio.to_thread(driver.execute_script, "return playground.audio")
        bot = await asyncio.to_thread(
            driver.execute_script,
            "return [...document.querySelectorAll('#transcript li.bot .text')].map(e => e.textContent)",
        )
        received = await asyncio.to_thread(driver.execute_script, "return playground.events")
        events = [e["type"] for e in received]
        shot = artifacts / "webrtc-playground.png"
        await asyncio.to_thread(driver.save_screenshot, str(shot))
        print(f"\nplayground screenshot: {shot}")
        print(f"connected after {connected:.2f} s; latency row {row}; audio {audio}")
        (artifacts / "webrtc-playground-events.json").write_text(json.dumps(received, indent=1))

        assert bot == [ANSWER]
        functions = await asyncio.to_thread(
            driver.execute_script,
            "return [...document.querySelectorAll('#functions li .text')].map(e => e.textContent)",
        )
        assert functions == ['get_weather({"city":"Oslo"}) → {"sky":"sunny","celsius":24}']
        said = [(e["data"]["text"], e["data"]["final"]) for e in received if e["type"] == "user-transcription"]
        assert said[-1] == (QUESTION, True)
        assert said[0][1] is False and QUESTION.startswith(said[0][0])  # interims first (shown greyed)
        assert row[0] == "1"
        total = float(row[-1])
        assert 0 < total < 5000
        assert all(cell != "–" for cell in row[1:])  # every stage measured
        assert 0.1 < audio["peakRms"] < 0.5  # the tones' amplitude is 0.3 (RMS 0.21)
        assert 500 <= audio["loudMs"] <= 1100  # the answer's 0.7 s of tones, once (not a loop or noise)
        for kind in (
            "user-started-speaking", "user-stopped-speaking", "bot-started-speaking", "bot-stopped-speaking",
            "turn-latency", "function-call-start", "function-call-end",
        ):
            assert kind in events
        assert shot.stat().st_size > 10_000

        await asyncio.to_thread(lambda: driver.find_element("id", "disconnect").click())
        pc_id = await asyncio.to_thread(driver.execute_script, "return playground.pcId")
        call = state.calls[pc_id]
        assert call.task is not None
        await asyncio.wait_for(asyncio.shield(call.task), 15)
        assert call.events.buffered[-1]["type"] == "call-ended"
        assert state.state.admission.snapshot()["active"] == 0
    finally:
        await asyncio.to_thread(driver.quit)
        await runner.cleanup()
        await fakes_runner.cleanup()
        await close_http_sessions()  # the services' shared client session of this loop
        set_ice_host_addresses(None)
