"""``flowcat serve AGENTS.yaml`` answers SIP calls natively: the config's ``sip:`` section, number →
agent routes, ``--sip-port``, the worker's admission, call metadata given to the brain.

End to end: a real ``flowcat serve`` process (one worker) with two graph agents whose STT and TTS
are the local fakes (``python -m flowcat.testing.fakes``: the TTS speaks one tone per character);
sipp (Debian ``sip-tester``) calls each number with its media pointed at a test socket, and the
tones received over RTP are decoded back into text: each number reaches its own agent, and the
greeting includes the ``X-Customer-Id`` header sipp sent (the brain saw the call's headers); a
third number's agent transfers the call (its brain's transfer action becomes a REFER).
In-process tests of :func:`~flowcat.server._sip_server.serve_sip_config` cover the refusals:
``404`` for a number no agent answers, ``503`` + ``Retry-After`` past an agent's capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from _helpers import missing
from _sip_peer import Dialog, Peer, status
from flowcat.audio import ulaw_to_pcm16
from flowcat.testing.fakes import decode_tones
from flowcat.transports.sip import parse_rtp

SIPP = shutil.which("sipp")
if SIPP is None:
    missing("sipp (Debian package sip-tester: apt-get install -y sip-tester)")

pytestmark = [pytest.mark.timeout(180)]

SCEN = Path(__file__).parent / "fixtures" / "sip"
KEYS = {"DEEPGRAM_API_KEY": "dg-secret-1", "CARTESIA_API_KEY": "ca-secret-2"}


def _port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _yaml(fakes: dict[str, Any], http_port: int, rtp: tuple[int, int]) -> str:
    topo = (
        f'{{stt: {{provider: deepgram, options: {{base_url: "{fakes["deepgram_url"]}"}}}}, '
        f'tts: {{provider: cartesia, voice: v1, options: {{base_url: "{fakes["deepgram_url"]}"}}}}}}'
    )

    def graph(word: str) -> str:
        say = f"{word} {{{{sip.headers.X-Customer-Id}}}}"
        return f'{{kind: graph, graph: {{name: {word}, nodes: [{{id: hi, type: start, data: {{say: "{say}"}}}}]}}}}'

    return f"""\
version: 1
server: {{host: 127.0.0.1, port: {http_port}}}
sip:
  port: 5999
  rtp_ports: [{rtp[0]}, {rtp[1]}]
  routes: {{"1001": alpha, sales: beta, "0": desk}}
  headers: [X-Customer-Id]
agents:
  alpha:
    brain: {graph("alpha")}
    topology: {topo}
    vad: {{analyzer: energy}}
  beta:
    brain: {graph("bravo")}
    topology: {topo}
    vad: {{analyzer: energy}}
  desk:
    brain: {{kind: graph, graph: {{name: desk, nodes: [{{id: hi, type: start, data: {{say: "moment", transfer_to: "sip:desk@example.test"}}}}]}}}}
    topology: {topo}
    vad: {{analyzer: energy}}
"""


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    port_file = tmp_path_factory.mktemp("fakes") / "fakes.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowcat.testing.fakes", "--port-file", str(port_file)],
        stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        for _ in range(600):
            if port_file.exists() and port_file.stat().st_size:
                break
            assert proc.poll() is None, "fakes exited"
            time.sleep(0.05)
        yield json.loads(port_file.read_text())
    finally:
        _kill(proc)


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    sip_port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, fakes: dict[str, Any]) -> Iterator[Served]:
    import urllib.request

    tmp = tmp_path_factory.mktemp("serve")
    http_port, sip_port = _port(), _port(socket.SOCK_DGRAM)
    config = tmp / "agents.yaml"
    config.write_text(_yaml(fakes, http_port, (34000, 34200)))
    log = tmp / "serve.log"
    env = {**os.environ, **KEYS}
    env.pop("FLOWCAT_CONFIG", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowcat.cli", "-v", "serve", str(config), "--workers", "1",
             "--sip-port", str(sip_port)],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    s = Served(proc, sip_port, log)
    try:
        for _ in range(1200):
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=5) as r:
                    if r.status == 200 and "answering SIP" in s.output():
                        break
            assert proc.poll() is None, s.output()
            time.sleep(0.05)
        else:
            raise AssertionError("not ready:\n" + s.output())
        yield s
    finally:
        _kill(proc)


class RTPSink(asyncio.DatagramProtocol):
    """Where sipp's SDP sends the call's media: records each RTP payload received."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.payload_types: set[int] = set()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        pkt = parse_rtp(data)
        if pkt is not None:
            self.payload_types.add(pkt.payload_type)
            if pkt.payload_type == 0:
                self.payloads.append(pkt.payload)

    def text(self) -> str:
        pcm = ulaw_to_pcm16(b"".join(self.payloads))
        # the greeting starts on a 20 ms boundary of the RTP stream, give or take the resampler
        return " | ".join(decode_tones(pcm[off * 2 :], 8000) for off in (0, 20, 40, 80, 120))


