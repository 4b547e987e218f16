"""Agent: N concurrent phone conversations (Twilio media, VAD, STT, LLM, TTS on local fakes), flowcat vs pipecat 1.14.0.

One fakes process (``python -m flowcat.testing.fakes``: Deepgram, OpenAI and Cartesia protocols,
fixed delays) serves every point of the run, for both systems. Per point a fresh server (flowcat
``serve --app flowcat.bench._agent_app:agent_app``, or pipecat's agent in its own venv,
``_pipecat_agent_sut.py``) pinned to the server core, and one caller process
(``_agent_caller.py``, N Twilio calls in real time, speech fixtures, barge-in every
``--barge-every`` turns) with the fakes on the other core.

Framework-added latency of a turn = first bot audio at the caller − end of the caller's speech −
the VAD hangover (``stop_secs`` 0.2 s plus the Silero model's own lag on that utterance at that
turn's window alignment, measured offline on the same audio with flowcat's analyzer:
:func:`vad_hangover_s`) − the turn rule's wait
after the VAD stop (the 0.6 s speech timeout, or the STT final if later) − the LLM's time to first
token − the TTS's time to first audio. Both systems run the same rule (speech timeout 0.6 s after a 0.2 s VAD stop, waiting for
the final transcript); pipecat's default rule (smart-turn v3) is a separate row
(``pipecat/smart-turn``) and is not comparable (its wait depends on the model's verdict).
Both systems send the bot's audio to the callers in 40 ms messages (pipecat's default
``audio_out_10ms_chunks=4``; flowcat ``serve --audio-out-chunk-ms 40``, ``--out-chunk-ms``).
Server CPU: on-CPU time of the server process tree over the conversation window, per session
(``server_cpu_pct``), and per live session (``server_cpu_live_pct``: over the calls' summed media
time, from each call's ``start`` to its ``stop``). The callers connect 100 ms apart, so at 200
sessions the point runs ~20 s before every call is live and its calls are all live for only part
of it: the first figure then understates what a live call costs (about half, against nearly all
for 10 sessions); compare systems by the second. ``peak_live``: the most calls live at once.
RSS: peak resident memory of the tree during the point minus its resident memory once ready,
per session.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import BenchError
from ._agent_report import capacity, format_capacity, format_local_table, format_table
from .capacity import PIPECAT_VERSION, _fifo, _free_port, _pin, _stop, _tree, _wait_healthy, cpu_ns

__all__ = [
    "REPLY", "add_arguments", "added_latencies", "capacity", "ensure_agent_venv", "format_capacity", "format_table",
    "main", "run_point", "vad_hangover_s",
]

PIPECAT_AGENT_VENV = Path.home() / ".cache" / "flowcat" / "bench" / f"pipecat-{PIPECAT_VERSION}-agent"
_PIPECAT_IMPORTS = (
    "import pipecat.services.deepgram.stt, pipecat.services.openai.llm, pipecat.services.cartesia.tts, "
    "pipecat.audio.vad.silero, fastapi, uvicorn, uvloop"
)
REPLY = (
    "Sure. It is sunny and warm in Paris today, with a light breeze from the west. "
    "Is there anything else I can help you with?"
)
VAD_STOP_SECS = 0.2
SPEECH_TIMEOUT = 0.6


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``flowcat bench agent``."""
    p.add_argument("--sessions", default="1,5,10,20", help="comma-separated concurrent calls (flowcat)")
    p.add_argument("--vs-pipecat", action="store_true", help="also run pipecat 1.14.0 (own venv)")
    p.add_argument("--pipecat-sessions", default="1,5,10", help="concurrent calls for pipecat")
    p.add_argument("--smart-turn-sessions", default="1", help="pipecat with its default stop rule ('' : none)")
    p.add_argument("--turns", type=int, default=4, help="turns per call")
    p.add_argument("--repeat", type=int, default=1,
                   help="run every point this many times, in rounds (the capacity summary takes each point's median)")
    p.add_argument("--bound-ms", type=float, default=100.0, help="the p99 bound of the capacity summary")
    p.add_argument("--barge-every", type=int, default=3, help="every k-th turn is barged in on (0: never)")
    p.add_argument("--stt-delay", type=float, default=0.15)
    p.add_argument("--llm-ttft", type=float, default=0.2)
    p.add_argument("--llm-inter-token", type=float, default=0.01)
    p.add_argument("--tts-ttfa", type=float, default=0.1)
    p.add_argument("--tts-char-ms", type=int, default=20)
    p.add_argument("--engine", choices=("aiohttp", "picows"), default="aiohttp",
                   help="flowcat's media WebSocket engine (flowcat serve --engine)")
    p.add_argument("--out-chunk-ms", type=int, default=40,
                   help="flowcat's bot audio message size (serve --audio-out-chunk-ms); 40 = pipecat's default "
                        "(audio_out_10ms_chunks=4), so both systems send the same messages")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--fifo", action="store_true",
                   help="run the server, the callers and the fakes under chrt -f 10 (SCHED_FIFO), both systems: "
                        "other work on a shared box then cannot preempt them")
    p.add_argument("--gen-cpu", type=int, default=1, help="CPU of the callers and the fakes")
    p.add_argument("--quick", action="store_true", help="CI smoke: 2 sessions, 1 turn, no pipecat")
    p.add_argument("--json", action="store_true", help="print one JSON object per point (JSON lines)")
    p.add_argument("--pipecat-python", default=None, help="python of a ready pipecat agent venv")
    p.add_argument("--local", action="store_true",
                   help="the offline agent (flowcat.bench._offline_app: Whisper, clinic graph, Piper/espeak): "
                        "no fakes; latency from the end of speech, turns within --budget-ms")
    p.add_argument("--budget-ms", type=float, default=1500.0, help="--local: a turn's answer budget")


