"""``flowcat console CONFIG``: the clinic graph agent and an LLM agent in text mode (exact replies
printed), a recorded caller through VAD → STT → LLM → TTS on the local fakes (transcript,
latency line, the reply's audio in a WAV), and ``--mic`` without sounddevice."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from _helpers import require
from flowcat.testing.fakes import FakeCartesia, FakeDeepgram, FakeOpenAI, serve

pytestmark = pytest.mark.usefixtures("no_outside_connections")

ROOT = Path(__file__).resolve().parent.parent
CLINIC = ROOT / "examples" / "agents" / "clinic_receptionist.yaml"
SPEECH = ROOT / "tests" / "fixtures" / "speech"
GREETING = "Hello, thanks for calling Riverside Clinic. May I have your name, please?"
TIMEOUT = 240.0


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(extra)
    return env


async def _console(*args: str, stdin: str = "", env: dict[str, str] | None = None,
                   cwd: Path | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flowcat.cli", "console", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env or _env(), cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_clinic_graph_in_text_mode_prints_the_exact_replies(tmp_path: Path) -> None:
    lines = "Ana\n\non Friday\nyes\n"  # name, (a blank line is no turn), day, confirm → goodbye
    started = time.monotonic()
    rc, out, err = await _console(str(CLINIC), "--text", "--out", str(tmp_path / "r.wav"), stdin=lines)
    assert rc == 0, err
    # A greeting that came while the call started is not awaited again (that wait took its whole 60 s).
    assert time.monotonic() - started < 30.0
    assert out.splitlines() == [
        f"agent: {GREETING}",
        "agent: Thanks, Ana. Which day would you like to come in?",
        "agent: So that's Ana on Friday. Shall I book it?",
        "agent: You're booked for Friday, Ana. Goodbye!",
    ]
    # No Cartesia key: text only, and why; the agent's EndCall ends the call.
    assert "text only, no audio" in err and "CARTESIA_API_KEY" in err
    assert "(the agent ended the call: appointment_booked)" in err
    assert not (tmp_path / "r.wav").exists()


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeDeepgram, FakeOpenAI, FakeCartesia, str]]:
    stt = FakeDeepgram(["I would like to book an appointment"])
    llm = FakeOpenAI(["Sure. Which day suits you?", "Friday it is. Goodbye!"])
    tts = FakeCartesia()
    runner, url = await serve([stt, llm, tts])
    try:
        yield stt, llm, tts, url
    finally:
        await runner.cleanup()


def _llm_agent(tmp_path: Path, url: str) -> Path:
    ws = url.replace("http://", "ws://", 1)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"""\
agents:
  helper:
    brain: {{kind: llm, system_prompt: Be brief.}}
    topology:
      stt: {{provider: deepgram, options: {{base_url: "{ws}"}}}}
      llm: {{provider: openai, model: gpt-4.1, options: {{base_url: "{url}/v1"}}}}
      tts: {{provider: cartesia, voice: v1, options: {{base_url: "{ws}"}}}}
""")
    return cfg


KEYS = {"DEEPGRAM_API_KEY": "fake-key", "OPENAI_API_KEY": "fake-key", "CARTESIA_API_KEY": "fake-key"}


async def test_llm_agent_in_text_mode_speaks_into_the_wav(
    tmp_path: Path, fakes: tuple[FakeDeepgram, FakeOpenAI, FakeCartesia, str]
) -> None:
    _, llm, tts, url = fakes
    out_wav = tmp_path / "reply.wav"
    rc, out, err = await _console(str(_llm_agent(tmp_path, url)), "--text", "--out", str(out_wav),
                                  stdin="I need an appointment\nFriday\n", env=_env(**KEYS))
    assert rc == 0, err
    assert out.splitlines() == ["agent: Sure. Which day suits you?", "agent: Friday it is. Goodbye!"]
    # The LLM saw the typed turns in its context, in order.
    last = llm.received[-1].body["messages"]
    assert [m["content"] for m in last if m["role"] == "user"] == ["I need an appointment", "Friday"]
    with wave.open(str(out_wav)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        assert w.getnframes() > w.getframerate() * 0.2  # both replies synthesized
    assert "agent audio" in err
    assert "Unclosed" not in err  # the shared HTTP session is closed at the end


async def test_wav_mode_runs_the_caller_through_the_whole_pipeline(
    tmp_path: Path, fakes: tuple[FakeDeepgram, FakeOpenAI, FakeCartesia, str]
) -> None:
    require("onnxruntime")
    _, llm, _, url = fakes
    out_wav = tmp_path / "reply.wav"
    rc, out, err = await _console(str(_llm_agent(tmp_path, url)), "--wav", str(SPEECH / "utterance_booking.wav"),
                                  "--out", str(out_wav), env=_env(**KEYS))
    assert rc == 0, err
    lines = out.splitlines()
    assert "user: I would like to book an appointment" in lines
    assert "agent: Sure. Which day suits you?" in lines
    assert lines.index("user: I would like to book an appointment") < lines.index("agent: Sure. Which day suits you?")
    latency = [ln for ln in lines if ln.startswith("latency turn 1: ")]
    assert len(latency) == 1 and "total " in latency[0] and "total -" not in latency[0], out
    with wave.open(str(out_wav)) as w:
        audio = w.readframes(w.getnframes())
    assert len(audio) > 0 and any(audio)  # the reply's audio, not silence
    assert "Unclosed" not in err
    assert llm.received and llm.received[0].body["messages"][-1]["content"] == "I would like to book an appointment"


async def test_mic_without_sounddevice_names_the_extra(tmp_path: Path) -> None:
    # A sounddevice that cannot be imported (shadowed on the path), whatever is installed.
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "sounddevice.py").write_text("raise ImportError('no sounddevice here')\n")
    env = _env(PYTHONPATH=os.pathsep.join([str(shadow), *filter(None, [os.environ.get("PYTHONPATH")])]))
    rc, out, err = await _console(str(CLINIC), "--mic", env=env)
    assert rc == 2
    assert "pip install 'flowcat[console]'" in err and "sounddevice" in err


async def test_an_unknown_agent_is_named_with_the_known_ones() -> None:
    rc, _, err = await _console(str(CLINIC), "--agent", "nurse", "--text")
    assert rc == 1 and "no agent 'nurse'; agents: clinic_receptionist" in err
