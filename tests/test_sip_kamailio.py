"""flowcat behind Kamailio (Debian ``kamailio``), with the shipped configs of examples/kamailio/.

* registrar + record-routing proxy (``registrar-proxy.cfg``): flowcat REGISTERs with digest
  auth; sipp calls the registered user through Kamailio; flowcat hangs up and its BYE takes
  the Record-Route path (Kamailio logs it as loose-routed, coming from flowcat's port);
* dispatcher (``dispatcher.cfg``) over two flowcat servers: calls spread round robin; one
  server drained (OPTIONS and INVITE answered 503) is taken out of rotation by Kamailio's
  OPTIONS probing while its call in progress finishes; a call that reaches a draining
  server before the probe noticed is rerouted (failure_route), not dropped.

Kamailio runs in the foreground on 127.0.0.1 (``-DD -E``), its log read line by line;
every wait is bounded; it is stopped with SIGTERM to its own process group (SIGKILL after
5 s). Without kamailio or sipp the module skips locally and fails under CI=true (.ci/run
installs both).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from _helpers import missing
from _sip_peer import App
from flowcat.errors import SIPAuthError
from flowcat.transports.sip import SIPServer, Timers, parse_name_addr, parse_uri

KAMAILIO = shutil.which("kamailio") or ("/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None)
SIPP = shutil.which("sipp")
if KAMAILIO is None:
    missing("kamailio (Debian package kamailio: apt-get install -y --no-install-recommends kamailio)")
if SIPP is None:
    missing("sipp (Debian package sip-tester: apt-get install -y sip-tester)")

from test_sip_interop import free_port  # noqa: E402

pytestmark = [pytest.mark.usefixtures("no_outside_connections"), pytest.mark.timeout(120)]

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples" / "kamailio"
SCEN = Path(__file__).parent / "fixtures" / "sip"
RTP = (34800, 35000)
WAIT = 15.0


class Kamailio:
    """One foreground Kamailio with its log collected (see the module docstring)."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc, self.port = proc, port
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, config: str, tmp: Path, *, tcp: bool = False, **defines: str) -> Kamailio:
        port = free_port()
        args = [str(KAMAILIO), "-f", str(EXAMPLES / config), "-DD", "-E", "-m", "32", "-M", "4"]
        args += ["-Y", str(tmp), "-P", str(tmp / "kamailio.pid"), "-A", f"LISTEN=udp:127.0.0.1:{port}"]
        if tcp:
            args += ["-A", f"LISTEN_TCP=tcp:127.0.0.1:{port}"]
        for name, value in defines.items():
            args += ["-A", f"{name}={value}"]
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, start_new_session=True
        )
        kam = cls(proc, port)
        await kam.wait_for(r"probe_max_receive_buffer|main\(\): processes")
        await kam.listening()
        return kam

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip())
            self._changed.set()

    async def wait_for(self, pattern: str, count: int = 1, timeout: float = WAIT) -> list[str]:
        rx = re.compile(pattern)

        async def wait() -> list[str]:
            while True:
                got = [line for line in self.lines if rx.search(line)]
                if len(got) >= count:
                    return got
                if self.proc.returncode is not None or self._reader.done():
                    raise AssertionError("kamailio exited:\n" + "\n".join(self.lines[-30:]))
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"no {pattern!r} in kamailio's log:\n" + "\n".join(self.lines[-30:])
            ) from None

    def logged(self, pattern: str) -> list[str]:
        rx = re.compile(pattern)
        return [line for line in self.lines if rx.search(line)]

    async def listening(self) -> None:
        """Bounded wait until the UDP port is bound (/proc/net/udp), without sending to it."""
        from test_sip_tcp_interop import tcp_listening  # same table layout

        await tcp_listening(self.port, table="/proc/net/udp", state="07")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                os.killpg(self.proc.pid, signal.SIGKILL)
                await asyncio.wait_for(self.proc.wait(), 5)
        await asyncio.wait_for(self._reader, 5)


