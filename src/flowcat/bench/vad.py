"""VAD cost: Silero batched across calls vs one InferenceSession per call (pipecat's model).

``flowcat bench vad [--json] [--calls 100] [--seconds 2] [--quick]``

Every call streams real speech (the committed espeak fixtures, each call at its own
offset) as 20 ms PCM16 frames at 16 kHz, one frame per call per event-loop tick.

* **batched** — flowcat: one process-wide ``InferenceSession``, each call a
  :class:`~flowcat.audio.vad.SileroVADAnalyzer` fed with ``feed()``; the loop's
  :class:`~flowcat.audio.vad.SileroBatcher` runs one ONNX call per tick for all calls.
* **per_call** — pipecat's model: each call builds its own ``InferenceSession`` and a
  one-thread executor, and every 20 ms frame goes through ``run_in_executor``
  (pipecat 1.14 ``VADAnalyzer.analyze_audio``). Same model file, same analyzer code.
* **per_call_inline** — own session per call, scored on the loop (no thread): shows
  how much of the gap is the thread hop and how much batching.

CPU is ``time.process_time`` (all threads) over the timed section, after a warm-up
second; results are µs of CPU per call per second of audio. ``batched_speedup`` =
per_call ÷ batched. Also: smart-turn v3 per end-of-turn check (if ``flowcat.turns``
provides it), codec and resampler cost per 20 ms frame, calls per core for VAD alone.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import json
import os
import platform
import sys
import time
import wave
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

__all__ = ["add_arguments", "main", "run"]

RATE = 16000
FRAME_BYTES = RATE // 50 * 2
TARGET_SPEEDUP = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options."""
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--calls", type=int, default=None, help="concurrent calls (default 100, quick 10)")
    parser.add_argument(
        "--seconds", type=float, default=None, help="audio seconds timed (default 2, quick 1)"
    )
    parser.add_argument("--quick", action="store_true", help="few calls, short audio (CI smoke, < 10 s)")


def _fixture_audio() -> bytes:
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(here, "..", "..", "..", "tests", "fixtures", "speech", "two_utterances.wav")]
    for path in candidates:
        if os.path.exists(path):
            with wave.open(path) as w:
                return w.readframes(w.getnframes())
    # installed without the repository: a synthetic voiced signal (pitch-modulated harmonics)
    t = np.arange(RATE * 6) / RATE
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    x = sum(np.sin(2 * np.pi * np.cumsum(f0) / RATE * h) / h for h in range(1, 8))
    gate = (np.sin(2 * np.pi * 0.25 * t) > 0).astype(np.float64)
    return (x * gate * 4000).astype("<i2").tobytes()


def _call_streams(calls: int, seconds: float) -> list[bytes]:
    base = _fixture_audio()
    need = int(seconds * RATE) * 2
    while len(base) < need * 2:
        base += base
    streams = []
    for i in range(calls):
        off = (i * 7919 * 2) % (len(base) // 2) // FRAME_BYTES * FRAME_BYTES
        s = base[off:] + base[:off]
        streams.append(s[:need])
    return streams


def _cpu_timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    gc.disable()
    try:
        c0 = time.process_time()
        fn()
        return time.process_time() - c0
    finally:
        gc.enable()


# --------------------------------------------------------------- VAD runs


async def _timed(work: Awaitable[None]) -> tuple[float, float]:
    """CPU and wall seconds ``work`` takes, with the garbage collector off."""
    gc.collect()
    gc.disable()
    try:
        c0 = time.process_time()
        w0 = time.perf_counter()
        await work
        return time.process_time() - c0, time.perf_counter() - w0
    finally:
        gc.enable()


async def _run_batched(streams: list[bytes], warm: list[bytes]) -> dict[str, Any]:
    from ..audio.vad import SileroBatcher, SileroVADAnalyzer

    analyzers = [SileroVADAnalyzer(skip_quiet=False, sample_rate=RATE) for _ in streams]

    async def play(audio: list[bytes]) -> None:
        n = len(audio[0])
        for off in range(0, n, FRAME_BYTES):
            for a, s in zip(analyzers, audio, strict=True):
                a.feed(s[off : off + FRAME_BYTES])
            await asyncio.sleep(0)
        for a in analyzers:
            await a.drain()

    await play(warm)
    batcher = SileroBatcher.for_loop()
    b0, r0, t0 = batcher.stats.batches, batcher.stats.rows, batcher.stats.thread_batches
    cpu, wall = await _timed(play(streams))
    st = batcher.stats
    batches = st.batches - b0
    for a in analyzers:
        a.close()
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "batches": batches,
        "mean_batch": (st.rows - r0) / max(1, batches),
        "thread_batches": st.thread_batches - t0,
    }


