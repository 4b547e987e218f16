"""A continuous output (SIP: silence while the bot is quiet) carrying a steady real-time
stream (an echo, a relayed call) that runs late: the late audio catches up instead of
leaving the call a chunk behind the clock (queued, sent on ticks) for the rest of the
turn; bot audio from a TTS is paced exactly as before. Frame level and RTP packet level,
all on the virtual clock."""

from __future__ import annotations

import asyncio
from typing import Any

from flowcat.frames import EndFrame, InterruptionFrame, OutputAudioRawFrame, TTSAudioRawFrame
from flowcat.serializers import CallInfo
from flowcat.server._apps import EchoProcessor
from flowcat.testing import run_virtual
from flowcat.transports import TransportParams
from flowcat.transports.sip import RTPSession, SIPTransport
from flowcat.transports.sip._rtp import build_rtp, parse_rtp
from flowcat.transports.sip._sdp import Negotiated
from test_transport_support import CHUNK, RATE, Harness, RecordingOutput, pcm

SILENCE = bytes(CHUNK)


def _continuous(catch_up: int = 4) -> RecordingOutput:
    return RecordingOutput(
        TransportParams(audio_out_sample_rate=RATE, audio_out_continuous=True, audio_out_catch_up_chunks=catch_up)
    )


def _stream(late_ms: list[float], *, catch_up: int = 4, phase_ms: float = 1.0) -> tuple[list[int], list[str]]:
    """One-chunk frames due every 20 ms, frame ``k`` arriving ``late_ms[k]`` ms after its
    due time (or with the one before it, if that came later still), into a continuous
    output. Returns each chunk's send lag (ms) behind its frame's arrival, and the wire
    from the first frame's arrival on ("B": bot audio, "S": silence)."""
    lags: list[int] = []
    wire: list[str] = []

    async def main() -> None:
        out = _continuous(catch_up)
        loop = asyncio.get_running_loop()
        arrivals: list[float] = []
        async with Harness([out]) as h:
            await asyncio.sleep(0.1 + phase_ms / 1000)  # silence runs; the clock's phase
            t0 = loop.time()
            for k, late in enumerate(late_ms):
                wait = t0 + (20 * k + late) / 1000 - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                arrivals.append(loop.time())
                await h.task.queue_frame(OutputAudioRawFrame(audio=pcm(CHUNK, k % 250 + 1), sample_rate=RATE))
            await asyncio.sleep(0.1)
            sent = list(out.wire)
        bot = [(t, p) for t, kind, p in sent if kind == "audio" and p != SILENCE]
        assert b"".join(p for _, p in bot) == b"".join(pcm(CHUNK, k % 250 + 1) for k in range(len(late_ms)))
        lags.extend(round((t - a) * 1000) for (t, _), a in zip(bot, arrivals, strict=True))
        first, last = bot[0][0], bot[-1][0]
        wire.extend("S" if p == SILENCE else "B" for t, kind, p in sent if kind == "audio" and first <= t <= last)

    run_virtual(main())
    return lags, wire