def ensure_agent_venv(explicit: str | None = None) -> str:
    """Python of the pipecat 1.14.0 venv with the agent extras (created if needed)."""
    import fcntl

    if explicit:
        return explicit
    py = PIPECAT_AGENT_VENV / "bin" / "python"
    PIPECAT_AGENT_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(PIPECAT_AGENT_VENV.parent / f".pipecat-{PIPECAT_VERSION}-agent.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if py.exists() and subprocess.run([str(py), "-c", _PIPECAT_IMPORTS], capture_output=True).returncode == 0:
            return str(py)
        if not py.exists():
            subprocess.run(["uv", "venv", "-q", "-p", "3.11", str(PIPECAT_AGENT_VENV)], check=True)
        pkg = f"pipecat-ai[websocket,deepgram,openai,cartesia,silero]=={PIPECAT_VERSION}"
        subprocess.run(["uv", "pip", "install", "-q", "-p", str(py), pkg, "fastapi", "uvicorn[standard]"], check=True)
    return str(py)


# ------------------------------------------------------------------ processes


def start_fakes(args: argparse.Namespace, port_file: str) -> subprocess.Popen[bytes]:
    """The fakes process (own CPU), once its port file is written."""
    cmd = [
        sys.executable, "-m", "flowcat.testing.fakes", "--port-file", port_file,
        "--stt-delay", str(args.stt_delay), "--llm-ttft", str(args.llm_ttft),
        "--llm-inter-token", str(args.llm_inter_token), "--tts-ttfa", str(args.tts_ttfa),
        "--tts-char-ms", str(args.tts_char_ms), "--llm-reply", REPLY,
    ]
    proc = subprocess.Popen(_fifo(cmd, getattr(args, "fifo", False)), preexec_fn=_pin({args.gen_cpu}),
                            stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not os.path.exists(port_file):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise BenchError("the fakes did not start")
        time.sleep(0.05)
    return proc


def _server_cmd(system: str, port: int, fakes_file: str, args: argparse.Namespace) -> list[str]:
    if system in ("flowcat", "flowcat/offline"):
        app = "flowcat.bench._offline_app:offline_app" if system == "flowcat/offline" else "flowcat.bench._agent_app:agent_app"
        return [
            sys.executable, "-m", "flowcat.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--sample-rate", "8000", "--idle-timeout", "0", "--no-verify",
            "--drain-timeout", "1", "--app", app, "--engine", args.engine,
            "--audio-out-chunk-ms", str(getattr(args, "out_chunk_ms", 20)),
        ]
    sut = Path(__file__).with_name("_pipecat_agent_sut.py")
    turn = "smart-turn" if system == "pipecat/smart-turn" else "speech-timeout"
    return [args.pipecat_python_resolved, str(sut), "--port", str(port), "--fakes", fakes_file, "--turn", turn]


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants."""
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError, ValueError), open(f"/proc/{p}/statm") as f:
            total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return total


def _health(port: int) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2.0) as r:
        return dict(json.loads(r.read()))


def vad_hangover_s() -> list[list[float]]:
    """Per utterance (the callers' order) and VAD window phase: seconds from the end of the
    packet holding the last speech sample to the end of the packet that completes flowcat's
    Silero VAD stop (default ``VADParams``: ``stop_secs`` plus the model's own lag), on the same
    8 kHz μ-law audio, offline.

    The phase is how many packets the call had sent before the utterance, modulo
    ``VAD_PHASES``: 20 ms packets meet 32 ms windows at 8 alignments, and where the speech
    ends inside a window moves the stop by up to a window (the callers record each turn's
    phase). Each utterance is preceded by 48 + phase packets of silence, as on a call.
    """
    from ..audio import ulaw_to_pcm16
    from ..audio.vad import SileroVADAnalyzer, VADState
    from ._agent_caller import FRAME, VAD_PHASES, load_utterances

    silence = b"\xff" * FRAME
    out = []
    for u in load_utterances():
        row = []
        for phase in range(VAD_PHASES):
            lead = 6 * VAD_PHASES + phase
            vad = SileroVADAnalyzer(sample_rate=8000)
            vad.set_sample_rate(8000)
            speaking = False
            stop = None
            for i, p in enumerate([silence] * lead + u.payloads + [silence] * 100):
                state = vad.analyze_audio_sync(ulaw_to_pcm16(p))
                speaking = speaking or state is VADState.SPEAKING
                if speaking and i > lead + u.end_index and state is VADState.QUIET:
                    stop = i - lead
                    break
            if stop is None:
                raise BenchError(f"{u.name}: the VAD never stopped")
            row.append((stop - u.end_index) * FRAME / 8000)
        out.append(row)
    return out


def fixed_delays(args: argparse.Namespace, hangover_s: float = VAD_STOP_SECS) -> float:
    """Seconds of a turn that the VAD, the turn rule and the fakes take, not the framework (module doc)."""
    return hangover_s + max(SPEECH_TIMEOUT, args.stt_delay) + args.llm_ttft + args.tts_ttfa


def added_latencies(
    latencies_ms: list[float], args: argparse.Namespace, utterances: list[int] | None = None,
    hangovers_s: list[list[float]] | None = None, phases: list[int] | None = None,
) -> list[float]:
    """Framework-added latency per turn (ms); ``hangovers_s[utterances[i]][phases[i]]`` is turn i's
    VAD hangover (:func:`vad_hangover_s`; default: ``stop_secs``)."""
    if utterances is None or hangovers_s is None or phases is None:
        return [x - 1000.0 * fixed_delays(args) for x in latencies_ms]
    return [
        x - 1000.0 * fixed_delays(args, hangovers_s[u][ph])
        for x, u, ph in zip(latencies_ms, utterances, phases, strict=True)
    ]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1)


def run_point(system: str, sessions: int, fakes_file: str, args: argparse.Namespace) -> dict[str, Any]:
    """One point: fresh server, N calls to the end, CPU and memory. Returns the row."""
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1", FLOWCAT_BENCH_FAKES=fakes_file)
    env.pop("PIPECAT_ALLOWED_ORIGINS", None)
    srv = subprocess.Popen(
        _fifo(_server_cmd(system, port, fakes_file, args), getattr(args, "fifo", False)),
        preexec_fn=_pin({args.server_cpu}), env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    errs: list[str] = []
    threading.Thread(target=lambda: errs.extend(ln.decode(errors="replace") for ln in srv.stderr or ()),
                     daemon=True).start()
    row: dict[str, Any] = {"system": system, "sessions": sessions}
    try:
        _wait_healthy(port, srv, timeout=120)
        rss0 = peak = rss_bytes(srv.pid)
        cfg = {
            "url": f"ws://127.0.0.1:{port}/twilio/ws", "sessions": sessions, "turns": args.turns,
            "barge_every": args.barge_every, "reply_audio_ms": len(REPLY) * args.tts_char_ms,
        }
        if args.local:  # any reply counts (the graph's words vary); a loaded box may take long
            cfg.update(reply_audio_ms=0, answer_timeout=20.0)
        gen = subprocess.Popen(
            _fifo([sys.executable, "-m", "flowcat.bench._agent_caller", json.dumps(cfg)], getattr(args, "fifo", False)),
            preexec_fn=_pin({args.gen_cpu}), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        assert gen.stdout is not None
        c0, t0 = cpu_ns(srv.pid), time.monotonic_ns()
        cores0 = core_times()
        result: dict[str, Any] = {}
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.wait(0.25):
                peak = max(peak, rss_bytes(srv.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for line in gen.stdout:
            if line.startswith("RESULT "):
                result = json.loads(line[7:])
        c1, t1 = cpu_ns(srv.pid), time.monotonic_ns()
        cores1 = core_times()
        stop.set()
        sampler.join()
        gen.wait(timeout=30)
        if not result:
            raise BenchError(f"caller failed: {(gen.stderr.read() if gen.stderr else '')[-400:]}")
        if system.startswith("pipecat"):
            outside = _health(port).get("outside", 0)
            if outside:
                raise BenchError(f"pipecat tried {outside} outside connection(s)")
    finally:
        _stop(srv)
    # CPU per live session: the server's CPU over the calls' summed media time. The callers
    # connect 100 ms apart, so at large N the calls are all live for only part of the point and
    # ``server_cpu_pct`` (CPU over the whole point, divided by N) understates what a live call costs.
    live_s = float(result.get("session_seconds") or 0.0)
    row.update(
        server_cpu_live_pct=round(100.0 * (c1 - c0) / 1e9 / live_s, 3) if live_s > 0 else None,
        peak_live=result.get("peak_live"),
    )
    if args.local:
        lat = result["latencies_ms"]
        row.update(
            first_audio_p50_ms=_pct(lat, 0.5), first_audio_p95_ms=_pct(lat, 0.95),
            within_budget=sum(1 for x in lat if x <= args.budget_ms), turns=result["turns"],
            turns_ok=result["turns_ok"], barge_ins=result["barge_ins"], barge_ins_ok=result["barge_ins_ok"],
            calls_failed=result["calls_failed"],
            server_cpu_pct=round(100.0 * (c1 - c0) / max(1, t1 - t0) / sessions, 2),
            rss_ready_mb=round(rss0 / 1e6, 1), rss_peak_mb=round(peak / 1e6, 1),
        )
        if result.get("errors"):
            row["errors"] = result["errors"]
        return row
    # How busy each core was over the point (every process on it, other tenants included):
    # a generator core near 100 % means the callers and fakes, not the server, set the pace.
    row.update(server_core_busy_pct=core_busy_pct(cores0, cores1, args.server_cpu),
               gen_core_busy_pct=core_busy_pct(cores0, cores1, args.gen_cpu))
    added = added_latencies(result["latencies_ms"], args, result["latency_utterances"], args.hangovers_s,
                            result.get("latency_phases"))
    later = [x for x, k in zip(added, result.get("latency_turns") or [1] * len(added), strict=True) if k > 0]
    row.update(
        added_p50_ms=_pct(added, 0.5), added_p99_ms=_pct(added, 0.99),
        added_p99_later_ms=_pct(later, 0.99),  # each call's first turn left out (a per-call cold start)
        first_audio_p50_ms=_pct(result["latencies_ms"], 0.5), turns=result["turns"], turns_ok=result["turns_ok"],
        barge_ins=result["barge_ins"], barge_ins_ok=result["barge_ins_ok"], calls_failed=result["calls_failed"],
        server_cpu_pct=round(100.0 * (c1 - c0) / max(1, t1 - t0) / sessions, 2),
        rss_mb=round((peak - rss0) / 1e6 / sessions, 1), rss_ready_mb=round(rss0 / 1e6, 1),
        added_ms=[round(x, 1) for x in added],  # per answered turn, call by call (where the tail is)
        turn_index=result.get("latency_turns"), speech_end_s=result.get("latency_at_s"),
        caller_lag_ms=result.get("caller_lag_ms"),
    )
    if result.get("errors"):
        row["errors"] = result["errors"]
    if os.environ.get("FLOWCAT_BENCH_SERVER_LOG"):  # the server's stderr (stalls, warnings), for a look
        with open(os.environ["FLOWCAT_BENCH_SERVER_LOG"], "a", encoding="utf-8") as f:
            f.write(f"=== {system} N={sessions}\n" + "".join(errs))
    return row


def core_times() -> dict[int, tuple[int, int]]:
    """(busy, total) jiffies per CPU from /proc/stat ({} where it is not readable)."""
    out: dict[int, tuple[int, int]] = {}
    with contextlib.suppress(OSError), open("/proc/stat", encoding="ascii") as f:
        for line in f:
            name, _, rest = line.partition(" ")
            if name.startswith("cpu") and name[3:].isdigit():
                vals = [int(v) for v in rest.split()]
                idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
                out[int(name[3:])] = (sum(vals[:8]) - idle, sum(vals[:8]))
    return out


def core_busy_pct(a: dict[int, tuple[int, int]], b: dict[int, tuple[int, int]], cpu: int) -> float | None:
    """How busy ``cpu`` was between two :func:`core_times` readings (% of the core)."""
    if cpu not in a or cpu not in b:
        return None
    busy, total = b[cpu][0] - a[cpu][0], b[cpu][1] - a[cpu][1]
    return round(100.0 * busy / total, 1) if total > 0 else None


# ------------------------------------------------------------------ orchestration


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def plan(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(system, sessions) per point, in run order."""
    if args.local:
        return [("flowcat/offline", n) for n in _ints(args.sessions)]
    if args.quick:
        return [("flowcat", 2)]
    points = [("flowcat", n) for n in _ints(args.sessions)]
    if args.vs_pipecat:
        points += [("pipecat", n) for n in _ints(args.pipecat_sessions)]
        points += [("pipecat/smart-turn", n) for n in _ints(args.smart_turn_sessions)]
    return points * max(1, int(getattr(args, "repeat", 1)))  # rounds: the host's noise spreads over every point


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; print a table (or JSON lines). Exit 1 when a point failed or a turn went unanswered."""
    if args.quick:
        args.turns, args.barge_every = 1, 0
    args.pipecat_python_resolved = None
    if args.local:
        return _main_local(args)
    if args.vs_pipecat and not args.quick:
        args.pipecat_python_resolved = ensure_agent_venv(args.pipecat_python)
    args.hangovers_s = vad_hangover_s()
    if not args.json:
        print(f"  VAD hangover per utterance and window phase (s): {args.hangovers_s}", file=sys.stderr, flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="flowcat-bench-agent-") as tmp:
        fakes_file = os.path.join(tmp, "fakes.json")
        fakes = start_fakes(args, fakes_file)
        try:
            for system, n in plan(args):
                try:
                    row = run_point(system, n, fakes_file, args)
                except Exception as exc:  # one failed point must not lose the others
                    row = {"system": system, "sessions": n, "error": str(exc)}
                rows.append(row)
                if not args.json:
                    print(f"  {system} N={n}: added p50={row.get('added_p50_ms')} p99={row.get('added_p99_ms')} ms "
                          f"turns {row.get('turns_ok')}/{row.get('turns')} cpu={row.get('server_cpu_pct')}%/session",
                          file=sys.stderr, flush=True)
        finally:
            _stop(fakes)
    summary = capacity(rows, args.bound_ms)
    if args.json:
        for r in rows:
            print(json.dumps(r))
        print(json.dumps({"summary": summary}))
    else:
        print(format_table(rows))
        print(format_capacity(summary))
    bad = any("error" in r or r.get("turns_ok") != r.get("turns") for r in rows)
    return 1 if bad else 0


def _main_local(args: argparse.Namespace) -> int:
    """``--local``: the offline agent per point, no fakes process."""
    args.hangovers_s = None
    rows: list[dict[str, Any]] = []
    for system, n in plan(args):
        try:
            row = run_point(system, n, "", args)
        except Exception as exc:  # one failed point must not lose the others
            row = {"system": system, "sessions": n, "error": str(exc)}
        rows.append(row)
        if not args.json:
            print(f"  offline N={n}: p50={row.get('first_audio_p50_ms')} p95={row.get('first_audio_p95_ms')} ms "
                  f"within {args.budget_ms:g} ms: {row.get('within_budget')}/{row.get('turns')} "
                  f"cpu={row.get('server_cpu_pct')}%/call", file=sys.stderr, flush=True)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(format_local_table(rows, args.budget_ms))
    return 1 if any("error" in r or r.get("turns_ok") != r.get("turns") for r in rows) else 0
