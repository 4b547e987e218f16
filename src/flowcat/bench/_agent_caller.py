"""Callers of ``flowcat bench agent``: N concurrent Twilio Media Streams calls holding a conversation.

``python -m flowcat.bench._agent_caller '<json config>'`` prints ``RESULT <json>`` on its last line.

Each call sends ``connected``/``start``, then 8 kHz μ-law ``media`` every 20 ms in real time
(absolute schedule): silence (0xFF) between turns, and per turn one of the committed speech
fixtures (``tests/fixtures/speech``, human-like speech the Silero VAD detects, 16 kHz averaged
down to 8 kHz). The end of the caller's speech is the send time of the packet holding the
fixture's last speech sample (``segments.json``). Per turn the call records the first bot
``media`` after that instant, how much bot audio came, and ``clear`` messages.

Barge-in turns (``barge_every``): 0.6 s after the reply's first audio the caller starts the
next utterance over the reply. Such a turn is answered when its reply started and a ``clear``
came after the barge-in speech began; any other turn is answered when its first audio came
within ``answer_timeout`` and at least ``complete_fraction`` of the expected reply audio
(``reply_audio_ms``) arrived before a gap of ``gap`` s.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
import wave
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import pcm16_to_ulaw
from ..errors import BenchError
from ._harness import install_uvloop

__all__ = ["Utterance", "load_utterances", "main"]

FRAME = 160  # 20 ms of 8 kHz μ-law
VAD_PHASES = 8  # 160-sample packets against 256-sample VAD windows: the alignment repeats every 8 packets
SILENCE = b"\xff" * FRAME
SPEECH_DIR = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "speech"
DEFAULT_UTTERANCES = ("utterance_weather.wav", "utterance_booking.wav")


@dataclass
class Utterance:
    """One fixture as 20 ms μ-law payloads, and where its speech ends (payload index)."""

    name: str
    payloads: list[bytes]
    end_index: int
    end_offset_s: float


def load_utterances(directory: Path = SPEECH_DIR, names: tuple[str, ...] = DEFAULT_UTTERANCES) -> list[Utterance]:
    """The fixtures as 8 kHz μ-law payloads (16 kHz ones averaged down by pairs)."""
    segments = json.loads((directory / "segments.json").read_text())
    out = []
    for name in names:
        with wave.open(str(directory / name), "rb") as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        if rate == 16000:
            pcm = pcm[: len(pcm) // 2 * 2].reshape(-1, 2).astype(np.int32).mean(axis=1).astype("<i2")
        elif rate != 8000:
            raise BenchError(f"{name}: {rate} Hz (8000 or 16000 expected)")
        mu = pcm16_to_ulaw(pcm.tobytes())
        mu += b"\xff" * (-len(mu) % FRAME)
        payloads = [mu[i : i + FRAME] for i in range(0, len(mu), FRAME)]
        end = float(segments[name]["segments"][-1][1])
        out.append(Utterance(name, payloads, min(len(payloads) - 1, int(end * 8000) // FRAME), end))
    return out


@dataclass
class Turn:
    barge: bool = False
    utt: int = 0  # index of the utterance spoken
    lead: int | None = None  # media packets the call had sent before the utterance's first one
    speech_end: float | None = None
    first_audio: float | None = None
    last_audio: float | None = None
    audio_ms: float = 0.0
    barge_start: float | None = None
    clear_after_barge: bool = False


@dataclass
class Call:
    cid: int
    turns: list[Turn] = field(default_factory=list)
    queue: deque[tuple[bytes, Any]] = field(default_factory=deque)  # (payload, on_sent callback)
    clears: list[float] = field(default_factory=list)
    error: str | None = None
    media_in: int = 0
    sent: int = 0  # media packets sent
    live: tuple[float, float] | None = None  # (stream started, stream stopped), loop time


async def _receiver(ws: Any, call: Call, now: Any) -> None:
    import aiohttp

    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            if msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                break
            continue
        t = now()
        data = json.loads(msg.data)
        ev = data.get("event")
        turn = call.turns[-1] if call.turns else None
        if ev == "media":
            call.media_in += 1
            if turn is None or turn.speech_end is None or t < turn.speech_end:
                continue
            b64 = data["media"]["payload"]
            n = len(b64) * 3 // 4 - b64.count("=", -2)  # decoded length, without decoding
            if turn.first_audio is None:
                turn.first_audio = t
            turn.last_audio = t
            turn.audio_ms += n / 8.0
        elif ev == "clear":
            call.clears.append(t)
            for tr in call.turns:
                if tr.barge and tr.barge_start is not None and t >= tr.barge_start:
                    tr.clear_after_barge = True


_B64: dict[bytes, str] = {}


def _b64(payload: bytes) -> str:
    """The payload in base64 (the callers send the same few hundred payloads over and over)."""
    text = _B64.get(payload)
    if text is None:
        text = _B64[payload] = base64.b64encode(payload).decode()
    return text


def media_message(sid: str, seq: int, payload: bytes) -> str:
    """The ``media`` message ``json.dumps`` would write for the dict Twilio documents, formatted directly."""
    return (f'{{"event": "media", "sequenceNumber": "{seq + 1}", "streamSid": "{sid}", "media": {{"track": "inbound", '
            f'"chunk": "{seq}", "timestamp": "{seq * 20}", "payload": "{_b64(payload)}"}}}}')


async def _sender(ws: Any, call: Call, stop: asyncio.Event, sid: str, now: Any) -> None:
    seq = 0
    t0 = now()
    queue = call.queue
    while not stop.is_set():
        due = t0 + seq * 0.02
        delay = due - now()
        if delay > 0:
            await asyncio.sleep(delay)
        payload, on_sent = queue.popleft() if queue else (SILENCE, None)
        seq += 1
        await ws.send_str(media_message(sid, seq, payload))
        call.sent = seq
        if on_sent is not None:
            on_sent(now())


async def _wait(pred: Any, timeout: float) -> bool:
    # Polls every 50 ms: only the conversation's pace depends on it, never a measurement
    # (the sender and the receiver take the timestamps), and 100 callers polling every
    # 10 ms cost the load generator more than their media did.
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        await asyncio.sleep(0.05)
    return bool(pred())


def _enqueue(call: Call, utt: Utterance, turn: Turn, speech_start: Any = None) -> None:
    def at_end(t: float) -> None:
        turn.speech_end = t

    def at_start(t: float) -> None:
        turn.lead = call.sent - 1

    first_voiced = max(1, int(0.5 * 8000) // FRAME)
    for i, p in enumerate(utt.payloads):
        cb = at_end if i == utt.end_index else (speech_start if i == first_voiced else at_start if i == 0 else None)
        call.queue.append((p, cb))


async def _converse(call: Call, cfg: dict[str, Any], utts: list[Utterance], now: Any) -> None:
    turns = int(cfg["turns"])
    barge_every = int(cfg.get("barge_every", 0))
    gap = float(cfg.get("gap", 1.0))  # a loaded server may stall its output this long
    timeout = float(cfg.get("answer_timeout", 8.0))
    pending_barge: Turn | None = None
    for k in range(turns):
        turn = Turn(barge=bool(barge_every) and k % barge_every == barge_every - 1 and k < turns - 1,
                    utt=k % len(utts))
        if pending_barge is None:
            await asyncio.sleep(0.3 + 0.1 * (call.cid % 10))  # silence between turns, callers spread
        call.turns.append(turn)
        prev = pending_barge

        def began(t: float, prev: Turn | None = prev) -> None:
            if prev is not None:
                prev.barge_start = t

        _enqueue(call, utts[k % len(utts)], turn, began)
        pending_barge = None
        if not await _wait(lambda turn=turn: turn.speech_end is not None, 30.0):
            return
        if not await _wait(lambda turn=turn: turn.first_audio is not None, timeout):
            continue
        if turn.barge:
            await asyncio.sleep(0.6)
            pending_barge = turn
            continue

        def quiet(turn: Turn = turn) -> bool:
            return turn.last_audio is not None and now() - turn.last_audio > gap

        await _wait(quiet, timeout + 30.0)


async def _one_call(cid: int, cfg: dict[str, Any], utts: list[Utterance], calls: list[Call]) -> None:
    import aiohttp

    loop = asyncio.get_running_loop()
    now = loop.time
    call = Call(cid)
    calls.append(call)
    sid = f"MZbench{cid:06d}"
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(cfg["url"], max_msg_size=0) as ws:
            await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            start = {"event": "start", "sequenceNumber": "1", "streamSid": sid,
                     "start": {"accountSid": "ACbench", "streamSid": sid, "callSid": f"CAbench{cid:06d}",
                               "tracks": ["inbound"], "customParameters": {},
                               "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
            await ws.send_str(json.dumps(start))
            began = now()
            stop = asyncio.Event()
            recv = asyncio.create_task(_receiver(ws, call, now))
            send = asyncio.create_task(_sender(ws, call, stop, sid, now))
            try:
                await _converse(call, cfg, utts, now)
            finally:
                stop.set()
                await asyncio.wait((send,), timeout=1.0)
                await ws.send_str(json.dumps({"event": "stop", "streamSid": sid, "stop": {}}))
                call.live = (began, now())
                await ws.close()
                await asyncio.wait((recv,), timeout=2.0)
                for t in (send, recv):
                    t.cancel()
    except Exception as exc:  # one failed call is reported, the others go on
        call.error = f"{type(exc).__name__}: {exc}"


def summarize(calls: list[Call], cfg: dict[str, Any], t0: float = 0.0) -> dict[str, Any]:
    """Per-turn latencies (ms from end of speech to first bot audio) and answered counts; per
    answered turn also its index in the call and when its speech ended (s after ``t0``)."""
    expected = float(cfg.get("reply_audio_ms", 0.0)) * float(cfg.get("complete_fraction", 0.85))
    latencies: list[float] = []
    utts: list[int] = []
    phases: list[int] = []
    indices: list[int] = []
    ends: list[float] = []
    ok = total = barge_ok = barge_total = 0
    for c in calls:
        for k, t in enumerate(c.turns):
            total += 1
            answered = t.first_audio is not None and t.speech_end is not None
            if answered:
                latencies.append(1000.0 * (t.first_audio - t.speech_end))  # type: ignore[operator]
                utts.append(t.utt)
                phases.append((t.lead or 0) % VAD_PHASES)
                indices.append(k)
                ends.append(round(t.speech_end - t0, 3))  # type: ignore[operator]
            if t.barge:
                barge_total += 1
                good = answered and t.clear_after_barge
                barge_ok += good
            else:
                good = answered and t.audio_ms >= expected
            ok += good
        total += max(0, int(cfg["turns"]) - len(c.turns))
    spans = [c.live for c in calls if c.live is not None]
    return {
        "session_seconds": round(sum(b - a for a, b in spans), 3),
        "peak_live": peak_live(spans),
        "latencies_ms": [round(x, 1) for x in latencies],
        "latency_utterances": utts,
        "latency_phases": phases,
        "latency_turns": indices,
        "latency_at_s": ends,
        "turns": int(cfg["turns"]) * len(calls),
        "turns_ok": ok,
        "barge_ins": barge_total,
        "barge_ins_ok": barge_ok,
        "calls_failed": sum(1 for c in calls if c.error),
        "errors": sorted({c.error for c in calls if c.error})[:3],
        "audio_ms": [round(t.audio_ms) for c in calls for t in c.turns],
    }


def peak_live(spans: list[tuple[float, float]]) -> int:
    """The most calls whose media streams were live at once."""
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    live = peak = 0
    for _, step in edges:
        live += step
        peak = max(peak, live)
    return peak


async def _lag_probe(lags: list[float]) -> None:
    """How late a 10 ms sleep of the callers' loop wakes (ms): a late caller loop stamps bot audio late."""
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        await asyncio.sleep(0.01)
        lags.append(1000.0 * (loop.time() - t - 0.01))


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    """All calls, started 100 ms apart, to completion."""
    utts = load_utterances()
    t0 = asyncio.get_running_loop().time()
    lags: list[float] = []
    probe = asyncio.create_task(_lag_probe(lags))
    calls: list[Call] = []
    tasks = []
    for i in range(int(cfg["sessions"])):
        tasks.append(asyncio.create_task(_one_call(i, cfg, utts, calls)))
        await asyncio.sleep(0.1)
    print("ALL_CONNECTED", flush=True)
    await asyncio.gather(*tasks)
    probe.cancel()
    out = summarize(calls, cfg, t0)
    lags.sort()
    if lags:
        out["caller_lag_ms"] = {q: round(lags[min(len(lags) - 1, int(p * len(lags)))], 1)
                                for q, p in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))}
    return out


def main(argv: list[str] | None = None) -> int:
    cfg = json.loads((argv or sys.argv[1:])[0])
    install_uvloop()  # the callers share a core with the fakes: the cheaper loop (the same for every system)
    result = asyncio.run(run(cfg))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
