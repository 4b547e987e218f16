"""Callers of ``flowcat bench soak`` (their own process): calls of random length, back to back.

``python -m flowcat.bench._soak_client '<json config>'``. Two kinds of call, each over a raw-PCM
WebSocket (``/ws?sample_rate=8000``: 20 ms frames of 8 kHz PCM16, 320 bytes):

* **echo** (``echo_url``, ``echo_calls`` slots): ``pps`` frames a second, each carrying
  ``conn u32, seq u32, t_send_ns i64`` in its first 16 bytes; the round trip is measured
  when the echo with that header comes back;
* **agent** (``agent_url``, ``agent_calls`` slots): real-time audio, 50 frames a second:
  silence, and every ``turn_every`` s a committed speech fixture; a turn is answered when
  audio comes back within ``answer_secs`` of the end of the speech;
* **idle agent** (``agent_url``, ``idle_calls`` slots): a live agent call (its pipeline, VAD,
  STT connection, context) that sends one 20 ms frame of silence a second: holds every object
  of an agent call for a fraction of the CPU, so that hundreds fit on a small machine.

Each slot runs one call after another: a call lasts a random ``min_call``..``max_call``
seconds, then the slot waits 0..``gap`` s and dials again, so the number of live calls stays
near the slot count while calls arrive and end continuously. Phases, driven over stdin/stdout:
the warm-up (``warmup`` s of calls) ends every call and prints ``WARMED``; on ``GO`` the soak
runs ``soak`` s and prints ``WINDOW <json>`` every ``window`` s; then every call ends and
``DRAINED <json>`` is printed; the process exits on ``QUIT`` (or end of input).
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
import sys
import time
from array import array
from typing import Any

import picows

from ..audio import ulaw_to_pcm16

HDR = struct.Struct("<IIq")
FRAME = 320  # 20 ms of 8 kHz PCM16
SILENCE = b"\x00" * FRAME
_TICK = 0.005


class Stats:
    """Counters and round trips of one window."""

    def __init__(self) -> None:
        self.rtt_ns = array("q")
        self.sent = 0
        self.echoes = 0
        self.started = {"echo": 0, "agent": 0, "idle": 0}
        self.ended = {"echo": 0, "agent": 0, "idle": 0}
        self.failed = {"echo": 0, "agent": 0, "idle": 0}
        self.turns = 0
        self.answered = 0

    def as_dict(self) -> dict[str, Any]:
        rtt = sorted(self.rtt_ns)
        out: dict[str, Any] = {
            "sent": self.sent,
            "echoes": self.echoes,
            "started": self.started,
            "ended": self.ended,
            "failed": self.failed,
            "turns": self.turns,
            "answered": self.answered,
        }
        for name, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999)):
            out[f"rtt_{name}_ms"] = round(rtt[min(len(rtt) - 1, int(q * len(rtt)))] / 1e6, 3) if rtt else None
        out["rtt_max_ms"] = round(rtt[-1] / 1e6, 3) if rtt else None
        return out


class _Call(picows.WSListener):
    def __init__(self, client: Client, kind: str, conn: int) -> None:
        super().__init__()
        self.client = client
        self.kind = kind
        self.conn = conn
        self.t: Any = None
        self.seq = 0
        self.gone = asyncio.get_running_loop().create_future()
        self.heard = 0  # agent: audio frames received

    def on_ws_connected(self, transport: Any) -> None:
        self.t = transport

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        if frame.msg_type == picows.WSMsgType.CLOSE:
            transport.disconnect()
            return
        if frame.msg_type != picows.WSMsgType.BINARY:
            return
        if self.kind != "echo":
            self.heard += 1
            return
        data = frame.get_payload_as_memoryview()
        if len(data) >= HDR.size:
            conn, _seq, t_send = HDR.unpack_from(data)
            if conn == self.conn:
                st = self.client.stats
                st.echoes += 1
                st.rtt_ns.append(time.perf_counter_ns() - t_send)

    def on_ws_disconnected(self, transport: Any) -> None:
        if not self.gone.done():
            self.gone.set_result(None)

    def send(self, payload: bytes) -> None:
        if not self.gone.done():
            self.t.send(picows.WSMsgType.BINARY, payload)

    def end(self) -> None:
        if not self.gone.done():
            self.t.send_close(picows.WSCloseCode.OK)
            self.t.disconnect()


class Client:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.get("seed", 1))
        self.stats = Stats()
        self.period = 1.0 / cfg.get("pps", 50)
        self.buckets: list[set[_Call]] = [set() for _ in range(max(1, round(self.period / _TICK)))]
        self.running = True
        self.live: set[_Call] = set()
        self.next_conn = 0
        self.speech = _speech()

    def _pad(self) -> bytes:
        return bytes(FRAME - HDR.size)

    async def _sender(self) -> None:
        """Every tick, one frame from each echo call of the tick's bucket (``pps`` a call)."""
        pad = self._pad()
        k = 0
        next_t = time.perf_counter()
        while True:
            next_t += _TICK
            await asyncio.sleep(max(0.0, next_t - time.perf_counter()))
            bucket = self.buckets[k % len(self.buckets)]
            k += 1
            for call in bucket:
                call.seq += 1
                call.send(HDR.pack(call.conn, call.seq, time.perf_counter_ns()) + pad)
                self.stats.sent += 1

    async def _echo_call(self, url: str, secs: float) -> None:
        call = await self._dial(url, "echo")
        if call is None:
            return
        bucket = self.buckets[self.rng.randrange(len(self.buckets))]
        bucket.add(call)
        try:
            await asyncio.wait_for(asyncio.shield(call.gone), secs)
        except TimeoutError:
            pass
        finally:
            bucket.discard(call)
            await self._hang_up(call)

    async def _agent_call(self, url: str, secs: float) -> None:
        call = await self._dial(url, "agent")
        if call is None:
            return
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        every = self.cfg.get("turn_every", 8.0)
        answer = self.cfg.get("answer_secs", 4.0)
        utt = self.speech[self.rng.randrange(len(self.speech))] if self.speech else []
        per_turn = max(len(utt) + 100, round(every / 0.02))
        n = 0
        turn_end = None
        heard_at_end = 0
        try:
            while not call.gone.done() and loop.time() - t0 < secs:
                # one turn per ``every`` s: speech from 1 s into the turn, silence after
                i = n % per_turn - 50
                if 0 <= i < len(utt):
                    call.send(utt[i])
                    if i == len(utt) - 1:
                        turn_end, heard_at_end = loop.time(), call.heard
                else:
                    call.send(SILENCE)
                if turn_end is not None and loop.time() - turn_end >= answer:
                    self.stats.turns += 1
                    self.stats.answered += call.heard > heard_at_end
                    turn_end = None
                n += 1
                await asyncio.sleep(max(0.0, t0 + n * 0.02 - loop.time()))
        finally:
            await self._hang_up(call)

    async def _idle_call(self, url: str, secs: float) -> None:
        call = await self._dial(url, "idle")
        if call is None:
            return
        loop = asyncio.get_running_loop()
        end = loop.time() + secs
        try:
            await asyncio.sleep(self.rng.random())
            while not call.gone.done() and loop.time() < end:
                call.send(SILENCE)
                await asyncio.sleep(1.0)
        finally:
            await self._hang_up(call)

    async def _dial(self, url: str, kind: str) -> _Call | None:
        self.next_conn += 1
        conn = self.next_conn
        dial = asyncio.ensure_future(
            asyncio.wait_for(picows.ws_connect(lambda: _Call(self, kind, conn), url), 10)
        )
        try:
            _, call = await asyncio.shield(dial)
        except asyncio.CancelledError:  # the phase ended mid-dial: hang up once connected
            dial.add_done_callback(_hang_up_late)
            raise
        except (OSError, TimeoutError, picows.WSError):
            self.stats.failed[kind] += 1
            return None
        self.stats.started[kind] += 1
        self.live.add(call)  # type: ignore[arg-type]
        return call  # type: ignore[return-value]

    async def _hang_up(self, call: _Call) -> None:
        call.end()
        try:
            await asyncio.wait_for(asyncio.shield(call.gone), 5)
        except TimeoutError:
            pass
        self.live.discard(call)
        self.stats.ended[call.kind] += 1

    async def _slot(self, kind: str, url: str, first: bool) -> None:
        lo, hi, gap = self.cfg["min_call"], self.cfg["max_call"], self.cfg.get("gap", 1.0)
        run = {"echo": self._echo_call, "agent": self._agent_call, "idle": self._idle_call}[kind]
        while self.running:
            secs = self.rng.uniform(lo, hi)
            if first:  # start in steady state: the first call of a slot is part-way through
                secs *= self.rng.random()
                first = False
            await run(url, secs)
            await asyncio.sleep(self.rng.uniform(0, gap))

    async def phase(self, secs: float, on_window: Any = None) -> None:
        """Run every slot for ``secs`` s, then end every call."""
        self.running = True
        urls = {"echo": "echo_url", "agent": "agent_url", "idle": "agent_url"}
        slots = [
            asyncio.create_task(self._slot(kind, self.cfg[urls[kind]], True))
            for kind in ("echo", "agent", "idle")
            for _ in range(self.cfg.get(f"{kind}_calls", 0))
        ]
        start = time.monotonic()
        window = self.cfg.get("window", 30.0)
        while time.monotonic() - start < secs:
            await asyncio.sleep(min(window, secs - (time.monotonic() - start)))
            if on_window is not None:
                on_window()
        self.running = False
        for t in slots:
            t.cancel()
        await asyncio.gather(*slots, return_exceptions=True)
        for call in list(self.live):
            call.end()
        for _ in range(100):  # bounded: 5 s
            if not self.live or all(c.gone.done() for c in self.live):
                break
            await asyncio.sleep(0.05)
        self.live.clear()
        for bucket in self.buckets:
            bucket.clear()