async def _run_per_call(
    streams: list[bytes], warm: list[bytes], models: list[Any], threaded: bool
) -> dict[str, Any]:
    from ..audio.vad import SileroVADAnalyzer

    analyzers = [SileroVADAnalyzer(skip_quiet=False, sample_rate=RATE, model=m) for m in models]
    executors = [concurrent.futures.ThreadPoolExecutor(1) for _ in streams] if threaded else []
    loop = asyncio.get_running_loop()

    async def play(audio: list[bytes]) -> None:
        n = len(audio[0])
        for off in range(0, n, FRAME_BYTES):
            if threaded:
                await asyncio.gather(
                    *(
                        loop.run_in_executor(ex, a.analyze_audio_sync, s[off : off + FRAME_BYTES])
                        for a, s, ex in zip(analyzers, audio, executors, strict=True)
                    )
                )
            else:
                for a, s in zip(analyzers, audio, strict=True):
                    a.analyze_audio_sync(s[off : off + FRAME_BYTES])
                await asyncio.sleep(0)

    await play(warm)
    cpu, wall = await _timed(play(streams))
    for ex in executors:
        ex.shutdown(wait=True)
    for a in analyzers:
        a.close()
    return {"cpu_s": cpu, "wall_s": wall}


# ------------------------------------------------------------ extras


def _smart_turn(quick: bool) -> dict[str, Any]:
    try:
        from ..turns import SmartTurnAnalyzer
    except ImportError as exc:
        return {"available": False, "reason": f"flowcat.turns: {exc}"}
    try:
        analyzer = SmartTurnAnalyzer()
    except Exception as exc:  # missing model / runtime
        return {"available": False, "reason": str(exc)}
    audio = _fixture_audio()
    audio = (audio * 2)[: RATE * 8 * 2]  # the model looks at the last 8 s
    analyzer.predict(audio)
    reps = 2 if quick else 5
    single = _cpu_timed(lambda: [analyzer.predict(audio) for _ in range(reps)]) / reps
    batch = 8
    batched = _cpu_timed(lambda: analyzer.predict_batch([audio] * batch)) / batch
    return {"available": True, "cpu_ms_per_check": single * 1e3, "cpu_ms_per_check_batch8": batched * 1e3}


