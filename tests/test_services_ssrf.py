"""The SSRF guard (flowcat.services.OutboundGuard) and the clients that take URLs from
configuration: RemoteBrain, WebSocketBrain and MCPClient over streamable HTTP.

Names resolve through a fake resolver (the guard's ``resolve`` hook), so a name can point
at 127.0.0.1 where the tests' servers listen; nothing leaves the machine."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from _helpers import require
from flowcat.agent import BrainCall, CallStarted, EndCall, RemoteBrain, Say, Transition, WebSocketBrain
from flowcat.errors import ConfigError, OutboundAddressError
from flowcat.services import LLMService, OutboundGuard, address_refusal, close_http_sessions, http_session

pytestmark = pytest.mark.usefixtures("no_outside_connections")

ROOT = Path(__file__).resolve().parents[1]

REFUSED = [
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("127.0.0.1", "loopback"),
    ("127.9.9.9", "loopback"),
    ("::1", "loopback"),
    ("169.254.169.254", "link-local (cloud metadata)"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("100.64.0.1", "CGNAT (100.64.0.0/10)"),
    ("100.127.255.254", "CGNAT (100.64.0.0/10)"),
    ("fc00::1", "unique local (fc00::/7)"),
    ("fd12:3456::1", "unique local (fc00::/7)"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: judged by the IPv4 inside
    ("::ffff:169.254.169.254", "link-local (cloud metadata)"),
    ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ("192.0.2.1", "private"),  # documentation (Python's special-purpose registry)
    ("240.0.0.1", "private"),  # reserved
    ("198.18.0.1", "private"),  # benchmarking
    ("255.255.255.255", "private"),  # broadcast
]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_every_refused_range(address: str, why: str) -> None:
    assert address_refusal(address) == why
    guard = OutboundGuard()
    with pytest.raises(OutboundAddressError, match="refused") as info:
        guard.check_ip(address, "h.test")
    assert why in str(info.value) and not info.value.retryable
    OutboundGuard(True).check_ip(address, "h.test")  # allow_private=True: anything


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "100.63.255.255", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(address) is None
    OutboundGuard().check_ip(address, "h.test")


def test_allow_list_allows_only_its_networks() -> None:
    guard = OutboundGuard(["10.1.2.0/24", "127.0.0.1"])
    guard.check_ip("10.1.2.77", "h.test")
    guard.check_ip("127.0.0.1", "h.test")
    guard.check_ip("::ffff:10.1.2.3", "h.test")  # mapped form of an allowed address
    for refused in ("10.1.3.1", "127.0.0.2", "169.254.169.254"):
        with pytest.raises(OutboundAddressError):
            guard.check_ip(refused, "h.test")
    with pytest.raises(ConfigError, match="not an IP network"):
        OutboundGuard(["intranet"])


def test_check_url_literals_and_schemes() -> None:
    guard = OutboundGuard()
    guard.check_url("https://brain.example.com/x")  # a name: checked when it is resolved
    for url in ("http://169.254.169.254/latest/meta-data", "http://[::1]:8080/", "ws://127.0.0.1/x",
                "http://[::ffff:7f00:1]/", "http://0.0.0.0:80/"):
        with pytest.raises(OutboundAddressError):
            guard.check_url(url)
    for url in ("file:///etc/passwd", "gopher://h/", "http:///nohost"):
        with pytest.raises(ConfigError):
            guard.check_url(url)


def fake_dns(*answers: Sequence[str]) -> tuple[Any, list[str]]:
    """A resolver giving ``answers`` in turn (the last one again after that); records the names asked."""
    asked: list[str] = []
    seq = list(answers)

    async def resolve(host: str, port: int) -> Sequence[str]:
        asked.append(host)
        return seq.pop(0) if len(seq) > 1 else seq[0]

    return resolve, asked


async def test_name_resolving_to_private_is_refused_and_any_private_answer_refuses() -> None:
    resolve, asked = fake_dns(["10.0.0.5"])
    with pytest.raises(OutboundAddressError, match=r"'internal\.test'.*10\.0\.0\.5 is private"):
        await OutboundGuard(resolve=resolve).resolve("internal.test", 443)
    assert asked == ["internal.test"]
    mixed, _ = fake_dns(["93.184.216.34", "127.0.0.1"])  # the connector could fall back to the second
    with pytest.raises(OutboundAddressError, match="loopback"):
        await OutboundGuard(resolve=mixed).resolve("mixed.test", 443)
    public, _ = fake_dns(["93.184.216.34"])
    assert await OutboundGuard(resolve=public).resolve("ok.test", 443) == ["93.184.216.34"]


async def test_system_resolver_refuses_localhost() -> None:
    with pytest.raises(OutboundAddressError, match="loopback"):
        await OutboundGuard().resolve("localhost", 80)


# ------------------------------------------------------------ real connections


@asynccontextmanager
async def counting_server(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[tuple[int, list[str]]]:
    hits: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"system_prompt": "You help.", "node_id": "n1", "host": host})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        yield runner.addresses[0][1], hits
    finally:
        await runner.cleanup()


async def test_rebinding_cannot_move_the_connection() -> None:
    # The name first answers the allowed address (standing in for the public one: the
    # allow-list makes 127.0.0.1 the only reachable address), then an internal one where an
    # internal service listens on the same port. The check and the connection use one
    # answer: the first request reaches the allowed server; the next connection is vetted
    # again and refused; the internal service never sees a request.
    async with counting_server("127.0.0.1") as (port, allowed_hits):
        try:
            internal_cm = counting_server("127.0.0.2", port)
            internal = await internal_cm.__aenter__()
        except OSError:
            pytest.skip("cannot bind 127.0.0.2 here")
        try:
            _, internal_hits = internal
            resolve, asked = fake_dns(["127.0.0.1"], ["127.0.0.2"])
            guard = OutboundGuard(["127.0.0.1/32"], resolve=resolve)
            session = await http_session(guard)
            url = f"http://rebind.test:{port}/x"
            async with session.get(url, headers={"Connection": "close"}) as resp:
                assert (await resp.json())["host"] == "127.0.0.1"
            assert asked == ["rebind.test"]  # one lookup, used for the connection itself
            with pytest.raises(OutboundAddressError, match=r"127\.0\.0\.2 is loopback"):
                async with session.get(url):
                    pass
            assert allowed_hits == ["/x"] and internal_hits == []
            assert guard.refused == 1
        finally:
            await internal_cm.__aexit__(None, None, None)
            await close_http_sessions()


async def test_redirect_to_a_literal_private_address_is_refused() -> None:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    app = web.Application()
    app.router.add_get("/", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        resolve, _ = fake_dns(["127.0.0.1"])
        session = await http_session(OutboundGuard(["127.0.0.1"], resolve=resolve))
        with pytest.raises(OutboundAddressError, match="cloud metadata"):
            async with session.get(f"http://redir.test:{runner.addresses[0][1]}/"):
                pass
    finally:
        await runner.cleanup()
        await close_http_sessions()


class NoLLM(LLMService):
    async def run_inference(self, context: Any) -> AsyncIterator[Any]:  # pragma: no cover - not reached
        raise AssertionError("not used")
        yield


async def test_remote_brain_refuses_then_allowed_per_url_works() -> None:
    async with counting_server() as (port, hits):
        try:
            with pytest.raises(OutboundAddressError):
                RemoteBrain(f"http://127.0.0.1:{port}", NoLLM())  # a literal: refused when configured
            resolve, _ = fake_dns(["127.0.0.1"])
            refused = RemoteBrain(f"http://brain.test:{port}", NoLLM(), greet=False,
                                  allow_private=OutboundGuard(resolve=resolve))
            assert [a async for a in refused.handle(CallStarted(BrainCall("c1")))] == [Say(refused.fallback_text)]
            assert refused.failures == 1 and hits == []
            allowed = RemoteBrain(f"http://brain.test:{port}", NoLLM(), greet=False,
                                  allow_private=OutboundGuard(["127.0.0.1"], resolve=resolve))
            assert [a async for a in allowed.handle(CallStarted(BrainCall("c2")))] == [Transition("n1")]
            assert hits == ["/session"]
            flag = RemoteBrain(f"http://127.0.0.1:{port}", NoLLM(), greet=False, allow_private=True)
            assert [a async for a in flag.handle(CallStarted(BrainCall("c3")))] == [Transition("n1")]
        finally:
            await close_http_sessions()


def _ws_reference() -> Any:
    spec = importlib.util.spec_from_file_location("ws_brain_reference", ROOT / "examples/brains/ws_brain_reference.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


async def test_ws_brain_refuses_a_private_name_and_works_when_allowed() -> None:
    ref = _ws_reference()
    server = ref.ReferenceBrain(token="ws-ssrf-token")
    url = await server.start("127.0.0.1", 0)
    try:
        with pytest.raises(OutboundAddressError):
            WebSocketBrain(url, token="ws-ssrf-token")
        named = url.replace("127.0.0.1", "brain.test")
        resolve, _ = fake_dns(["127.0.0.1"])
        brain = WebSocketBrain(named, token="ws-ssrf-token", fallback_text="Fallback.",
                               allow_private=OutboundGuard(resolve=resolve))
        try:
            actions = [a async for a in brain.handle(CallStarted(BrainCall("c")))]
            assert actions == [EndCall("Fallback.", "brain_unavailable")]
            assert server.connections == 0
        finally:
            await brain.close()
        ok = WebSocketBrain(named, token="ws-ssrf-token", allow_private=OutboundGuard(["127.0.0.1"], resolve=resolve))
        try:
            actions = [a async for a in ok.handle(CallStarted(BrainCall("c2")))]
            assert actions and all(isinstance(a, Say) for a in actions)
            assert server.connections == 1
        finally:
            await ok.close()
    finally:
        await close_http_sessions()
        await server.close()


async def test_mcp_http_refused_then_pinned_and_allowed() -> None:
    require("mcp")
    from flowcat.services.mcp import MCPClient
    from test_services_mcp import http_server

    async with http_server() as url:
        with pytest.raises(OutboundAddressError):
            MCPClient(url)
        named = url.replace("127.0.0.1", "mcp.test")
        resolve, asked = fake_dns(["127.0.0.1"])
        refused = MCPClient(named, connect_timeout_secs=2.0, allow_private=OutboundGuard(resolve=resolve))
        with pytest.raises(OutboundAddressError, match=r"'mcp\.test' refused: 127\.0\.0\.1 is loopback"):
            await refused.start()  # not retried: the answer will not leave its range
        await refused.close()
        from mcp.client.session_group import StreamableHttpParameters

        # (the server's own DNS-rebinding protection wants its real Host)
        params = StreamableHttpParameters(url=named, headers={"Host": url.split("/")[2]})
        async with MCPClient(params, allow_private=OutboundGuard(["127.0.0.1"], resolve=resolve)) as client:
            assert await client.call_tool("add", {"a": 2, "b": 3}) == "5"
        assert set(asked) == {"mcp.test"}


def test_guarded_sessions_are_shared_by_equal_guards_and_closed() -> None:
    async def main() -> None:
        a = await http_session(OutboundGuard())
        b = await http_session(OutboundGuard())
        c = await http_session(OutboundGuard(["10.0.0.0/8"]))
        plain = await http_session(OutboundGuard(True))
        assert a is b and a is not c and plain is await http_session()
        assert isinstance(a, aiohttp.ClientSession)
        await close_http_sessions()
        assert a.closed and c.closed and plain.closed

    asyncio.run(main())


def test_socket_family_filter() -> None:
    async def main() -> None:
        resolve, _ = fake_dns(["93.184.216.34", "2606:4700:4700::1111"])
        resolver = OutboundGuard(resolve=resolve).aiohttp_resolver()
        v4 = await resolver.resolve("dual.test", 443, socket.AF_INET)
        assert [r["host"] for r in v4] == ["93.184.216.34"]
        both = await resolver.resolve("dual.test", 443, socket.AF_UNSPEC)
        assert [r["family"] for r in both] == [socket.AF_INET, socket.AF_INET6]

    asyncio.run(main())