async def _call(
    served: Served, number: str, listen_ms: int = 2500, scenario: str = "uac_agent_call.xml"
) -> tuple[int, str, RTPSink]:
    loop = asyncio.get_running_loop()
    sink = RTPSink()
    rtp_port = _port(socket.SOCK_DGRAM) & ~1
    tr, _ = await loop.create_datagram_endpoint(lambda: sink, local_addr=("127.0.0.1", rtp_port))
    try:
        proc = await asyncio.create_subprocess_exec(
            str(SIPP), "-sf", str(SCEN / scenario), f"127.0.0.1:{served.sip_port}",
            "-s", number, "-key", "rtp_port", str(rtp_port), "-d", str(listen_ms),
            "-i", "127.0.0.1", "-p", str(_port(socket.SOCK_DGRAM)),
            "-m", "1", "-timeout", "25s", "-timeout_error", "-nostdin",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 40)
    finally:
        tr.close()
    return proc.returncode or 0, out.decode(errors="replace")[-1500:], sink


async def test_flowcat_serve_routes_each_dialled_number_to_its_agent(served: Served) -> None:
    """sipp calls 1001 and then sales on ``flowcat serve --sip-port``: each call hears its own
    agent's greeting (decoded from the RTP tones), with the caller's X-Customer-Id in it."""
    for number, word in (("1001", "alpha"), ("sales", "bravo")):
        rc, out, sink = await _call(served, number)
        assert rc == 0, out
        heard = sink.text()
        # (a space can decode as the tone before it: the resampler rings into the silence)
        assert word in heard and f"cust-{number}" in heard, (number, heard)
        other = "bravo" if word == "alpha" else "alpha"
        assert other not in heard
        assert len(sink.payloads) > 50  # continuous 20 ms media, not just the greeting
    log = served.output()
    assert "agent alpha" in log and "agent beta" in log, log[-3000:]


async def test_the_agents_transfer_action_becomes_a_refer_after_its_words(served: Served) -> None:
    """The desk agent's graph says "moment" and transfers to sip:desk@example.test: the words are
    played, sipp gets the REFER (Refer-To checked), answers 202 and NOTIFY 200, and flowcat hangs
    up (the scenario fails without the BYE)."""
    rc, out, sink = await _call(served, "0", scenario="uac_transferred.xml")
    assert rc == 0, out
    assert "moment" in sink.text()
    assert "transferred to sip:desk@example.test" in served.output()


async def test_a_number_no_agent_answers_is_404(served: Served) -> None:
    peer = await Peer.open()
    try:
        dialog = Dialog(peer, served.sip_port)  # dials "agent": no route, no default_agent
        dialog.send_invite()
        (resp,) = await peer.expect(status(404))
        assert resp.reason == "Not Found"
        dialog.ack((resp.get("To") or "").split("tag=")[-1], for_2xx=False)
    finally:
        peer.close()


# --- in process: admission -----------------------------------------------------------------