async def run_sipp(
    kam: Kamailio, tmp: Path, *, calls: int = 1, hangup: str, pause_ms: int = 500
) -> tuple[int, str]:
    """sipp calls ``agent`` through Kamailio; ``hangup``: ``caller`` (sipp sends BYE after
    ``pause_ms``) or ``callee`` (sipp waits for flowcat's BYE)."""
    text = (SCEN / "uac_via_proxy.xml").read_text().replace("@PAUSE_MS@", str(pause_ms))
    cut = "CALLEE-BYE" if hangup == "caller" else "CALLER-BYE"
    text = re.sub(rf"<!-- {cut} -->.*?<!-- /{cut} -->", "", text, flags=re.S)
    scenario = tmp / f"uac_via_proxy_{hangup}_{free_port()}.xml"
    scenario.write_text(text)
    proc = await asyncio.create_subprocess_exec(
        str(SIPP), "-sf", str(scenario), f"127.0.0.1:{kam.port}", "-s", "agent",
        "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(free_port()), "-mp", str(free_port() & ~1),
        "-m", str(calls), "-l", str(calls), "-r", "20", "-timeout", "40s", "-timeout_error", "-nostdin",
        "-trace_err", "-error_file", str(scenario.with_suffix(".err")),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 50)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    errors = scenario.with_suffix(".err")
    text = out.decode(errors="replace")[-1200:]
    if proc.returncode and errors.exists():  # what went wrong, for the assertion message
        text += "\nsipp errors:\n" + errors.read_text(errors="replace")[-2500:]
    return proc.returncode or 0, text


async def flowcat(app: App, *, tcp: bool = False) -> SIPServer:
    srv = SIPServer(app, port=0, rtp_ports=RTP, timers=Timers(t1=0.1), tcp=tcp)
    await srv.start()
    return srv


@pytest.fixture
async def servers() -> AsyncIterator[list[SIPServer]]:
    made: list[SIPServer] = []
    yield made
    for srv in made:
        await srv.stop()


# ---------------------------------------------------------------- registrar + proxy


async def test_flowcat_registers_to_kamailio_and_its_bye_follows_the_record_route(
    tmp_path: Path, servers: list[SIPServer]
) -> None:
    kam = await Kamailio.start("registrar-proxy.cfg", tmp_path, AGENT_PASSWORD='"s3cret"')
    try:
        app = App()
        srv = await flowcat(app)
        servers.append(srv)
        with pytest.raises(SIPAuthError):
            await srv.register(("127.0.0.1", kam.port), "agent", "wrong-password")
        reg = await srv.register(("127.0.0.1", kam.port), "agent", "s3cret")
        assert reg.registered
        await kam.wait_for(r"FLOWCAT REGISTER .* from 127\.0\.0\.1:" + str(srv.port), count=3)

        call = asyncio.ensure_future(run_sipp(kam, tmp_path, hangup="callee"))
        try:
            await asyncio.wait_for(app.called.wait(), WAIT)
            inbound = next(iter(srv.calls.values()))
            await asyncio.wait_for(inbound.confirmed.wait(), WAIT)  # sipp's ACK came via Kamailio
            route = parse_uri(parse_name_addr(inbound.dialog.route_set[0]).uri)
            assert (route.host, route.port) == ("127.0.0.1", kam.port) and "lr" in route.params
            _, task, _ = app.calls[0]
            await task.stop_when_done()  # flowcat hangs up
            rc, out = await call
        finally:
            if not call.done():
                call.cancel()
        assert rc == 0, out  # sipp got flowcat's BYE (from Kamailio) and answered it
        await asyncio.wait_for(srv.wait_calls_ended(), WAIT)
        assert inbound.bye_sent and not inbound.bye_received
        cid = re.escape(inbound.call_id)
        assert kam.logged(rf"FLOWCAT INVITE {cid} from 127\.0\.0\.1:(?!{srv.port}\b)")  # sipp -> Kamailio
        assert kam.logged(rf"FLOWCAT BYE {cid} from 127\.0\.0\.1:{srv.port} ")  # flowcat -> Kamailio
        assert kam.logged(rf"FLOWCAT loose-routed BYE {cid} ")  # ... along the Record-Route
        await srv.stop()  # un-REGISTER (Expires: 0), answered by Kamailio
        assert not reg.registered
        await kam.wait_for(r"FLOWCAT REGISTER .* from 127\.0\.0\.1:" + str(srv.port), count=6)
    finally:
        for srv in servers:
            await srv.stop()  # before Kamailio goes: no un-REGISTER left waiting
        await kam.stop()


# ---------------------------------------------------------------- dispatcher


