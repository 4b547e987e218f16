"""Client side of ``flowcat bench gc`` (its own process): holds N raw-PCM calls open.

Each call sends one 20 ms frame (8 kHz PCM16) per second, staggered, and counts the
echoes. Control on stdin, one command a line: ``CHURN k`` ends the k oldest calls
and opens k new ones (prints ``CHURNED``), ``END`` ends every call (prints ``DONE``
and exits). ``READY n`` is printed once the first N calls are connected.
Invoke as ``python -m flowcat.bench._gc_client '<json config>'``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import deque
from typing import Any

import picows

_FRAME = bytes(range(0, 256, 2)) * 2 + b"\x10\x20" * 32  # 320 bytes: 20 ms at 8 kHz
_BATCH = 50


class _Call(picows.WSListener):
    def __init__(self) -> None:
        super().__init__()
        self.t: Any = None
        self.echoes = 0
        self.gone = False

    def on_ws_connected(self, transport: Any) -> None:
        self.t = transport

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        if frame.msg_type == picows.WSMsgType.CLOSE:
            transport.disconnect()
        else:
            self.echoes += 1

    def on_ws_disconnected(self, transport: Any) -> None:
        self.gone = True

    def end(self) -> None:
        if not self.gone:
            self.t.send_close(picows.WSCloseCode.OK)
            self.t.disconnect()


async def _open(url: str, n: int) -> list[_Call]:
    out: list[_Call] = []
    for i in range(0, n, _BATCH):
        pairs = await asyncio.gather(*(picows.ws_connect(_Call, url) for _ in range(min(_BATCH, n - i))))
        out.extend(lis for _, lis in pairs)  # type: ignore[misc]
    return out


async def _send(calls: deque[_Call]) -> None:
    """Every 20 ms, one frame from each of the next 1/50 of the calls (1 frame/s a call)."""
    i = 0
    while True:
        await asyncio.sleep(0.02)
        n = len(calls)
        for _ in range(max(1, n // 50)):
            if not n:
                break
            call = calls[i % n]
            i += 1
            if not call.gone:
                call.t.send(picows.WSMsgType.BINARY, _FRAME)


async def main(cfg: dict[str, Any]) -> None:
    url = cfg["url"]
    loop = asyncio.get_running_loop()
    calls: deque[_Call] = deque(await _open(url, cfg["calls"]))
    print("READY", len(calls), flush=True)
    sender = loop.create_task(_send(calls))
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "END":
            break
        if line[0] == "CHURN":
            left = int(line[1])
            while left > 0:
                k = min(_BATCH, left)
                for _ in range(k):
                    calls.popleft().end()
                calls.extend(await _open(url, k))
                left -= k
                await asyncio.sleep(0.05)
            print("CHURNED", flush=True)
    sender.cancel()
    echoes = sum(c.echoes for c in calls)
    for call in calls:
        call.end()
    await asyncio.sleep(0.5)
    print("DONE", json.dumps({"echoes": echoes}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