def _media(quick: bool) -> dict[str, Any]:
    try:
        from .. import audio as fa
    except ImportError as exc:
        return {"available": False, "reason": str(exc)}
    n = 2000 if quick else 20000
    out: dict[str, Any] = {"available": True}
    frame16 = _fixture_audio()[RATE * 2 : RATE * 2 + FRAME_BYTES]
    frame8 = frame16[: FRAME_BYTES // 2]
    ops: dict[str, Callable[[], Any]] = {}
    if hasattr(fa, "pcm16_to_ulaw"):
        ulaw = fa.pcm16_to_ulaw(frame8)
        ops["ulaw_encode_8k"] = lambda: fa.pcm16_to_ulaw(frame8)
        ops["ulaw_decode_8k"] = lambda: fa.ulaw_to_pcm16(ulaw)
    if hasattr(fa, "StreamResampler"):
        up = fa.StreamResampler(8000, 16000)
        down = fa.StreamResampler(48000, 16000)
        frame48 = (frame16 * 3)[: FRAME_BYTES * 3]
        ops["resample_8k_to_16k"] = lambda: up.resample(frame8)
        ops["resample_48k_to_16k"] = lambda: down.resample(frame48)
    for name, op in ops.items():
        for _ in range(100):
            op()
        cpu = _cpu_timed(lambda op=op: [op() for _ in range(n)])  # type: ignore[misc]
        out[f"{name}_us_per_20ms"] = cpu / n * 1e6
    return out


# ---------------------------------------------------------------- main


def run(calls: int, seconds: float, quick: bool = False) -> dict[str, Any]:
    """Run every measurement; return the result dict (see module docstring)."""
    from ..audio.vad import SileroModel

    SileroModel.shared()
    warm = _call_streams(calls, 1.0 if not quick else 0.3)
    streams = _call_streams(calls, seconds)
    audio_s = calls * seconds
    res: dict[str, Any] = {
        "bench": "vad",
        "calls": calls,
        "audio_seconds_per_call": seconds,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    batched = asyncio.run(_run_batched(streams, warm))
    t0 = time.perf_counter()
    models = [SileroModel() for _ in streams]  # pipecat's model: a session per call
    build_ms = (time.perf_counter() - t0) / calls * 1e3
    per_call = asyncio.run(_run_per_call(streams, warm, models, threaded=True))
    inline = asyncio.run(_run_per_call(streams, warm, models, threaded=False))
    per_call["session_build_ms"] = build_ms
    del models
    for key, r in (("batched", batched), ("per_call", per_call), ("per_call_inline", inline)):
        r["cpu_us_per_call_per_audio_s"] = r["cpu_s"] / audio_s * 1e6
        r["calls_per_core"] = 1e6 / r["cpu_us_per_call_per_audio_s"]
        res[key] = r
    res["batched_speedup"] = per_call["cpu_s"] / batched["cpu_s"]
    res["batched_speedup_vs_inline"] = inline["cpu_s"] / batched["cpu_s"]
    res["target_speedup"] = TARGET_SPEEDUP
    res["vad_calls_per_core"] = batched["calls_per_core"]
    res["smart_turn"] = _smart_turn(quick)
    res["media"] = _media(quick)
    return res


def _table(r: dict[str, Any]) -> str:
    lines = [
        f"VAD bench: {r['calls']} calls x {r['audio_seconds_per_call']:g} s of 16 kHz speech "
        f"(python {r['python']}, {r['cpus']} cpus)",
        "",
        f"{'model':<34}{'CPU us/call/audio-s':>21}{'us/20ms':>10}{'calls/core':>12}",
    ]
    names = {
        "batched": "Silero, shared + batched (flowcat)",
        "per_call": "Silero, session+thread per call",
        "per_call_inline": "Silero, session per call, no thread",
    }
    for key, label in names.items():
        m = r[key]
        us = m["cpu_us_per_call_per_audio_s"]
        lines.append(f"{label:<34}{us:>21.0f}{us / 50:>10.1f}{m['calls_per_core']:>12.0f}")
    b = r["batched"]
    lines += [
        "",
        f"batched_speedup (per call / batched): {r['batched_speedup']:.2f}x "
        f"(target >= {r['target_speedup']:g}x); vs no-thread per call: {r['batched_speedup_vs_inline']:.2f}x",
        f"batches: {b['batches']}, mean batch {b['mean_batch']:.1f} rows, in thread {b['thread_batches']}; "
        f"session build per call (pipecat model): {r['per_call']['session_build_ms']:.0f} ms",
    ]
    st = r["smart_turn"]
    if st.get("available"):
        lines.append(
            f"smart-turn v3 per end-of-turn check: {st['cpu_ms_per_check']:.1f} ms CPU "
            f"(batch of 8: {st['cpu_ms_per_check_batch8']:.1f} ms each)"
        )
    else:
        lines.append(f"smart-turn: n/a ({st.get('reason')})")
    media = r["media"]
    if media.get("available"):
        parts = [
            f"{k[: -len('_us_per_20ms')]} {v:.1f}" for k, v in media.items() if k.endswith("_us_per_20ms")
        ]
        lines.append("media us per 20 ms frame: " + ", ".join(parts))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Entry point of ``flowcat bench vad``; 0 on success."""
    quick = bool(getattr(args, "quick", False))
    calls = args.calls or (10 if quick else 100)
    seconds = args.seconds or (1.0 if quick else 2.0)
    try:
        result = run(calls, seconds, quick)
    except ImportError as exc:
        print(f"bench vad: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=None, sort_keys=True))
    else:
        print(_table(result))
    return 0
