"""WebRTCTransport against a plain aiortc peer on 127.0.0.1 (loopback ICE, no STUN).

* Caller audio: the peer sends a 440 Hz tone; after Opus and the resampling to the
  16 kHz pipeline rate the pipeline gets that tone (frequency, level, duration).
* Bot audio: 1 s of bot audio pushed at once leaves the output one 20 ms chunk per
  clock period (the clock paces the RTP stream), and the peer decodes it.
* Teardown: the peer hanging up cancels the call; the server's peer connection,
  reader and close task are gone, and no task is left behind.
"""

from __future__ import annotations

import asyncio
import json
import time
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from _helpers import require

require("aiortc")
av = require("av")

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402

from flowcat import FrameDirection, Pipeline, PipelineParams, PipelineTask  # noqa: E402
from flowcat.frames import InputAudioRawFrame, OutputAudioRawFrame  # noqa: E402
from flowcat.testing import CaptureProcessor  # noqa: E402
from flowcat.transports._webrtc import (  # noqa: E402
    WebRTCParams,
    WebRTCTransport,
    filter_candidates,
    set_ice_host_addresses,
)

RATE = 16000
DOWN = FrameDirection.DOWNSTREAM


@pytest.fixture(autouse=True)
def loopback_ice() -> Any:
    set_ice_host_addresses(["127.0.0.1"])
    yield
    set_ice_host_addresses(None)


class ToneTrack(MediaStreamTrack):  # type: ignore[misc]
    """A real-time 48 kHz mono tone, 20 ms per frame, paced by wall time."""

    kind = "audio"

    def __init__(self, hz: float = 440.0, amplitude: float = 0.3) -> None:
        super().__init__()
        self.hz = hz
        self.amplitude = amplitude
        self._n = 0
        self._t0: float | None = None

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        if self._t0 is None:
            self._t0 = time.monotonic()
        due = self._t0 + self._n / 48000
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (np.arange(960) + self._n) / 48000
        pcm = (np.sin(2 * np.pi * self.hz * t) * self.amplitude * 32767).astype(np.int16)
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)  # as a browser's mono Opus decodes
        frame.planes[0].update(pcm.repeat(2).tobytes())
        frame.sample_rate = 48000
        frame.time_base = Fraction(1, 48000)
        frame.pts = self._n
        self._n += 960
        return frame


class Peer:
    """The caller: an aiortc peer connection that sends ``track`` and records what it receives."""

    def __init__(self, track: MediaStreamTrack | None = None) -> None:
        self.pc = RTCPeerConnection()
        self.received: list[np.ndarray] = []
        self.got_audio = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        if track is not None:
            self.pc.addTrack(track)
        else:
            self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.on("track", self._on_track)

    def _on_track(self, track: Any) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read(track))

    async def _read(self, track: Any) -> None:
        try:
            while True:
                frame = await track.recv()
                pcm = frame.to_ndarray().reshape(-1)[:: len(frame.layout.channels)]
                self.received.append(pcm.copy())
                if np.abs(pcm.astype(np.int32)).max() > 1000:
                    self.got_audio.set()
        except MediaStreamError:
            pass

    async def call(self, transport: WebRTCTransport) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await transport.accept_offer(self.pc.localDescription.sdp, "offer")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type=answer.type))

    async def hang_up(self) -> None:
        await self.pc.close()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)


class AudioCapture(CaptureProcessor):
    """Records downstream frames; ``enough`` is set once ``want`` bytes of caller audio came."""

    def __init__(self, want: int) -> None:
        super().__init__(DOWN)
        self.want = want
        self.got = 0
        self.enough = asyncio.Event()

    async def process_frame(self, frame: Any, direction: FrameDirection) -> None:
        if isinstance(frame, InputAudioRawFrame):
            self.got += len(frame.audio)
            if self.got >= self.want:
                self.enough.set()
        await super().process_frame(frame, direction)


def _tone_hz(pcm: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.argmax(spec) * rate / len(pcm))


def _rms_dbfs(pcm: np.ndarray) -> float:
    x = pcm.astype(np.float64) / 32768
    return float(20 * np.log10(np.sqrt(np.mean(x * x)) + 1e-12))


