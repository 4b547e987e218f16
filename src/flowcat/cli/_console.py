"""``flowcat console CONFIG``: talk to an agent of a configuration from a terminal.

* ``--text`` (the default without an audio device): each line on stdin is a user turn (no
  VAD or STT); the agent's replies are printed, and synthesized into ``--out`` when the
  agent's TTS can be built (else text only, and why);
* ``--wav caller.wav``: a recorded caller through the whole pipeline (VAD → STT → turn →
  brain → TTS), as fast as it goes or at real time (``--realtime``); prints the transcript
  and each turn's latency breakdown, writes the agent's audio to ``--out``;
* ``--mic``: microphone and speaker (the ``console`` extra: ``sounddevice``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import wave
from typing import Any

__all__ = ["main", "register"]

DEFAULT_OUT = "console-reply.wav"
TTS_PREFIX = "topology.tts"


def register(sub: Any) -> None:
    p = sub.add_parser("console", help="talk to an agent of a configuration file from the terminal")
    p.add_argument("config", help="the configuration file (YAML or JSON)")
    p.add_argument("--agent", help="which agent (default: the only one, else the first)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--text", action="store_true", help="typed turns on stdin, replies printed")
    mode.add_argument("--wav", metavar="CALLER_WAV", help="play a recorded caller (PCM16 mono WAV)")
    mode.add_argument("--mic", action="store_true", help="microphone and speaker (needs flowcat[console])")
    p.add_argument("--out", default=None, help=f"write the agent's audio here (default {DEFAULT_OUT})")
    p.add_argument("--realtime", action="store_true", help="--wav: play the caller at real time")
    p.set_defaults(func=main)


def _say(line: str) -> None:
    print(line, flush=True)


def _reply(text: str) -> None:
    if text:
        _say(f"agent: {text}")
    else:
        _note("(the agent's reply was empty: see the log above)")


def _note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _write_wav(path: str, pcm: bytes, rate: int | None) -> None:
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate or 24000)
        w.writeframes(pcm)


def _latency_line(d: Any) -> str:
    parts = []
    for name in ("stt", "turn", "llm", "tts", "output", "total"):
        v = getattr(d, f"{name}_secs", None)
        parts.append(f"{name} {v * 1000:.0f} ms" if v is not None else f"{name} -")
    return f"latency turn {d.turn}: " + ", ".join(parts)


def _has_sounddevice() -> bool:
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def _has_audio_device() -> bool:
    """sounddevice is installed and finds a default microphone and speaker."""
    if not _has_sounddevice():
        return False
    import sounddevice as sd

    try:
        sd.query_devices(kind="input")
        sd.query_devices(kind="output")
    except Exception:  # noqa: BLE001 - PortAudio's errors vary by platform
        return False
    return True


def main(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..errors import ConfigError

    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        _note(str(exc))
        return 1
    agents = list(loaded.config.agents)
    name = args.agent or agents[0]
    if name not in loaded.config.agents:
        _note(f"{loaded.file}: no agent {name!r}; agents: {', '.join(agents)}")
        return 1
    mic = args.mic or (not args.text and not args.wav and _has_audio_device())
    if mic and not _has_sounddevice():
        _note("flowcat console --mic needs the sounddevice package: pip install 'flowcat[console]'")
        return 2
    run = _wav if args.wav else _mic if mic else _text
    try:
        return asyncio.run(_closing(run(loaded, name, args)))
    except ConfigError as exc:
        _note(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


async def _closing(session: Any) -> int:
    """Run a console session, then close the loop's shared HTTP session."""
    from ..services import close_http_sessions

    try:
        return int(await session)
    finally:
        await close_http_sessions()


def _generous(agent: Any) -> None:
    """A console brain may take its time (the first intent match loads a model)."""
    if hasattr(agent.brain, "first_action_timeout_secs"):
        agent.brain.first_action_timeout_secs = max(agent.brain.first_action_timeout_secs, 60.0)


