"""``flowcat sip register|call|answer`` as processes, against sipp (everything on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from test_sip_interop import free_port
from test_sip_uac_interop import SCEN, Sipp, registrar

pytestmark = [pytest.mark.usefixtures("no_outside_connections"), pytest.mark.timeout(90)]


async def flowcat(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flowcat.cli", "sip", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


def rtp_range() -> str:
    base = free_port() & ~1
    return f"{base}-{base + 10}"


@pytest.mark.parametrize(("password", "rc"), [("s3cret", 0), ("nope-42", 1)])
async def test_register_reports_outcome(tmp_path: Path, password: str, rc: int) -> None:
    peer = await Sipp.start("-sf", str(registrar(tmp_path, grant=300)))
    try:
        code, out, err = await flowcat(
            "register", "--registrar", f"127.0.0.1:{peer.port}", "--user", "alice",
            "--password-env", "TEST_SIP_PW", env={"TEST_SIP_PW": password},
        )  # fmt: skip
        sipp_rc, sipp_out = await peer.result()
    finally:
        peer.kill()
    assert code == rc, (out, err)
    assert sipp_rc == 0, sipp_out
    if rc == 0:
        assert f"registered <sip:alice@127.0.0.1> at 127.0.0.1:{peer.port} for 300s" in out
        assert "unregistered" in out
    else:
        assert "failed" in err and "403 Forbidden" in err
    assert password not in out + err


async def test_call_echo_against_sipp_uas() -> None:
    peer = await Sipp.start("-sn", "uas", "-mi", "127.0.0.1", "-mp", str(free_port() & ~1), "-rtp_echo")
    try:
        code, out, err = await flowcat(
            "call", f"sip:echo@127.0.0.1:{peer.port}", "--echo", "--seconds", "1",
            "--rtp-ports", rtp_range(),
        )  # fmt: skip
        sipp_rc, sipp_out = await peer.result()  # the uas scenario ends with flowcat's BYE
    finally:
        peer.kill()
    assert code == 0, (out, err)
    assert f"answered sip:echo@127.0.0.1:{peer.port} (PCMU)" in out and "ended" in out
    assert sipp_rc == 0, sipp_out


async def test_call_not_answered_exits_1() -> None:
    peer = await Sipp.start("-sf", str(SCEN / "uas_never_answer.xml"))
    try:
        code, out, err = await flowcat(
            "call", f"sip:nobody@127.0.0.1:{peer.port}", "--ring-timeout", "1", "--rtp-ports", rtp_range()
        )
        sipp_rc, sipp_out = await peer.result()  # CANCEL, 200, 487, ACK
    finally:
        peer.kill()
    assert code == 1 and "not answered" in err, (out, err)
    assert sipp_rc == 0, sipp_out


async def test_answer_one_call_from_sipp_uac() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flowcat.cli", "sip", "answer", "--port", str(port), "--calls", "1",
        "--echo", "--rtp-ports", rtp_range(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if not line and proc.stderr is not None:  # it exited before listening: say why
            err = await asyncio.wait_for(proc.stderr.read(), 10)
            pytest.fail(f"flowcat sip answer exited before listening: {err.decode(errors='replace')[-1500:]}")
        assert f"listening on 127.0.0.1:{port}" in line.decode()
        sipp = await asyncio.create_subprocess_exec(
            "sipp", "-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()),
            "-m", "1", "-timeout", "30s", "-timeout_error", "-nostdin",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        sipp_out, _ = await asyncio.wait_for(sipp.communicate(), 40)
        assert sipp.returncode == 0, sipp_out.decode(errors="replace")[-1500:]
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "1 call(s) answered" in out.decode()