def _options_counter(srv: SIPServer) -> list[int]:
    seen = [0]
    original = srv._options

    def count(txn):  # type: ignore[no-untyped-def]
        seen[0] += 1
        original(txn)

    srv._options = count  # type: ignore[method-assign]
    return seen


async def _dispatcher(
    tmp: Path, servers: list[SIPServer], ping: int, *, tcp: bool = False
) -> tuple[Kamailio, list[App]]:
    apps = [App(), App()]
    for app in apps:
        servers.append(await flowcat(app, tcp=tcp))
    ds_list = tmp / "flowcat.list"
    param = ";transport=tcp" if tcp else ""
    ds_list.write_text("".join(f"1 sip:127.0.0.1:{srv.port}{param}\n" for srv in servers))
    kam = await Kamailio.start(
        "dispatcher.cfg", tmp, tcp=tcp, DS_LIST=f'"{ds_list}"', PING_INTERVAL=str(ping)
    )
    return kam, apps


async def test_dispatcher_spreads_calls_and_drains_one_flowcat_without_dropping_a_call(
    tmp_path: Path, servers: list[SIPServer]
) -> None:
    kam, apps = await _dispatcher(tmp_path, servers, ping=1)
    a, b = servers
    pings = [_options_counter(a), _options_counter(b)]
    try:
        # both up (Kamailio's OPTIONS answered 200 with X-Flowcat-Load), then 4 calls: 2 each
        async def pinged() -> None:
            while pings[0][0] < 1 or pings[1][0] < 1:  # noqa: ASYNC110 - bounded by wait_for
                await asyncio.sleep(0.05)

        await asyncio.wait_for(pinged(), WAIT)
        rc, out = await run_sipp(kam, tmp_path, calls=4, hangup="caller", pause_ms=200)
        assert rc == 0, out
        assert (a.calls_answered, b.calls_answered) == (2, 2)

        # two long calls, one on each; drain b while they are up
        long = asyncio.ensure_future(run_sipp(kam, tmp_path, calls=2, hangup="caller", pause_ms=6000))
        try:

            async def both_up() -> None:
                while a.active_calls < 1 or b.active_calls < 1:  # noqa: ASYNC110 - bounded by wait_for
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(both_up(), WAIT)
            on_b = next(iter(b.calls.values()))
            b.drain()
            await kam.wait_for(rf"FLOWCAT dst-down sip:127\.0\.0\.1:{b.port}\b")  # OPTIONS got 503
            rc, out = await run_sipp(kam, tmp_path, calls=3, hangup="caller", pause_ms=200)
            assert rc == 0, out  # every new call answered ...
            assert (a.calls_answered, b.calls_answered) == (6, 3)  # ... all by a
            assert b.active_calls == 1 and not on_b.ended.is_set()  # b's call still up
            rc, out = await long
        finally:
            if not long.done():
                long.cancel()
        assert rc == 0, out  # both long calls ended normally, b's included
        await asyncio.wait_for(b.wait_calls_ended(), WAIT)
        assert on_b.bye_received and b.calls_refused == 0
    finally:
        await kam.stop()


async def test_dispatcher_reaches_flowcat_over_tcp_and_flowcats_bye_reuses_the_connection(
    tmp_path: Path, servers: list[SIPServer]
) -> None:
    """The list says ``;transport=tcp``: Kamailio (the caller's leg is UDP) opens one TCP
    connection to each flowcat; INVITE, ACK and OPTIONS come on it; each flowcat hangs up and
    its BYE — routed by Kamailio's double Record-Route to ``;transport=tcp`` — goes back on
    that same connection (found by Kamailio's Via), not a new one."""
    kam, apps = await _dispatcher(tmp_path, servers, ping=1, tcp=True)
    seen: list[list[str]] = [[], []]
    for srv, log in zip(servers, seen, strict=True):
        original = srv.endpoint._request

        def spy(msg, peer, conn=None, original=original, log=log):  # type: ignore[no-untyped-def]
            log.append(f"{msg.method} {conn.proto if conn is not None else 'UDP'}")
            original(msg, peer, conn)

        srv.endpoint._request = spy  # type: ignore[method-assign]
    try:
        call = asyncio.ensure_future(run_sipp(kam, tmp_path, calls=2, hangup="callee"))
        try:

            async def both_up() -> None:
                def up(srv: SIPServer) -> bool:
                    return bool(srv.calls) and all(c.confirmed.is_set() for c in srv.calls.values())

                while not all(up(srv) for srv in servers):  # noqa: ASYNC110 - bounded by wait_for
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(both_up(), WAIT)
            for app in apps:
                await app.calls[0][1].stop_when_done()  # each flowcat hangs up
            rc, out = await call
        finally:
            if not call.done():
                call.cancel()
        assert rc == 0, out  # sipp got both BYEs through Kamailio
        for srv, log in zip(servers, seen, strict=True):
            await asyncio.wait_for(srv.wait_calls_ended(), WAIT)
            assert srv.calls_answered == 1
            assert [e for e in log if not e.startswith("OPTIONS")] == ["INVITE TCP", "ACK TCP"]
            assert all(e.endswith("TCP") for e in log)
            streams = srv.endpoint.streams
            assert streams is not None and (streams.accepted, streams.opened) == (1, 0)
            assert kam.logged(r"FLOWCAT BYE .* from 127\.0\.0\.1:\d+ to sip:sipp@")  # via Kamailio
    finally:
        await kam.stop()