async def _steady(h: Harness) -> float:
    """After the output started, 10 whole chunks on a 20 ms cadence (a steady real-time
    stream, sent on arrival); returns when the first came."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.101)
    t0 = loop.time()
    for k in range(10):
        await asyncio.sleep(t0 + 0.02 * k - loop.time())
        await h.task.queue_frame(OutputAudioRawFrame(audio=pcm(CHUNK, k + 1), sample_rate=RATE))
    return t0


def test_one_late_chunk_does_not_leave_the_stream_a_chunk_behind() -> None:
    # Frame 10 comes 25 ms late (with frame 11). The clock used to fill the gap with a
    # chunk of silence; the late frame then waited behind it, and since the stream comes
    # no faster than it plays, every later frame waited for a tick until the window's
    # catch-up took the backlog. Now the gap gets no silence: the late frame goes the
    # moment it comes, and so does every frame after it.
    for phase in (1.0, 7.0, 19.0):
        lags, wire = _stream([0.0] * 10 + [25.0] + [0.0] * 20, phase_ms=phase)
        assert lags[3:] == [0] * 28, (phase, lags)
        assert "S" not in wire, (phase, wire)


def test_repeated_late_chunks_never_use_up_the_catch_up() -> None:
    # A late chunk every 10 frames for 8 s. Each silence chunk used to cost one chunk of
    # the catch-up stretch; after four the stretch was used up and every later frame of
    # the call waited on the clock, the wait growing with each late chunk.
    late = [25.0 if k % 10 == 5 else 0.0 for k in range(400)]
    lags, wire = _stream(late)
    assert lags[3:] == [0] * 397
    assert "S" not in wire


def test_a_backlog_after_a_stall_goes_out_at_once() -> None:
    # The stream stalls for 70 ms (less than the 80 ms hold), then its three late frames
    # come together: they go at once and the stream is on time again.
    late = [0.0] * 10 + [70.0, 70.0, 70.0, 70.0] + [0.0] * 10
    lags, wire = _stream(late)
    assert lags[3:] == [0] * 21
    assert "S" not in wire


def test_a_stream_that_stops_gets_silence_after_the_hold() -> None:
    # Frames stop for good: silence fills in once the stream has been late for the
    # hold (80 ms past the end of its audio), and from then on the output is continuous
    # again at the plain window.
    async def main() -> None:
        out = _continuous()
        async with Harness([out]) as h:
            t0 = await _steady(h)
            end_of_audio = out._play_end
            await asyncio.sleep(0.3)
            sent = [(t, p) for t, kind, p in out.wire if kind == "audio" and t > t0]
        silence = [t for t, p in sent if p == SILENCE]
        assert silence, sent
        first = silence[0] - end_of_audio
        assert 0.08 <= first <= 0.08 + 0.02 + 1e-9, first  # the first tick past the hold
        # continuous from there: one chunk per tick, never more than the window ahead
        gaps = [round((b - a) * 1000) for a, b in zip(silence[2:], silence[3:], strict=False)]
        assert gaps and set(gaps) == {20}, gaps

    run_virtual(main())


def test_without_catch_up_silence_fills_every_gap_at_once() -> None:
    # audio_out_catch_up_chunks=0: no hold; a late frame's gap is filled with silence,
    # and the stream stays behind the clock for the rest of the turn (the old behaviour).
    lags, wire = _stream([0.0] * 10 + [45.0] + [0.0] * 10, catch_up=0)
    assert "S" in wire
    assert min(lags[-5:]) >= 15


def test_tts_audio_is_paced_as_before_after_a_steady_stream() -> None:
    # A steady stream (frames sent on arrival), then a 1 s TTS reply in one frame: the
    # reply is paced on the clock (one chunk per tick after the window), not sent at
    # once, and not held back either.
    async def main() -> None:
        out = _continuous()
        loop = asyncio.get_running_loop()
        async with Harness([out]) as h:
            await _steady(h)
            await asyncio.sleep(0.02)
            reply = TTSAudioRawFrame(audio=pcm(CHUNK * 50, 99), sample_rate=RATE)
            t_reply = loop.time()
            await h.task.queue_frame(reply)
            await asyncio.sleep(1.2)
            tts = [(t, p) for t, kind, p in out.wire if kind == "audio" and t >= t_reply and p != SILENCE]
        assert b"".join(p for _, p in tts) == reply.audio
        offsets = [round((t - t_reply) * 1000) for t, _ in tts]
        # At most the window (2 chunks, plus the 20 ms of the last echo chunk still
        # playing) ahead at any time, then one chunk per 20 ms tick.
        for i, off in enumerate(offsets):
            assert (i + 1) * 20 - off <= 40 + 20, (i, offsets)
        steps = [b - a for a, b in zip(offsets[3:], offsets[4:], strict=False)]
        assert set(steps) == {20}, offsets
        assert offsets[-1] >= 940  # 1 s of audio takes ~1 s to leave

    run_virtual(main())


def test_interruption_during_a_held_gap_sends_silence_at_once() -> None:
    async def main() -> None:
        out = _continuous()
        loop = asyncio.get_running_loop()
        async with Harness([out]) as h:
            await _steady(h)
            await asyncio.sleep(0.045)  # the stream is late; the gap is being held
            t_int = loop.time()
            await h.task.queue_frame(InterruptionFrame())
            await asyncio.sleep(0.05)
            silence = [t for t, kind, p in out.wire if kind == "audio" and p == SILENCE and t >= t_int]
            clear = [t for t, kind, _ in out.wire if kind == "InterruptionFrame"]
        assert clear == [t_int]
        assert silence and silence[0] - t_int <= 0.02 + 1e-9  # the next tick, not the hold

    run_virtual(main())


# ----------------------------------------------------------------- on the wire (RTP)

PEER = "192.0.2.10"


class _Wire:
    """The call's socket: every packet sent, with the loop time."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((asyncio.get_running_loop().time(), data))

    def close(self) -> None:
        pass


class _Control:
    def hang_up(self) -> None:
        pass

    def input_started(self) -> None:
        pass

    def transfer(self, target: str) -> None:
        pass


