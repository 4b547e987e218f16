"""Shared Silero model and cross-call batching: equality, one flush per iteration, threads, memory."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from _helpers import require

require("onnxruntime")

from flowcat.audio.vad import (  # noqa: E402
    SileroBatcher,
    SileroModel,
    SileroVADAnalyzer,
    VADEvent,
    silero_model_path,
)
from flowcat.errors import MissingExtraError  # noqa: E402
from test_vad_support import load  # noqa: E402


class Recording(SileroVADAnalyzer):
    """Records every window's probability and the events."""

    def __init__(self, **kw) -> None:
        self.probs: list[float] = []
        self.events: list[tuple[VADEvent, float]] = []
        kw.setdefault("skip_quiet", False)  # every window through the model (and _score)
        super().__init__(**kw)
        self.set_listener(lambda e, p: self.events.append((e, p)))

    def _score(self, confidence: float, ms: float) -> None:
        self.probs.append(confidence)
        super()._score(confidence, ms)


def _streams(n: int, rate: int = 16000) -> list[bytes]:
    """n different 2 s signals: the fixtures at different offsets."""
    names = ["two_utterances.wav", "utterance_weather.wav", "utterance_booking.wav"]
    if rate == 8000:
        names = ["two_utterances_8k.wav"]
    out = []
    for i in range(n):
        pcm, _, _ = load(names[i % len(names)])
        off = (i * 3331 * 2) % (len(pcm) // 2)
        out.append((pcm[off:] + pcm[:off])[: rate * 2 * 2])
    return out


def test_onnx_graph_accepts_a_batch_and_matches_single_runs() -> None:
    model = SileroModel.shared()
    rng = np.random.default_rng(0)
    n = 9
    x = (rng.standard_normal((n, 576)) * 0.1).astype(np.float32)
    state = (rng.standard_normal((2, n, 128)) * 0.1).astype(np.float32)
    probs, new_state = model.run(x, state, 16000)
    assert probs.shape == (n,) and new_state.shape == (2, n, 128)
    for i in range(n):
        p1, s1 = model.run(x[i : i + 1], np.ascontiguousarray(state[:, i : i + 1]), 16000)
        assert abs(float(p1[0]) - float(probs[i])) <= 1e-4
        assert np.abs(s1[:, 0] - new_state[:, i]).max() <= 1e-4


def _sync_reference(pcm: bytes, rate: int) -> Recording:
    ref = Recording(sample_rate=rate)
    for i in range(0, len(pcm), rate // 50 * 2):
        ref.analyze_audio_sync(pcm[i : i + rate // 50 * 2])
    return ref


async def _feed_realtime(analyzers, pcms, rate, chunk_ms=20) -> None:
    step = rate * chunk_ms // 1000 * 2
    for off in range(0, max(len(p) for p in pcms), step):
        for a, p in zip(analyzers, pcms, strict=True):
            a.feed(p[off : off + step])
        await asyncio.sleep(0)
    for a in analyzers:
        await asyncio.wait_for(a.drain(), 10)


@pytest.mark.parametrize("rate", [16000, 8000])
async def test_batched_equals_unbatched(rate: int) -> None:
    pcms = _streams(12, rate)
    batched = [Recording(sample_rate=rate) for _ in pcms]
    await _feed_realtime(batched, pcms, rate)
    batcher = SileroBatcher.for_loop()
    assert batcher.stats.max_batch == 12  # every stream's window in one ONNX call
    assert batcher.stats.batches < sum(len(a.probs) for a in batched) / 6
    for a, pcm in zip(batched, pcms, strict=True):
        ref = _sync_reference(pcm, rate)
        assert len(a.probs) == len(ref.probs) == len(pcm) // (2 * ref.num_frames_required())
        assert np.abs(np.array(a.probs) - np.array(ref.probs)).max() <= 1e-4
        assert [(e, round(p, 6)) for e, p in a.events] == [(e, round(p, 6)) for e, p in ref.events]


async def test_one_flush_per_loop_iteration() -> None:
    analyzers = [SileroVADAnalyzer(skip_quiet=False, sample_rate=16000) for _ in range(40)]
    window = bytes(1024)
    batcher = SileroBatcher.for_loop()
    before = batcher.stats.batches
    for a in analyzers:
        a.feed(window)
    assert batcher.stats.batches == before  # nothing runs inside feed()
    assert all(a.pending == 1 for a in analyzers)
    await asyncio.sleep(0)
    await asyncio.gather(*(a.drain() for a in analyzers))
    assert batcher.stats.batches == before + 1
    assert all(a.pending == 0 and a.position == pytest.approx(0.032) for a in analyzers)


async def test_large_batches_run_in_the_shared_thread_with_same_results() -> None:
    batcher = SileroBatcher.for_loop()
    batcher.max_inline_secs = 0.0  # force the worker thread
    pcms = _streams(6)
    analyzers = [Recording(sample_rate=16000) for _ in pcms]
    # 100 ms chunks: several windows per stream per iteration -> one per round, in order
    await _feed_realtime(analyzers, pcms, 16000, chunk_ms=100)
    assert batcher.stats.thread_batches > 0 and batcher.stats.inline_batches == 0
    for a, pcm in zip(analyzers, pcms, strict=True):
        ref = _sync_reference(pcm, 16000)
        assert np.abs(np.array(a.probs) - np.array(ref.probs)).max() <= 1e-4
        assert [e for e, _ in a.events] == [e for e, _ in ref.events]


async def test_inline_threshold_follows_measured_cost() -> None:
    batcher = SileroBatcher.for_loop()
    lane = SileroModel.shared().lane(16000)
    analyzers = [SileroVADAnalyzer(skip_quiet=False, sample_rate=16000) for _ in range(200)]
    for a in analyzers:
        a.feed(bytes(1024))
    await asyncio.gather(*(a.drain() for a in analyzers))
    # 200 rows at ~35 us each is far over 1 ms: it went to the thread
    assert batcher.stats.thread_batches >= 1
    assert 5e-6 < lane.row_cost < 1e-3


async def test_pipecat_style_analyze_audio_batches_concurrent_callers() -> None:
    pcms = _streams(8)
    analyzers = [SileroVADAnalyzer(skip_quiet=False, sample_rate=16000) for _ in pcms]
    batcher = SileroBatcher.for_loop()
    step = 640
    for off in range(0, len(pcms[0]), step):
        await asyncio.gather(
            *(a.analyze_audio(p[off : off + step]) for a, p in zip(analyzers, pcms, strict=True))
        )
    assert batcher.stats.max_batch == 8
    assert [a.position for a in analyzers] == [pytest.approx(2.0, abs=0.032)] * 8


async def test_model_is_shared_and_slots_are_released() -> None:
    import gc

    gc.collect()  # analyzers left by earlier tests must not be freed mid-test
    model = SileroModel.shared()
    count = SileroModel.constructions
    lane = model.lane(16000)
    base = lane.in_use
    analyzers = [SileroVADAnalyzer(skip_quiet=False, sample_rate=16000) for _ in range(50)]
    assert all(a._model is model for a in analyzers)
    assert SileroModel.constructions == count
    assert lane.in_use == base + 50
    analyzers[0].feed(bytes(4096))  # pending windows, then closed: dropped quietly
    for a in analyzers:
        a.close()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert lane.in_use == base
    assert analyzers[0].pending == 0
    del analyzers
    b = SileroVADAnalyzer(skip_quiet=False, sample_rate=16000)  # a garbage-collected analyzer frees its slot too
    del b
    gc.collect()
    assert lane.in_use == base


def test_missing_silero_package_raises_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "silero_vad" else real(name, *a)
    )
    with pytest.raises(MissingExtraError) as info:
        silero_model_path()
    assert info.value.extra == "local"


def test_rss_growth_for_200_streams_is_small() -> None:
    script = textwrap.dedent(
        """
        import asyncio, gc, os
        from flowcat.audio.vad import SileroModel, SileroVADAnalyzer

        def rss():
            gc.collect()
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

        async def run(n):
            analyzers = [SileroVADAnalyzer(skip_quiet=False, sample_rate=16000) for _ in range(n)]
            for _ in range(25):  # 0.5 s of 20 ms frames each, batched
                for a in analyzers:
                    a.feed(bytes(640))
                await asyncio.sleep(0)
            await asyncio.gather(*(a.drain() for a in analyzers))
            return analyzers

        async def main():
            SileroModel.shared()
            warm = await run(200)  # the process-wide parts: session, batch buffers, arena
            for a in warm:
                a.close()
            del warm
            before = rss()
            keep = await run(200)
            after = rss()
            print(after - before, SileroModel.constructions, len(keep))

        asyncio.run(main())
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    growth, constructions, n = (int(v) for v in out.stdout.split())
    assert n == 200 and constructions == 1
    assert growth < 10 * 1024 * 1024, growth


async def test_streams_of_different_models_and_rates_batch_separately() -> None:
    own = SileroModel()
    analyzers = [
        SileroVADAnalyzer(skip_quiet=False, sample_rate=16000),
        SileroVADAnalyzer(skip_quiet=False, sample_rate=8000),
        SileroVADAnalyzer(skip_quiet=False, sample_rate=16000, model=own),
    ]
    for a in analyzers:
        a.feed(bytes(4096))
    await asyncio.wait_for(asyncio.gather(*(a.drain() for a in analyzers)), 5)
    assert [a.pending for a in analyzers] == [0, 0, 0]
    assert [a.position for a in analyzers] == [
        pytest.approx(0.128),
        pytest.approx(0.256),
        pytest.approx(0.128),
    ]


def test_under_load_a_flush_waits_for_rows_but_never_longer_than_max_wait() -> None:
    """40 real-time streams, staggered over a window period: without the wait, each loop
    iteration would carry one or two windows; with it, batches of about target_rows form and
    no window is scored more than max_wait_secs after it was ready (virtual time)."""
    from flowcat.testing import run_virtual

    async def main() -> tuple[SileroBatcher, list[float], tuple[int, int]]:
        loop = asyncio.get_running_loop()
        batcher = SileroBatcher.for_loop()
        batcher.max_inline_secs = 1.0  # inline: the virtual clock does not move while a batch runs
        n, window_s = 40, 0.032
        lags: list[float] = []
        analyzers = [SileroVADAnalyzer(skip_quiet=False, sample_rate=16000) for _ in range(n)]
        ready_at: list[list[float]] = [[] for _ in range(n)]
        for a in analyzers:
            a.set_listener(lambda _e, _p: None)
        scored = [0] * n
        orig = [a._score for a in analyzers]

        def scorer(i: int):  # record when each window is scored, against when it was ready
            def score(confidence: float, ms: float) -> None:
                lags.append(loop.time() - ready_at[i][scored[i]])
                scored[i] += 1
                orig[i](confidence, ms)
            return score

        for i, a in enumerate(analyzers):
            a._score = scorer(i)  # type: ignore[method-assign]
        start = loop.time()
        warm = (0, 0)
        for k in range(40):  # 40 windows per stream, 1.28 s
            if k == 10:  # the arrival rate is known after a few hundred ms
                warm = (batcher.stats.batches, batcher.stats.rows)
            for i, a in enumerate(analyzers):
                at = start + k * window_s + i * window_s / n
                await asyncio.sleep(max(0.0, at - loop.time()))
                ready_at[i].append(loop.time())
                a.feed(bytes(1024))
        await asyncio.gather(*(a.drain() for a in analyzers))
        for a in analyzers:
            a.close()
        return batcher, lags, warm

    batcher, lags, (b0, r0) = run_virtual(main())
    st = batcher.stats
    assert st.rows == 40 * 40 and len(lags) == 40 * 40
    assert st.waited_flushes > 0
    assert (st.rows - r0) / (st.batches - b0) >= 16  # one iteration per window would give ~1
    assert max(lags) <= batcher.max_wait_secs + 1e-6


async def test_one_stream_fed_faster_than_real_time_never_waits() -> None:
    """A stream has at most one window in a batch, so a lone fast stream flushes at once,
    however many other streams hold a slot without being fed (calls on hold, not yet freed)."""
    batcher = SileroBatcher.for_loop()
    idle = [SileroVADAnalyzer(skip_quiet=False, sample_rate=16000) for _ in range(40)]
    a = SileroVADAnalyzer(skip_quiet=False, sample_rate=16000)
    before = batcher.stats.waited_flushes
    t0 = asyncio.get_running_loop().time()
    for _ in range(200):
        a.feed(bytes(1024))
        await asyncio.sleep(0)
    await a.drain()
    assert batcher.stats.waited_flushes == before
    assert asyncio.get_running_loop().time() - t0 < 2.0
    a.close()
    for b in idle:
        b.close()


def test_decisive_is_the_window_that_would_start_or_stop_speech() -> None:
    """With start_secs and stop_secs of 3 windows (96 ms at 8 kHz), the window that would
    complete either run is decisive; no other is."""
    from flowcat.audio.vad import VADAnalyzer, VADParams, VADState

    class Script(VADAnalyzer):
        def __init__(self, probs: list[float]) -> None:
            self.probs = iter(probs)
            super().__init__(sample_rate=8000, params=VADParams(start_secs=0.096, stop_secs=0.096, min_volume=0.0))

        def num_frames_required(self) -> int:
            return 256

        def voice_confidence(self, buffer: bytes) -> float:
            return next(self.probs)

    probs = [0.0, 0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.0]
    vad = Script(probs)
    seen = []
    for _ in probs:
        seen.append((vad.decisive, vad.state))
        vad.analyze_audio_sync(bytes(512))
    q, st, sp, so = VADState.QUIET, VADState.STARTING, VADState.SPEAKING, VADState.STOPPING
    assert seen == [
        (False, q), (False, q), (False, st), (True, st),  # the 3rd voiced window starts speech
        (False, sp), (False, sp), (False, so), (True, so),  # a 3rd quiet one would stop it ...
        (False, sp), (False, so), (True, so),  # ... the voiced one resets the run
        (False, q),  # stopped
    ]


def test_a_decisive_window_is_scored_without_waiting_for_rows() -> None:
    """40 real-time streams keep the batcher waiting for rows; the window that ends one
    stream's speech is scored in the loop iteration it arrives, not up to max_wait_secs later
    (virtual time). The same run without the rule waits for it."""
    from flowcat.testing import run_virtual

    speech, quiet = b"", bytes(512)
    pcm, _, _ = load("two_utterances_8k.wav")
    speech = pcm[8000 * 2: 8000 * 2 * 26 // 10]  # 1.0-2.6 s: the first utterance, at 8 kHz

    async def main(rule: bool) -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        batcher = SileroBatcher.for_loop()
        batcher.max_inline_secs = 1.0
        n, window_s = 40, 0.032

        class Stream(SileroVADAnalyzer):
            @property
            def decisive(self) -> bool:
                return super().decisive if rule else False

        others = [Stream(skip_quiet=False, sample_rate=8000) for _ in range(n)]
        for a in others:
            a.set_listener(lambda _e, _p: None)
        probe = Stream(skip_quiet=False, sample_rate=8000)
        stopped: list[float] = []
        probe.set_listener(lambda e, _p: stopped.append(loop.time()) if e is VADEvent.STOPPED else None)
        fed_at: list[float] = []
        start = loop.time()
        probe_audio = speech + quiet * 20  # 1.6 s of speech, then 0.64 s of silence
        for k in range(75):
            for i, a in enumerate(others):
                await asyncio.sleep(max(0.0, start + k * window_s + i * window_s / n - loop.time()))
                a.feed(speech[(k * 512) % len(speech):][:512].ljust(512, b"\0"))
            chunk = probe_audio[k * 512:(k + 1) * 512]
            if chunk:
                fed_at.append(loop.time())
                probe.feed(chunk)
        await asyncio.gather(*(a.drain() for a in [*others, probe]))
        assert stopped, "the probe's speech never stopped"
        # the stop came on the window fed last before it
        last_fed = max(t for t in fed_at if t <= stopped[0])
        decisive = batcher.stats.decisive_flushes
        for a in [*others, probe]:
            a.close()
        return stopped[0] - last_fed, decisive

    lag_rule, flushes = run_virtual(main(True))
    lag_none, none_flushes = run_virtual(main(False))
    assert flushes > 0 and none_flushes == 0
    assert lag_rule < 0.001, lag_rule  # scored in the iteration it came
    assert lag_none > 0.005, lag_none  # the wait for rows


def test_a_stream_that_fell_behind_catches_up_without_waiting_for_rows() -> None:
    """40 real-time streams keep the batcher waiting for rows; 10 others get 8 windows at once
    (their packets held up, then delivered together). A stream takes one window per round, so
    with a wait before every round the last of the 8 is scored ~8 waits late; a stream that is
    behind is not kept waiting, and its windows are scored in back-to-back rounds (virtual
    time). The same run without the rule waits."""
    from flowcat.testing import run_virtual

    async def main(rule: bool) -> tuple[float, float, int]:
        loop = asyncio.get_running_loop()
        batcher = SileroBatcher.for_loop()
        batcher.max_inline_secs = 1.0  # inline: the virtual clock does not move while a batch runs
        n, window_s, burst = 40, 0.032, 8

        class Stream(SileroVADAnalyzer):
            @property
            def behind(self) -> bool:
                return super().behind if rule else False

        steady = [Stream(skip_quiet=False, sample_rate=8000) for _ in range(n)]
        late = [Stream(skip_quiet=False, sample_rate=8000) for _ in range(10)]
        lags: dict[int, list[float]] = {id(a): [] for a in [*steady, *late]}
        fed: dict[int, list[float]] = {id(a): [] for a in [*steady, *late]}
        for a in [*steady, *late]:
            key = id(a)
            orig = a._score

            def score(confidence: float, ms: float, key: int = key, orig=orig) -> None:
                lags[key].append(loop.time() - fed[key][len(lags[key])])
                orig(confidence, ms)

            a._score = score  # type: ignore[method-assign]
            a.set_listener(lambda _e, _p: None)
        start = loop.time()
        for k in range(60):
            for i, a in enumerate(steady):
                await asyncio.sleep(max(0.0, start + k * window_s + i * window_s / n - loop.time()))
                fed[id(a)].append(loop.time())
                a.feed(bytes(512))
            if k >= 20 and (k - 20) % burst == burst - 1 and k < 20 + 3 * burst:  # three bursts of 8
                for a in late:
                    for _ in range(burst):
                        fed[id(a)].append(loop.time())
                        a.feed(bytes(512))
        await asyncio.gather(*(a.drain() for a in [*steady, *late]))
        late_max = max(max(lags[id(a)]) for a in late)
        steady_max = max(max(lags[id(a)]) for a in steady)
        flushes = batcher.stats.behind_flushes
        for a in [*steady, *late]:
            a.close()
        return late_max, steady_max, flushes

    batcher_wait = 0.02  # SileroBatcher's default max_wait_secs
    late_rule, steady_rule, flushes = run_virtual(main(True))
    late_none, steady_none, none_flushes = run_virtual(main(False))
    assert flushes > 0 and none_flushes == 0
    # with the rule 7 rounds run back to back and only the last window (no longer behind) waits
    # for rows like any other; without it each of the 8 rounds waits (~8 x 17.6 ms here)
    assert late_rule <= batcher_wait + 1e-6, late_rule
    assert late_none > 4 * batcher_wait, late_none
    assert max(steady_rule, steady_none) <= batcher_wait + 1e-6  # the others: as before
