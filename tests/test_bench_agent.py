"""``flowcat bench agent``: the --quick smoke (every turn answered, fields present), the callers'
bookkeeping, the added-latency arithmetic. Correctness only, never timing thresholds."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from flowcat.bench import agent
from flowcat.bench._agent_caller import FRAME, Call, Turn, load_utterances, summarize

# Timing-sensitive (the agent bench's latency figures): .ci/run runs it alone, after the parallel run.
pytestmark = pytest.mark.serial

FIELDS = {"system", "sessions", "added_p50_ms", "added_p99_ms", "turns_ok", "server_cpu_pct", "rss_mb"}


def test_quick_smoke_answers_every_turn_over_twilio() -> None:
    """Two callers, one turn each: VAD → Deepgram → aggregator → OpenAI → Cartesia on the fakes,
    the reply's audio back at the caller over Twilio media."""
    cmd = [sys.executable, "-m", "flowcat.cli", "bench", "agent", "--quick", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    docs = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    rows = [d for d in docs if "system" in d]
    assert len(rows) == 1, out.stderr[-3000:]
    summary = [d["summary"] for d in docs if "summary" in d]
    assert len(summary) == 1 and summary[0]["points"][0]["sessions"] == 2, docs
    row = rows[0]
    assert FIELDS <= row.keys(), row
    assert "error" not in row, row
    assert (row["system"], row["sessions"], row["turns"], row["calls_failed"]) == ("flowcat", 2, 2, 0)
    assert row["turns_ok"] == 2, row
    assert row["added_p50_ms"] is not None and row["added_p99_ms"] is not None
    assert out.returncode == 0, out.stderr[-2000:]


def test_fixtures_load_as_mulaw_payloads_with_the_speech_end() -> None:
    utts = load_utterances()
    assert [u.name for u in utts] == ["utterance_weather.wav", "utterance_booking.wav"]
    for u in utts:
        assert all(len(p) == FRAME for p in u.payloads)
        assert u.end_index == int(u.end_offset_s * 8000) // FRAME  # the packet holding the last speech sample
        voiced = sum(1 for p in u.payloads[: u.end_index + 1] if p != b"\xff" * FRAME)
        assert voiced > 40  # > 0.8 s of speech before the end


def test_summary_counts_complete_and_barged_turns() -> None:
    done = Turn(speech_end=10.0, first_audio=11.0, last_audio=13.0, audio_ms=2000.0)
    short = Turn(speech_end=20.0, first_audio=21.2, last_audio=21.5, audio_ms=300.0)  # reply cut off
    barged = Turn(barge=True, speech_end=30.0, first_audio=31.1, audio_ms=400.0, barge_start=31.5,
                  clear_after_barge=True)
    unheard = Turn(barge=True, speech_end=40.0, first_audio=41.0, barge_start=41.4)  # no clear came
    silent = Turn(speech_end=50.0)  # never answered
    calls = [Call(0, [done, short, barged]), Call(1, [unheard, silent])]
    s = summarize(calls, {"turns": 3, "reply_audio_ms": 2000, "complete_fraction": 0.85}, t0=5.0)
    assert s["latencies_ms"] == [1000.0, 1200.0, 1100.0, 1000.0]
    assert s["latency_turns"] == [0, 1, 2, 0]  # each answered turn's place in its call
    assert s["latency_at_s"] == [5.0, 15.0, 25.0, 35.0]
    # done and barged are answered; short (cut), unheard (no clear), silent and a turn call 1
    # never reached are not.
    assert (s["turns"], s["turns_ok"], s["barge_ins"], s["barge_ins_ok"]) == (6, 2, 2, 1)


def test_summary_sums_live_media_time_and_the_peak_of_live_calls() -> None:
    from flowcat.bench._agent_caller import peak_live

    calls = [Call(0, live=(0.0, 10.0)), Call(1, live=(5.0, 12.0)), Call(2, live=(11.0, 20.0)),
             Call(3)]  # call 3 failed before its stream started: no live time
    s = summarize(calls, {"turns": 1})
    assert s["session_seconds"] == pytest.approx(10.0 + 7.0 + 9.0)
    assert s["peak_live"] == 2  # 0 and 1 overlap, then 1 and 2; never three at once
    assert peak_live([(0.0, 1.0), (1.0, 2.0)]) == 1  # one ends as the next starts: not two at once
    assert peak_live([]) == 0


def test_added_latency_subtracts_the_rule_and_the_fakes() -> None:
    args = argparse.Namespace(stt_delay=0.15, llm_ttft=0.2, tts_ttfa=0.1)
    # VAD stop 0.2 + speech timeout 0.6 (the STT final at 0.15 comes inside it) + LLM 0.2 + TTS 0.1
    assert agent.added_latencies([1300.0, 1400.0], args) == pytest.approx([200.0, 300.0])
    slow_stt = argparse.Namespace(stt_delay=0.9, llm_ttft=0.2, tts_ttfa=0.1)
    assert agent.added_latencies([1400.0], slow_stt) == pytest.approx([0.0])

    # With the measured VAD hangover of each turn's utterance and window phase instead of stop_secs.
    hang = [[0.25, 0.27], [0.22, 0.20]]
    assert agent.added_latencies([1300.0, 1400.0], args, [1, 0], hang, [0, 1]) == pytest.approx([180.0, 230.0])


def test_vad_hangover_is_stop_secs_plus_the_models_lag_per_window_phase() -> None:
    from flowcat.bench._agent_caller import VAD_PHASES

    hang = agent.vad_hangover_s()
    assert len(hang) == 2 and all(len(row) == VAD_PHASES for row in hang)
    flat = [h for row in hang for h in row]
    # (the model may call the speech over a window or so before the last speech sample)
    assert all(agent.VAD_STOP_SECS - 0.05 <= h < agent.VAD_STOP_SECS + 0.2 for h in flat), hang
    # Where the speech ends inside a 32 ms window moves the stop: the phases do not all agree.
    assert any(len(set(row)) > 1 for row in hang), hang


def test_local_mode_serves_the_offline_app_with_no_fakes() -> None:
    from flowcat.bench.agent import _server_cmd, add_arguments, format_local_table, plan

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--local", "--sessions", "1,2,4", "--vs-pipecat"])
    assert plan(args) == [("flowcat/offline", 1), ("flowcat/offline", 2), ("flowcat/offline", 4)]
    cmd = _server_cmd("flowcat/offline", 8123, "", args)
    assert cmd[cmd.index("--app") + 1] == "flowcat.bench._offline_app:offline_app"
    assert cmd[cmd.index("--sample-rate") + 1] == "8000"
    row = {"sessions": 2, "first_audio_p50_ms": 900.0, "first_audio_p95_ms": 1700.0, "within_budget": 15,
           "turns": 16, "turns_ok": 16, "barge_ins": 4, "barge_ins_ok": 4, "server_cpu_pct": 30.0,
           "rss_ready_mb": 400.0, "rss_peak_mb": 420.0}
    table = format_local_table([row], 1500.0).splitlines()
    assert table[0].split()[3] == "<=1500ms"
    assert table[1].split() == ["2", "900.0", "1700.0", "15/16", "16/16", "4/4", "30.0", "400.0", "420.0"]


def test_core_busy_from_proc_stat_readings() -> None:
    from flowcat.bench.agent import core_busy_pct, core_times

    a = {0: (100, 1000), 1: (500, 1000)}
    b = {0: (150, 1100), 1: (590, 1100)}
    assert core_busy_pct(a, b, 0) == 50.0
    assert core_busy_pct(a, b, 1) == 90.0
    assert core_busy_pct(a, b, 7) is None  # no such core
    now = core_times()
    assert now and all(0 <= busy <= total for busy, total in now.values())


def test_media_message_is_the_json_of_twilios_media_event() -> None:
    """The callers format their media messages directly (no json.dumps per packet): the text
    must stay exactly what json.dumps writes for the documented event, and its payload must
    decode to the audio."""
    import base64

    from flowcat.bench._agent_caller import media_message

    audio = bytes(range(FRAME))
    for seq in (1, 9, 1234):
        text = media_message("MZbench000007", seq, audio)
        doc = {"event": "media", "sequenceNumber": str(seq + 1), "streamSid": "MZbench000007",
               "media": {"track": "inbound", "chunk": str(seq), "timestamp": str(seq * 20),
                         "payload": base64.b64encode(audio).decode()}}
        assert text == json.dumps(doc)
        assert base64.b64decode(json.loads(text)["media"]["payload"]) == audio


def _row(system: str, n: int, p99: float, later: float, ok: bool = True, cpu: float | None = None) -> dict[str, object]:
    return {"system": system, "sessions": n, "added_p99_ms": p99, "added_p99_later_ms": later,
            "turns": 4 * n, "turns_ok": 4 * n if ok else 4 * n - 1, "barge_ins": n, "barge_ins_ok": n,
            "server_cpu_live_pct": cpu}


def test_capacity_is_the_largest_n_whose_median_p99_holds_in_complete_runs() -> None:
    rows = [
        # flowcat 100: runs 90 / 130 / 95 -> median 95 holds; 120: median 110 does not.
        _row("flowcat", 100, 90, 88), _row("flowcat", 100, 130, 120), _row("flowcat", 100, 95, 93),
        _row("flowcat", 120, 110, 99, cpu=0.5), _row("flowcat", 120, 105, 98, cpu=0.4),
        _row("flowcat", 120, 140, 97, cpu=0.45),
        # pipecat: the first turn of each call is slow; without it 5 holds, 6 lost a turn once.
        _row("pipecat", 5, 180, 70, cpu=8.0), _row("pipecat", 5, 250, 90, cpu=9.0), _row("pipecat", 5, 200, 60, cpu=7.0),
        _row("pipecat", 6, 190, 50), _row("pipecat", 6, 170, 55, ok=False), _row("pipecat", 6, 160, 52),
    ]
    s = agent.capacity(rows, 100.0)
    assert s["capacity"]["flowcat"] == {"all": 100, "later": 120}
    assert s["capacity"]["pipecat"] == {"all": 0, "later": 5}
    # CPU per live session at each system's (later) capacity: medians 0.45 % and 8 %.
    assert s["cpu_live"] == {"flowcat": 0.45, "pipecat": 8.0}
    assert s["ratio"] == {"all": None, "later": 24.0, "cpu_live": 17.8}
    by = {(p["system"], p["sessions"]): p for p in s["points"]}
    assert by[("flowcat", 100)]["added_p99_ms"] == 95.0 and by[("flowcat", 100)]["runs"] == 3
    assert by[("pipecat", 6)]["complete"] is False
    text = agent.format_capacity(s)
    assert "flowcat: 100 (every turn), 120 (first turns left out)" in text
    assert "n/a (pipecat holds at none)" in text
    assert "flowcat 0.45 %, pipecat 8.0 % of a core: 17.8x" in text
    # No capacity for a system: no CPU figure at capacity either (not "None %").
    none = agent.capacity([_row("flowcat", 100, 150, 140, cpu=0.5), _row("pipecat", 5, 250, 200, cpu=8.0)], 100.0)
    assert none["ratio"]["cpu_live"] is None
    assert "n/a (a system holds at no point)" in agent.format_capacity(none)
    assert "None" not in agent.format_capacity(none)


def test_repeat_runs_the_points_in_rounds() -> None:
    p = argparse.ArgumentParser()
    agent.add_arguments(p)
    args = p.parse_args(["--sessions", "10,20", "--vs-pipecat", "--pipecat-sessions", "1",
                         "--smart-turn-sessions", "", "--repeat", "2"])
    assert agent.plan(args) == [("flowcat", 10), ("flowcat", 20), ("pipecat", 1)] * 2
