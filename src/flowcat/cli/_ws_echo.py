"""``flowcat ws-echo``: check the WebSocket transport end to end with a PCM echo.

* ``--loopback``: start a real server on 127.0.0.1 (ephemeral port) running
  ``input → echo → output`` per call, connect a real client, send PCM frames of
  different sizes and check the echo byte for byte.
* ``--connect ws://…``: send the same frames to a live echo peer and check.
* ``--serve HOST:PORT``: run the echo server until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

_SIZES = (640, 100, 540, 1280, 2, 318, 3200, 320, 4000, 2000, 2320)  # 14720 bytes: 23 x 20 ms at 16 kHz
_RATE = 16000


def register(sub: Any) -> None:
    """Add the ``ws-echo`` subcommand."""
    p = sub.add_parser("ws-echo", help="WebSocket PCM echo check (loopback server+client, or a live peer)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--loopback", action="store_true", help="server and client on 127.0.0.1")
    mode.add_argument("--connect", metavar="URL", help="echo peer to test (ws://host:port/path)")
    mode.add_argument("--serve", metavar="HOST:PORT", help="run the echo server")
    p.add_argument("--rate", type=int, default=_RATE, help="PCM sample rate (Hz), default 16000")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the echo")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the chosen mode; 0 on success, 1 on failure."""
    _use_uvloop()
    if args.serve:
        host, _, port = args.serve.rpartition(":")
        try:
            asyncio.run(_serve(host or "127.0.0.1", int(port), args.rate))
        except KeyboardInterrupt:
            pass
        return 0
    return asyncio.run(_check(args))


def _use_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass


def _frames() -> list[bytes]:
    return [bytes((i * 31 + j * 7) & 0xFF for j in range(size)) for i, size in enumerate(_SIZES)]


def _server(rate: int) -> Any:
    from ..frames import Frame, InputAudioRawFrame, OutputAudioRawFrame
    from ..runtime import FrameDirection, FrameProcessor, Pipeline, PipelineParams, PipelineTask
    from ..transports import WebsocketParams, WebsocketServerTransport, WebsocketTransport

    class Echo(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, InputAudioRawFrame):
                await self.push_frame(OutputAudioRawFrame(audio=frame.audio, sample_rate=frame.sample_rate))
            else:
                await self.push_frame(frame, direction)

    def factory(transport: WebsocketTransport, _request: Any) -> PipelineTask:
        return PipelineTask(
            Pipeline([transport.input(), Echo(), transport.output()]),
            params=PipelineParams(audio_in_sample_rate=rate, audio_out_sample_rate=rate),
        )

    return WebsocketServerTransport(factory, params=WebsocketParams(audio_in_warn_secs=None))


async def _serve(host: str, port: int, rate: int) -> None:
    server = _server(rate)
    bound = await server.start(host, port)
    print(f"flowcat ws-echo: serving raw PCM16 echo at ws://{host}:{bound}/ws ({rate} Hz)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


async def _check(args: argparse.Namespace) -> int:
    server = None
    url = args.connect
    if args.loopback:
        server = _server(args.rate)
        port = await server.start("127.0.0.1", 0)
        url = f"ws://127.0.0.1:{port}/ws"
    try:
        ok, detail = await _exchange(url, args.timeout)
    finally:
        if server is not None:
            await server.stop()
    print(f"flowcat ws-echo {url}: {'OK' if ok else 'FAILED'} — {detail}", flush=True)
    return 0 if ok else 1


async def _exchange(url: str, timeout: float) -> tuple[bool, str]:
    import aiohttp

    frames = _frames()
    sent = b"".join(frames)
    got = bytearray()
    messages = 0
    t0 = time.perf_counter()
    first = last = 0.0
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(url, compress=0) as ws:
            for f in frames:
                await ws.send_bytes(f)
            async with asyncio.timeout(timeout):
                while len(got) < len(sent):
                    msg = await ws.receive()
                    if msg.type is not aiohttp.WSMsgType.BINARY:
                        return False, f"unexpected {msg.type.name} after {len(got)} of {len(sent)} bytes"
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    got += msg.data
                    messages += 1
    except TimeoutError:
        return False, f"timed out with {len(got)} of {len(sent)} bytes echoed"
    except aiohttp.ClientError as exc:
        return False, f"connection failed: {exc}"
    if bytes(got) != sent:
        diff = next(
            (i for i, (a, b) in enumerate(zip(got, sent, strict=False)) if a != b), min(len(got), len(sent))
        )
        return False, f"echo differs at byte {diff} ({len(got)} vs {len(sent)} bytes)"
    return True, (
        f"{len(frames)} frames ({min(_SIZES)}-{max(_SIZES)} bytes) sent, {len(sent)} bytes echoed "
        f"byte-for-byte in {messages} messages; first echo after {(first - t0) * 1000:.1f} ms, "
        f"echo spread {(last - first) * 1000:.0f} ms (paced at real time)"
    )