async def _start(transport: WebRTCTransport, *procs: Any) -> tuple[PipelineTask, asyncio.Task[Any]]:
    task = PipelineTask(
        Pipeline([transport.input(), *procs, transport.output()]),
        params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=24000),
    )
    runner = asyncio.get_running_loop().create_task(task.run())
    return task, runner


async def test_caller_audio_reaches_the_pipeline_as_the_tone_sent() -> None:
    transport = WebRTCTransport(WebRTCParams())
    capture = AudioCapture(RATE * 2 * 2)  # 2 s
    task, runner = await _start(transport, capture)
    peer = Peer(ToneTrack(440.0, 0.3))
    await peer.call(transport)

    await asyncio.wait_for(capture.enough.wait(), 15)
    await peer.hang_up()
    await asyncio.wait_for(runner, 10)
    frames = [f for f in capture.frames if isinstance(f, InputAudioRawFrame)]
    assert {f.sample_rate for f in frames} == {RATE}
    assert {f.num_channels for f in frames} == {1}
    pcm = np.frombuffer(b"".join(f.audio for f in frames), dtype=np.int16)
    steady = pcm[RATE // 2 : RATE // 2 + RATE]  # 1 s after Opus' start-up
    assert abs(_tone_hz(steady, RATE) - 440.0) < 3.0
    # A 0.3 full-scale sine is -13.5 dBFS; Opus at 96 kb/s keeps its level within 1.5 dB.
    assert abs(_rms_dbfs(steady) - (20 * np.log10(0.3 / np.sqrt(2)))) < 1.5
    assert transport.frames_in >= 100
    await asyncio.wait_for(transport.closed_future(), 5)


async def test_bot_audio_is_paced_one_chunk_per_20ms_and_decoded_by_the_peer() -> None:
    transport = WebRTCTransport(WebRTCParams())
    task, runner = await _start(transport)
    sent: list[tuple[float, int]] = []
    put = transport.track.put

    def timed_put(pcm: bytes) -> None:
        sent.append((time.monotonic(), int(np.abs(np.frombuffer(pcm, dtype=np.int16)).max())))
        put(pcm)

    transport._output._track_put = timed_put
    connected = asyncio.Event()
    transport.add_event_handler("on_client_connected", lambda _t: connected.set())
    peer = Peer()
    await peer.call(transport)
    await transport.input().started_future()
    await asyncio.wait_for(connected.wait(), 10)
    t = np.arange(24000) / 24000
    tone = (np.sin(2 * np.pi * 660 * t) * 0.3 * 32767).astype(np.int16).tobytes()  # 1 s at 24 kHz
    await task.queue_frame(OutputAudioRawFrame(tone, 24000, 1))
    await asyncio.wait_for(peer.got_audio.wait(), 10)
    await asyncio.sleep(1.3)
    await peer.hang_up()
    await asyncio.wait_for(runner, 10)

    loud = [i for i, (_, peak) in enumerate(sent) if peak > 1000]
    assert loud, "no bot audio left the output"
    first, last = loud[0], loud[-1]
    assert 49 <= last - first + 1 <= 51  # 1 s = 50 chunks of 20 ms (±1 for the resampler's edge)
    times = [sent[i][0] for i in range(first + 2, last + 1)]  # the first two go at once (send-ahead)
    gaps = np.diff(times) * 1000
    assert 18.0 <= float(np.median(gaps)) <= 22.0
    span = (sent[last][0] - sent[first][0]) * 1000
    print(f"\nbot audio: {last - first + 1} chunks over {span:.0f} ms, median gap {np.median(gaps):.1f} ms")
    assert 900 <= span <= 1100  # real time, not a burst
    # Silence around it: the track is fed continuously (the RTP stream never stalls).
    assert any(peak == 0 for _, peak in sent[:first]) or first == 0
    assert all(len(p) for p in peer.received)
    received = np.concatenate(peer.received)
    assert abs(_tone_hz(received[np.abs(received) > 0][:48000], 48000) - 660.0) < 5.0


async def test_peer_hang_up_cancels_the_call_and_leaves_no_task() -> None:
    before = asyncio.all_tasks()
    transport = WebRTCTransport(WebRTCParams())
    capture = AudioCapture(RATE * 2 // 5)  # 200 ms
    task, runner = await _start(transport, capture)
    peer = Peer(ToneTrack())
    await peer.call(transport)
    await asyncio.wait_for(capture.enough.wait(), 10)
    await peer.hang_up()
    await asyncio.wait_for(runner, 10)
    await asyncio.wait_for(transport.closed_future(), 5)
    assert transport.connection_state == "closed"
    assert task.has_finished()
    await transport.close()  # idempotent
    left = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
    if left:
        await asyncio.wait(left, timeout=5)
    left = [t for t in left if not t.done()]
    assert not left, left


async def test_end_frame_closes_the_peer_connection() -> None:
    transport = WebRTCTransport(WebRTCParams())
    capture = AudioCapture(RATE * 2 // 10)  # 100 ms
    task, runner = await _start(transport, capture)
    peer = Peer(ToneTrack())
    closed = asyncio.Event()

    @peer.pc.on("connectionstatechange")
    def _state() -> None:
        if peer.pc.connectionState == "closed" or peer.pc.connectionState == "failed":
            closed.set()

    await peer.call(transport)
    await asyncio.wait_for(capture.enough.wait(), 10)
    await task.stop_when_done()
    await asyncio.wait_for(runner, 10)
    await asyncio.wait_for(transport.closed_future(), 5)
    assert transport.connection_state == "closed"
    await peer.hang_up()


def test_filter_candidates_keeps_loopback_udp_only_when_pinned_to_loopback() -> None:
    sdp = "\r\n".join(
        [
            "v=0",
            "a=candidate:1 1 udp 2122260223 192.0.2.2 50000 typ host",
            "a=candidate:2 1 udp 2122260223 127.0.0.1 50001 typ host",
            "a=candidate:3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active",
            "a=candidate:4 1 udp 2122260223 abcd-1234.local 50002 typ host",
            "a=candidate:5 1 udp 2122260223 ::1 50003 typ host",
            "a=end-of-candidates",
        ]
    )
    kept = filter_candidates(sdp, ["127.0.0.1"])
    assert [line.split()[4] for line in kept.splitlines() if line.startswith("a=candidate")] == [
        "127.0.0.1",
        "::1",
    ]
    kept = filter_candidates(sdp, None)
    assert [line.split()[4] for line in kept.splitlines() if line.startswith("a=candidate")] == [
        "192.0.2.2",
        "127.0.0.1",
        "::1",
    ]
    assert "a=end-of-candidates" in kept


async def test_a_whole_call_leaves_no_cycle_and_no_task() -> None:
    from flowcat.testing import assert_call_leaves_nothing

    async def call() -> int:
        transport = WebRTCTransport(WebRTCParams())
        capture = AudioCapture(RATE * 2 // 5)
        _task, runner = await _start(transport, capture)
        peer = Peer(ToneTrack())
        await peer.call(transport)
        await asyncio.wait_for(capture.enough.wait(), 10)
        await peer.hang_up()
        await asyncio.wait_for(runner, 10)
        await transport.close()
        return capture.got

    assert await assert_call_leaves_nothing(call) > 0


def test_ice_host_addresses_must_be_ip_addresses() -> None:
    from flowcat.errors import ConfigError

    with pytest.raises(ConfigError, match="ICE host addresses"):
        set_ice_host_addresses(["localhost"])


async def test_data_channel_messages_both_ways() -> None:
    from flowcat.frames import InputTransportMessageFrame, OutputTransportMessageUrgentFrame

    transport = WebRTCTransport(WebRTCParams())
    capture = CaptureProcessor(DOWN)
    task, runner = await _start(transport, capture)
    peer = Peer(ToneTrack())
    channel = peer.pc.createDataChannel("events")
    opened = asyncio.Event()
    got: asyncio.Queue[str] = asyncio.Queue()
    channel.on("open", opened.set)
    channel.on("message", got.put_nowait)
    await peer.call(transport)
    await asyncio.wait_for(opened.wait(), 10)
    channel.send(json.dumps({"hello": "bot"}))
    channel.send("not json")
    first = await capture.wait_for(InputTransportMessageFrame, 10)
    assert first.message == {"hello": "bot"}
    await task.queue_frame(OutputTransportMessageUrgentFrame(message={"hello": "caller"}))
    assert json.loads(await asyncio.wait_for(got.get(), 10)) == {"hello": "caller"}
    await peer.hang_up()
    await asyncio.wait_for(runner, 10)
    messages = [f.message for f in capture.frames if isinstance(f, InputTransportMessageFrame)]
    assert messages == [{"hello": "bot"}, "not json"]
