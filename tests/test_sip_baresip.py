"""Flow 5: baresip (Debian ``baresip-core``) calls flowcat: PCMU audio from a WAV file (``aufile``),
DTMF keys typed on baresip's UDP console (``cons``) arrive as RFC 4733 digits, and baresip hangs
up at the end of the file. Everything on 127.0.0.1 (``net_interface 127.0.0.1``: gotcha 3).
Without baresip the module skips locally and fails under CI=true (.ci/run installs it)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import wave
from pathlib import Path

import numpy as np
import pytest

from _helpers import missing
from _sip_peer import App, free_sip_port
from flowcat.transports.sip import SIPServer, Timers

BARESIP = shutil.which("baresip")
if BARESIP is None:
    missing("baresip (Debian package baresip-core: apt-get install -y baresip-core)")

pytestmark = [pytest.mark.usefixtures("no_outside_connections"), pytest.mark.timeout(90)]


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(proc: asyncio.subprocess.Process) -> None:
    """Read baresip's output until it says it is ready; fail (not spin) if it exits first."""
    assert proc.stdout is not None
    seen = b""
    while b"baresip is ready" not in seen:
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        if not line:  # EOF: baresip exited
            await proc.wait()
            pytest.fail(f"baresip exited ({proc.returncode}) before it was ready: {seen.decode(errors='replace')[-1500:]}")
        seen += line


def baresip_config(
    home: Path, wav: Path, sip_port: int, cons_port: int, *, auto_answer: bool = False
) -> None:
    home.mkdir()
    modules = ("g711", "aufile", "aubridge", "cons", "account", "menu")
    (home / "config").write_text(
        "\n".join(
            [
                f"sip_listen 127.0.0.1:{sip_port}",
                "net_interface 127.0.0.1",
                f"audio_source aufile,{wav}",
                "audio_player aubridge,nil",
                "audio_alert aubridge,nil",
                "module_path /usr/lib/baresip/modules",
                *(f"module {m}.so" for m in modules),
                f"cons_listen 127.0.0.1:{cons_port}",
                "",
            ]
        )
    )
    answer = ";answermode=auto" if auto_answer else ""
    (home / "accounts").write_text(f"<sip:alice@127.0.0.1>;regint=0{answer}\n")
    (home / "contacts").write_text("")


def tone_wav(path: Path, seconds: float = 3.0) -> Path:
    t = np.arange(int(8000 * seconds)) / 8000
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((5000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes())
    return path


async def test_flow6_flowcat_dials_baresip_auto_answer(tmp_path: Path) -> None:
    """flowcat places the call; baresip answers (auto-answer), its file's audio reaches the
    pipeline, and flowcat hangs up with BYE, which baresip answers."""
    app = App()
    srv = SIPServer(app, port=0, rtp_ports=(33800, 33900), timers=Timers(t1=0.1))
    await srv.start()
    sip_port = free_sip_port()
    baresip_config(tmp_path / "baresip", tone_wav(tmp_path / "tone.wav", 10), sip_port, free_port(),
                   auto_answer=True)  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        str(BARESIP), "-f", str(tmp_path / "baresip"), "-t", "20",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        await wait_ready(proc)
        call = await srv.dial(f"sip:alice@127.0.0.1:{sip_port}", from_user="agent")
        await asyncio.wait_for(app.called.wait(), 10)
        _, task, rec = app.calls[0]
        while len(rec.audio) < 8000 * 2:  # a second of baresip's tone
            rec.got_audio.clear()
            await asyncio.wait_for(rec.got_audio.wait(), 10)
        await call.hangup()
        await asyncio.wait_for(call.ended.wait(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await srv.stop()
    assert call.bye_sent and not call.bye_received and call.negotiated.codec in ("PCMU", "PCMA")
    assert np.abs(np.frombuffer(bytes(rec.audio), "<i2")).max() > 2000


async def test_flow5_baresip_calls_with_audio_and_console_dtmf(tmp_path: Path) -> None:
    wav = tone_wav(tmp_path / "speech8k.wav")
    app = App()
    srv = SIPServer(app, port=0, rtp_ports=(33700, 33800), timers=Timers(t1=0.1))
    await srv.start()
    cons = free_port()
    baresip_config(tmp_path / "baresip", wav, free_sip_port(), cons)
    proc = await asyncio.create_subprocess_exec(
        str(BARESIP), "-f", str(tmp_path / "baresip"), "-e", f"/dial sip:agent@127.0.0.1:{srv.port}", "-t", "45",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        # bounds for a loaded CI box: baresip once took over 15 s to place its call there
        await asyncio.wait_for(app.called.wait(), 40)
        transport, _, rec = app.calls[0]
        await asyncio.wait_for(rec.got_audio.wait(), 10)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for n, key in enumerate((b"4", b"2"), 1):
                rec.got_dtmf.clear()
                s.sendto(key, ("127.0.0.1", cons))
                while len(rec.dtmf) < n:  # one key at a time: wait for its digit
                    await asyncio.wait_for(rec.got_dtmf.wait(), 10)
                    rec.got_dtmf.clear()
        await asyncio.wait_for(srv.wait_calls_ended(), 20)  # baresip hangs up at the end of the file
        proc.terminate()  # its work is done: no need to wait for its -t 45 to run out
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
        await srv.stop()
    log = out.decode(errors="replace")[-2000:]
    assert transport.call.codec in ("PCMU", "PCMA"), log
    assert rec.dtmf == ["4", "2"], log
    assert len(rec.audio) > 8000 * 2 * 2, log  # more than two of the three seconds arrived
    assert np.abs(np.frombuffer(bytes(rec.audio), "<i2")).max() > 2000