async def _text(loaded: Any, name: str, args: argparse.Namespace) -> int:
    from ..agent import BrainProcessor
    from ..config import agent_pipeline, check_agent
    from ..errors import FlowcatError
    from ..server._console import ConsoleCall, ConsoleEvents

    tts_problems = [p for p in check_agent(loaded, name) if p.path.startswith(f"agents.{name}.{TTS_PREFIX}")]
    agent = None
    if not tts_problems:
        try:
            agent = agent_pipeline(loaded, name, text_input=True)()
        except (FlowcatError, TypeError, ValueError) as exc:
            tts_problems = [exc]  # type: ignore[list-item]
    if agent is None:
        _note("(text only, no audio: the agent's TTS cannot be built: "
              + "; ".join(getattr(p, "message", str(p)) for p in tts_problems) + ")")
        agent = agent_pipeline(loaded, name, text_input=True, tts=False)()
    _generous(agent)
    if agent.brain is not None and hasattr(agent.brain, "silence_timeout_secs"):
        agent.brain.silence_timeout_secs = None  # typing takes time: no "are you still there?"
    call = ConsoleCall(agent, text_input=True, events=ConsoleEvents(on_reply=_reply))
    await call.start()
    if isinstance(agent.brain, BrainProcessor) and not call.replies:
        await call.next_reply(60.0)  # the greeting (unless it came while the call started)
    loop = asyncio.get_running_loop()
    interactive = sys.stdin.isatty()
    while not call.ended:
        if interactive:
            print("you> ", end="", flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        text = line.strip()
        if text and not call.ended:
            if await call.say(text) is None and not call.ended:
                _note("(no reply)")
    ended_by_agent = call.ended
    await call.end()
    disposition = getattr(agent.brain, "disposition", None) or getattr(agent.brain, "transferred_to", None)
    if ended_by_agent:
        _note(f"(the agent ended the call{': ' + disposition if disposition else ''})")
    pcm, rate = call.audio()
    if len(agent.processors) and agent.processors[-1] is not agent.brain:
        out = args.out or DEFAULT_OUT
        _write_wav(out, pcm, rate)
        _note(f"(agent audio: {out}, {len(pcm) / 2 / (rate or 24000):.1f} s)")
    return 0


def _read_wav(path: str) -> tuple[bytes, int]:
    from ..errors import ConfigError

    try:
        with wave.open(path, "rb") as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise ConfigError(f"{path}: a PCM16 mono WAV is needed "
                                  f"({w.getnchannels()} channels, {8 * w.getsampwidth()}-bit)")
            return w.readframes(w.getnframes()), w.getframerate()
    except (OSError, wave.Error, EOFError) as exc:
        raise ConfigError(f"{path}: cannot read the WAV: {exc}") from exc


async def _wav(loaded: Any, name: str, args: argparse.Namespace) -> int:
    from ..config import agent_pipeline
    from ..server._console import ConsoleCall, ConsoleEvents

    pcm, rate = _read_wav(args.wav)
    agent = agent_pipeline(loaded, name)()
    _generous(agent)
    events = ConsoleEvents(on_user=lambda t: _say(f"user: {t}"), on_reply=_reply,
                           on_latency=lambda d: _say(_latency_line(d)))
    call = ConsoleCall(agent, text_input=False, events=events, sample_rate=rate)
    await call.start()
    await call.play(pcm, realtime=args.realtime)
    await call.end()
    out_pcm, out_rate = call.audio()
    out = args.out or DEFAULT_OUT
    _write_wav(out, out_pcm, out_rate)
    _note(f"(agent audio: {out}, {len(out_pcm) / 2 / (out_rate or 24000):.1f} s)")
    return 0


async def _mic(loaded: Any, name: str, args: argparse.Namespace) -> int:  # pragma: no cover - needs a device
    import sounddevice as sd

    from ..config import agent_pipeline
    from ..frames import InputAudioRawFrame
    from ..server._console import ConsoleCall, ConsoleEvents

    rate = 16000
    loop = asyncio.get_running_loop()
    speaker: dict[str, Any] = {}

    def play(pcm: bytes, sr: int) -> None:
        stream = speaker.get("stream")
        if stream is None:
            stream = speaker["stream"] = sd.RawOutputStream(samplerate=sr, channels=1, dtype="int16")
            stream.start()
        loop.run_in_executor(None, stream.write, pcm)

    agent = agent_pipeline(loaded, name)()
    events = ConsoleEvents(on_user=lambda t: _say(f"user: {t}"), on_reply=_reply,
                           on_latency=lambda d: _say(_latency_line(d)), on_audio=play)
    call = ConsoleCall(agent, text_input=False, events=events, sample_rate=rate)
    await call.start()
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def heard(data: Any, _frames: int, _time: Any, _status: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, bytes(data))

    _note("(listening: speak; Ctrl-C ends the call)")
    with sd.RawInputStream(samplerate=rate, channels=1, dtype="int16", blocksize=rate // 50, callback=heard):
        try:
            while not call.ended:
                chunk = await queue.get()
                await call.task.queue_frame(InputAudioRawFrame(audio=chunk, sample_rate=rate, num_channels=1))
        except (KeyboardInterrupt, asyncio.CancelledError):
            pass
    await call.end()
    if args.out:
        pcm, sr = call.audio()
        _write_wav(args.out, pcm, sr)
    return 0