def test_an_echoed_call_with_a_late_packet_stays_on_time_on_the_wire() -> None:
    """RTP in, echo app, RTP out: caller packet 10 arrives 25 ms late (with packet 11).
    Every echo packet leaves the moment its caller packet arrives, with the caller's
    payload, and the sequence numbers and timestamps run on without a silence packet
    slipped between two echoed ones."""

    async def main() -> None:
        from flowcat import Pipeline, PipelineParams, PipelineTask

        loop = asyncio.get_running_loop()
        wire = _Wire()
        media = RTPSession("t", Negotiated("PCMU", 0, None, (PEER, 4000), "sendrecv"), {PEER})
        media.connection_made(wire)
        transport = SIPTransport(media, _Control(), CallInfo(carrier="sip", call_id="c1"))
        media.sink = transport
        task = PipelineTask(
            Pipeline([transport.input(), EchoProcessor(), transport.output()]),
            params=PipelineParams(audio_in_sample_rate=8000, audio_out_sample_rate=8000),
            idle_timeout_secs=None,
        )
        started = asyncio.Event()
        task.add_event_handler("on_pipeline_started", lambda _t, _f: started.set())
        run = asyncio.ensure_future(task.run())
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.sleep(0.107)
        t0 = loop.time()
        arrivals: dict[bytes, float] = {}
        for k in range(40):
            late = 25.0 if k == 10 else 0.0
            wait = t0 + (20 * k + late) / 1000 - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            payload = bytes((k + 1 + i) % 0x7F or 1 for i in range(160))  # distinct, never silence
            arrivals[payload] = loop.time()
            media.datagram_received(build_rtp(0, False, 1000 + k, 160 * k, 7, payload), (PEER, 4000))
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)
        await task.queue_frame(EndFrame())
        await asyncio.wait_for(run, 5)

        packets = [(t, parse_rtp(d)) for t, d in wire.sent]
        assert all(p is not None for _, p in packets)
        echoed = [i for i, (_, p) in enumerate(packets) if p is not None and p.payload in arrivals]
        assert len(echoed) == 40
        first, last = echoed[0], echoed[-1]
        # Nothing but echo packets between the first and the last echo packet.
        assert echoed == list(range(first, last + 1))
        seqs = [p.sequence for _, p in packets[first : last + 1] if p is not None]
        stamps = [p.timestamp for _, p in packets[first : last + 1] if p is not None]
        assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(40)]
        assert stamps == [(stamps[0] + 160 * i) & 0xFFFFFFFF for i in range(40)]
        # From the fourth packet on (the stream counts as steady), each leaves on arrival.
        lags = [round((t - arrivals[p.payload]) * 1000) for t, p in packets[first : last + 1] if p is not None]
        assert lags[3:] == [0] * 37, lags

    run_virtual(main())


def test_a_held_stream_is_looked_at_now_and_then_and_a_pause_brings_silence_at_once() -> None:
    # While a steady stream is sent on arrival the clock serves the output every third
    # tick only (nothing is due before the hold could run out); a pause makes it busy
    # again, and silence follows the audio already sent without a gap.
    async def main() -> None:
        from flowcat.frames import BotSpeechPauseFrame

        out = _continuous()
        loop = asyncio.get_running_loop()
        async with Harness([out]) as h:
            await asyncio.sleep(0.101)
            t0 = loop.time()
            looks: list[float] = []
            on_clock = out.on_clock

            def counting(now: float) -> bool | int:
                looks.append(now)
                return on_clock(now)

            out.on_clock = counting  # type: ignore[method-assign]
            for k in range(20):
                await asyncio.sleep(t0 + 0.02 * k - loop.time())
                await h.task.queue_frame(OutputAudioRawFrame(audio=pcm(CHUNK, k + 1), sample_rate=RATE))
            steady = [t for t in looks if t0 + 0.1 <= t < t0 + 0.38]
            assert 3 <= len(steady) <= 6, steady  # 14 ticks: about every third
            await asyncio.sleep(0.005)
            t_pause = loop.time()
            end_of_audio = out._play_end
            await h.task.queue_frame(BotSpeechPauseFrame())
            await asyncio.sleep(0.1)
            silence = [t for t, kind, p in out.wire if kind == "audio" and p == SILENCE and t >= t_pause]
        # Silence follows the audio already sent without a gap (the window's worth ahead,
        # on the clock's 20 ms ticks), not at the next look of an idle output.
        assert silence and silence[0] <= end_of_audio - 0.025 + 0.02 + 1e-9, (t_pause, end_of_audio, silence)

    run_virtual(main())