async def test_past_the_agents_capacity_or_while_draining_a_call_is_refused_503_with_retry_after() -> None:
    from flowcat.config import SIPConfig
    from flowcat.server import EchoProcessor, ServerConfig, ServerState
    from flowcat.server._admission import Admission
    from flowcat.server._agents import Agent, Agents
    from flowcat.server._sip_server import serve_sip_config

    seen: list[Any] = []

    def app(call: Any) -> Any:
        seen.append(call)
        return EchoProcessor()

    agent = Agent("solo", app, frozenset(), Admission(capacity=1))
    state = ServerState(ServerConfig(agents=Agents([agent])))
    sip = SIPConfig(port=0, rtp_ports=(34400, 34500), default_agent="solo", headers=["X-Customer-Id"])
    server = await serve_sip_config(state, sip, host="127.0.0.1")
    peer = await Peer.open()
    try:
        first = Dialog(peer, server.port)
        first.send_invite(rtp_port=40010)
        (ok,) = await peer.expect(status(200))
        first.ack((ok.get("To") or "").split("tag=")[-1])
        assert agent.admission.active == 1 and state.admission.active == 1
        assert len(state.calls) == 1 and next(iter(state.records.values())).transport == "sip"
        second = Dialog(peer, server.port)
        second.send_invite(rtp_port=40020)
        (busy,) = await peer.expect(lambda m: m.status == 503 and m.call_id == second.call_id)
        assert busy.get("Retry-After")
        assert agent.admission.rejected == 1
        first.bye((ok.get("To") or "").split("tag=")[-1])
        await peer.expect(status(200, "BYE"))
        await asyncio.wait_for(server.wait_calls_ended(), 5)
        assert agent.admission.active == 0 and state.admission.active == 0 and not state.calls
        state.admission.draining = True  # a draining worker refuses new calls the same way
        third = Dialog(peer, server.port)
        third.send_invite(rtp_port=40030)
        (drained,) = await peer.expect(lambda m: m.status == 503 and m.call_id == third.call_id)
        assert drained.get("Retry-After") and state.admission.rejected == 2  # the agent-full one, this one
        assert seen[0].carrier == "sip" and seen[0].extra["dialled"] == "agent"
        assert seen[0].from_number == "+15551234" and seen[0].extra["agent"] == "solo"
    finally:
        peer.close()
        await server.stop()


async def test_the_registrar_of_the_sip_section_takes_its_credentials_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sipp as a digest registrar (verifyauth alice/s3cret): serve_sip_config registers with the
    password read from the variable ``password_env`` names, and un-registers on stop; an unset
    variable is a ConfigError naming the variable."""
    from flowcat.config import SIPConfig, SIPRegistrarConfig
    from flowcat.errors import ConfigError
    from flowcat.server import EchoProcessor, ServerConfig, ServerState
    from flowcat.server._admission import Admission
    from flowcat.server._agents import Agent, Agents
    from flowcat.server._sip_server import serve_sip_config
    from test_sip_uac_interop import Sipp, registrar

    agent = Agent("solo", lambda call: EchoProcessor(), frozenset(), Admission(capacity=2))
    state = ServerState(ServerConfig(agents=Agents([agent])))
    peer = await Sipp.start("-sf", str(registrar(tmp_path)))
    try:
        reg = SIPRegistrarConfig(address=f"127.0.0.1:{peer.port}", user="alice", password_env="TRUNK_PW_T")
        sip = SIPConfig(port=0, rtp_ports=(34500, 34600), default_agent="solo", registrar=reg)
        with pytest.raises(ConfigError, match="TRUNK_PW_T"):
            await serve_sip_config(state, sip, host="127.0.0.1")
        monkeypatch.setenv("TRUNK_PW_T", "s3cret")
        server = await serve_sip_config(state, sip, host="127.0.0.1")
        assert server.registrations and server.registrations[0].registered
        await server.stop()  # the un-REGISTER the scenario waits for
        rc, out = await peer.result()
        assert rc == 0, out
    finally:
        peer.kill()


async def test_a_wrong_registrar_password_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowcat.config import SIPConfig, SIPRegistrarConfig
    from flowcat.errors import ConfigError
    from flowcat.server import ServerConfig, ServerState
    from flowcat.server._sip_server import serve_sip_config
    from test_sip_uac_interop import Sipp, registrar

    peer = await Sipp.start("-sf", str(registrar(tmp_path)))
    try:
        monkeypatch.setenv("TRUNK_PW_T", "wrong-9")
        reg = SIPRegistrarConfig(address=f"127.0.0.1:{peer.port}", user="alice", password_env="TRUNK_PW_T")
        sip = SIPConfig(port=0, rtp_ports=(34500, 34600), registrar=reg)
        with pytest.raises(ConfigError, match="403") as info:
            await serve_sip_config(ServerState(ServerConfig()), sip, host="127.0.0.1")
        assert "wrong-9" not in str(info.value)
        rc, out = await peer.result()
        assert rc == 0, out
    finally:
        peer.kill()


def test_each_worker_takes_its_own_slice_of_the_rtp_range() -> None:
    from flowcat.errors import ConfigError
    from flowcat.server._sip_server import _slice

    assert _slice((10000, 20000), 0, 1) == (10000, 20000)
    assert [_slice((10000, 20000), i, 2) for i in range(2)] == [(10000, 14999), (15000, 20000)]
    parts = [_slice((10000, 10999), i, 3) for i in range(3)]
    assert parts == [(10000, 10331), (10332, 10663), (10664, 10999)]
    with pytest.raises(ConfigError):
        _slice((10000, 10003), 0, 4)