def _hang_up_late(dial: asyncio.Future[Any]) -> None:
    if not dial.cancelled() and dial.exception() is None:
        dial.result()[1].end()


def _speech() -> list[list[bytes]]:
    """The agent bench's speech fixtures as 20 ms PCM16 frames (empty when absent)."""
    try:
        from ._agent_caller import load_utterances

        return [[ulaw_to_pcm16(p) for p in u.payloads] for u in load_utterances()]
    except (OSError, KeyError, ValueError):
        return []


def _say(tag: str, obj: Any) -> None:
    print(tag, json.dumps(obj), flush=True)


async def main(cfg: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    client = Client(cfg)
    sender = loop.create_task(client._sender())
    await client.phase(cfg.get("warmup", 10.0))
    _say("WARMED", client.stats.as_dict())
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if line.strip() == "GO":
        client.stats = Stats()
        total = Stats()

        def window(say: bool = True) -> None:
            st = client.stats
            client.stats = Stats()
            total.rtt_ns.extend(st.rtt_ns)
            for k in ("sent", "echoes", "turns", "answered"):
                setattr(total, k, getattr(total, k) + getattr(st, k))
            for k in ("started", "ended", "failed"):
                for kind, v in getattr(st, k).items():
                    getattr(total, k)[kind] += v
            if say:
                _say("WINDOW", st.as_dict())

        await client.phase(cfg["soak"], window)
        window(say=False)  # the drain's hang-ups
        _say("DRAINED", total.as_dict())
        await loop.run_in_executor(None, sys.stdin.readline)
    sender.cancel()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(main(json.loads(sys.argv[1])))