async def test_a_call_reaching_a_draining_flowcat_before_the_probe_is_rerouted(
    tmp_path: Path, servers: list[SIPServer]
) -> None:
    kam, _ = await _dispatcher(tmp_path, servers, ping=60)  # no probe during the test
    a, b = servers
    try:
        b.drain()
        rc, out = await run_sipp(kam, tmp_path, calls=4, hangup="caller", pause_ms=200)
        assert rc == 0, out  # no call lost
        assert (a.calls_answered, b.calls_answered) == (4, 0)
        assert b.calls_refused >= 1  # b said 503 ...
        assert kam.logged(r"FLOWCAT rerouted ")  # ... and Kamailio tried a instead
    finally:
        await kam.stop()


async def test_sigterm_drains_flowcat_sip_answer_behind_the_dispatcher(tmp_path: Path) -> None:
    """Two ``flowcat sip answer`` processes behind the dispatcher; SIGTERM to one while it has
    a call: Kamailio's OPTIONS get 503 (dst-down), new calls all go to the other, the call
    in progress ends normally, then the drained process exits 0."""
    ports = [free_port(), free_port()]
    procs = []
    for i, port in enumerate(ports):
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "flowcat.cli",
                "sip",
                "answer",
                "--port",
                str(port),
                "--echo",
                "--rtp-ports",
                f"{35000 + 100 * i}-{35100 + 100 * i}",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )  # fmt: skip
        )
    kam: Kamailio | None = None
    try:
        for proc, port in zip(procs, ports, strict=True):
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert f"listening on 127.0.0.1:{port}" in line.decode()
        ds_list = tmp_path / "flowcat.list"
        ds_list.write_text("".join(f"1 sip:127.0.0.1:{port}\n" for port in ports))
        kam = await Kamailio.start("dispatcher.cfg", tmp_path, DS_LIST=f'"{ds_list}"', PING_INTERVAL="1")
        long = asyncio.ensure_future(run_sipp(kam, tmp_path, calls=2, hangup="caller", pause_ms=5000))
        try:
            await kam.wait_for(r"FLOWCAT ACK ", count=2)  # both calls answered, one on each
            procs[1].send_signal(signal.SIGTERM)
            await kam.wait_for(rf"FLOWCAT dst-down sip:127\.0\.0\.1:{ports[1]}\b")
            rc, out = await run_sipp(kam, tmp_path, calls=2, hangup="caller", pause_ms=200)
            assert rc == 0, out
            rc, out = await long
        finally:
            if not long.done():
                long.cancel()
        assert rc == 0, out
        dispatched = kam.logged(r"FLOWCAT dispatched ")
        assert len(dispatched) == 4
        assert len([d for d in dispatched if d.endswith(f"sip:127.0.0.1:{ports[1]}")]) == 1
        out_b, _ = await asyncio.wait_for(procs[1].communicate(), 20)
        assert procs[1].returncode == 0
        assert "draining: 1 call(s) in progress" in out_b.decode() and "1 call(s) answered" in out_b.decode()
        procs[0].send_signal(signal.SIGTERM)
        out_a, _ = await asyncio.wait_for(procs[0].communicate(), 20)
        assert procs[0].returncode == 0 and "3 call(s) answered" in out_a.decode()
    finally:
        if kam is not None:
            await kam.stop()
        for proc in procs:
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
