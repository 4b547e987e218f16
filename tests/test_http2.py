"""H2Stream (flowcat.services._http2): one bidirectional HTTP/2 request against a local
cleartext HTTP/2 server (tests/_h2_server.py): bodies larger than the flow-control windows both
ways, an error status with its body, connection failures and timeouts, the missing extra, and
no header value (a session token) in the DEBUG logs of the HTTP/2 stack.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import pytest
from hyperframe.frame import GoAwayFrame

from _fake_nova_sonic import AKID, FakeNovaSonic
from _h2_server import H2Peer, H2Server
from _helpers import self_signed_cert
from flowcat.errors import MissingExtraError, ServiceConnectionError, ServiceTimeout
from flowcat.services import _http2
from flowcat.services._http2 import H2Stream
from flowcat.services.realtime import AWSNovaSonicLLMService
from flowcat.testing import run_test

pytestmark = pytest.mark.usefixtures("no_outside_connections")


class Echo(H2Server):
    """Answers 200 and echoes the body back; ``status`` other than 200 answers that with a body;
    ``silent`` accepts the request and never answers."""

    def __init__(self, status: int = 200, silent: bool = False) -> None:
        super().__init__()
        self.status = status
        self.silent = silent
        self.received = 0
        self.requests: list[dict[str, str]] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def on_request(self, peer: H2Peer, headers: dict[str, str]) -> None:
        self.requests.append(headers)
        if self.silent:
            return
        if self.status != 200:
            await peer.respond(self.status, [("content-type", "application/json")], b'{"message":"busy"}')
            return
        await peer.respond(200)

    async def on_data(self, peer: H2Peer, data: bytes) -> None:
        self.received += len(data)
        task = asyncio.get_running_loop().create_task(peer.send(data))  # never block the reader
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def on_end(self, peer: H2Peer, why: str) -> None:
        if why == "end of the request" and not peer.ended:
            await asyncio.gather(*self.tasks)
            await peer.send(b"", end=True)


async def _echo(**kw: Any) -> Echo:
    server = Echo(**kw)
    await server.start_h2()
    return server


async def test_bodies_larger_than_the_windows_go_both_ways() -> None:
    server = await _echo()
    try:
        stream = await H2Stream.open(
            server.h2_url + "/echo?x=1", [("content-type", "application/octet-stream")]
        )
        assert stream.status == 200
        body = bytes(range(256)) * 1200  # 300 KB: over the 64 KB initial windows, in 16 KB frames
        sender = asyncio.get_running_loop().create_task(stream.send(body))
        got = bytearray()
        while len(got) < len(body):
            chunk = await asyncio.wait_for(stream.receive(), 5)
            assert chunk is not None, stream.error
            got += chunk
        await sender
        await stream.end()
        assert await asyncio.wait_for(stream.receive(), 5) is None and stream.error == ""
        assert bytes(got) == body and server.received == len(body)
        (req,) = server.requests
        assert (req[":method"], req[":scheme"], req[":path"]) == ("POST", "http", "/echo?x=1")
        assert req[":authority"] == server.h2_url.removeprefix("http://")
        await stream.close()
        with pytest.raises(ConnectionError):
            await stream.send(b"more")
    finally:
        await server.stop_h2()


async def test_an_error_status_keeps_its_body() -> None:
    server = await _echo(status=503)
    try:
        stream = await H2Stream.open(server.h2_url + "/x", [])
        assert stream.status == 503 and stream.headers["content-type"] == "application/json"
        assert await stream.receive() == b'{"message":"busy"}'
        assert await stream.receive() is None
        await stream.close()
    finally:
        await server.stop_h2()


async def test_refused_and_silent_servers() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens there once closed
    with pytest.raises(ServiceConnectionError, match="cannot connect"):
        await H2Stream.open(f"http://127.0.0.1:{port}/", [], timeout=2)
    server = await _echo(silent=True)
    try:
        with pytest.raises(ServiceTimeout, match="no answer"):
            await H2Stream.open(server.h2_url + "/", [], timeout=0.2)
    finally:
        await server.stop_h2()


async def test_a_goaway_or_a_reset_ends_the_stream() -> None:
    server = await _echo()
    try:
        stream = await H2Stream.open(server.h2_url + "/", [])
        (peer,) = server.peers
        peer.writer.write(GoAwayFrame(0, last_stream_id=stream.stream_id, error_code=0).serialize())
        assert await asyncio.wait_for(stream.receive(), 5) is None
        assert stream.error == "GOAWAY (error code 0)"
        await stream.close()

        stream = await H2Stream.open(server.h2_url + "/", [])
        peer = server.peers[-1]
        peer.h2.reset_stream(stream.stream_id, error_code=2)  # INTERNAL_ERROR
        peer.flush()
        assert await asyncio.wait_for(stream.receive(), 5) is None
        assert stream.error == "stream reset (error code 2)"
        with pytest.raises(ConnectionError):
            await stream.send(b"too late")
        await stream.close()
    finally:
        await server.stop_h2()


async def test_tls_with_alpn_h2_and_a_server_without_it(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))
    for alpn in (["h2"], ["http/1.1"]):
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(str(cert), str(key))
        tls.set_alpn_protocols(alpn)
        server = Echo()
        await server.start_h2(tls)
        try:
            if alpn == ["h2"]:
                stream = await H2Stream.open(server.h2_url + "/tls", [], ssl_context=trust)
                await stream.send(b"over tls")
                assert await asyncio.wait_for(stream.receive(), 5) == b"over tls"
                assert server.requests[0][":scheme"] == "https"
                await stream.close()
            else:
                with pytest.raises(ServiceConnectionError, match="does not speak HTTP/2"):
                    await H2Stream.open(server.h2_url + "/tls", [], ssl_context=trust)
        finally:
            await server.stop_h2()
    server = Echo()
    await server.start_h2(tls)
    try:  # the system's CAs do not know the self-signed certificate
        with pytest.raises(ServiceConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await H2Stream.open(server.h2_url + "/tls", [])
    finally:
        await server.stop_h2()


async def test_the_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "h2.connection", None)  # import fails
    with pytest.raises(MissingExtraError, match=r"flowcat\[aws\]"):
        await H2Stream.open("http://127.0.0.1:9/", [])


async def test_a_session_token_never_reaches_the_debug_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hpack logs each header it codes at DEBUG: the stream keeps its logger at WARNING (unless
    the application set a level), so the token does not reach a DEBUG log."""
    monkeypatch.setattr(_http2, "_hpack_quiet", False)
    monkeypatch.setattr(logging.getLogger(), "level", logging.DEBUG)
    logging.getLogger("hpack").setLevel(logging.NOTSET)
    token = "FwoGZXIvYXdzEXAMPLE-session-token-SECRET"
    fake = FakeNovaSonic()
    await fake.start()
    caplog.set_level(logging.DEBUG)
    try:
        svc = AWSNovaSonicLLMService(
            aws_access_key=AKID,
            aws_secret_key=fake.api_key,
            aws_session_token=token,
            endpoint_url=fake.url,
            connect_timeout_secs=3.0,
        )
        await run_test(svc, frames_to_send=[], timeout=10)  # connect, configure, end the session
        (conn,) = fake.connections
        assert conn.headers["x-amz-security-token"] == token and fake.auth_failures == 0  # signed and sent
        assert conn.types()[0] == "sessionStart" and conn.types()[-1] == "sessionEnd"
    finally:
        await fake.close()
    assert token not in caplog.text
    assert logging.getLogger("hpack").level == logging.WARNING
