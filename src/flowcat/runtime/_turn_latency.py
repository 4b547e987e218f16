"""Per-turn latency breakdown: an observer that splits each answered user turn into
its stages, from the end of the user's speech to the first bot audio out.

The points of a turn, each the loop time at which its frame was first pushed:

1. end of user speech: the last ``VADUserStoppedSpeakingFrame`` before the reply
   (a ``UserStoppedSpeakingFrame`` when no VAD frame comes, as with STT engines that
   report turns themselves);
2. final transcript: the last ``TranscriptionFrame`` before the LLM response starts;
3. LLM response start: the first ``LLMFullResponseStartFrame``;
4. LLM first token: the first ``LLMTextFrame`` after it;
5. TTS first audio: the first ``TTSAudioRawFrame``;
6. first audio out: the output transport's ``BotStartedSpeakingFrame``, which it
   pushes right after writing the first chunk of bot audio.

The turn is answered at point 6; it is then reported as a
:class:`~flowcat.frames.TurnLatencyMetricsData` in a ``MetricsFrame`` pushed
downstream from the output transport, to the ``on_turn_latency`` event and in
:attr:`TurnLatencyObserver.turns`. If the user speaks again before point 6 the turn
is dropped (counted in ``interrupted`` when a reply had started). At the end of the
call, :attr:`TurnLatencyObserver.summary` holds p50/p95 per stage (also logged and
sent to ``on_summary``).

Like every observer it costs nothing unless attached (``PipelineTask(...,
observers=[TurnLatencyObserver()])``); attached, it looks only at the frame types
above, and does no work per audio frame beyond a type check.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from ..frames import (
    BotStartedSpeakingFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TurnLatencyMetricsData,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from ._direction import FrameDirection
from ._events import EventEmitter
from ._observer import BaseObserver, FramePushed

__all__ = ["StageStats", "TurnLatencyObserver", "TurnLatencySummary"]

logger = logging.getLogger("flowcat.latency")

STAGES = ("stt", "turn", "llm", "tts", "output", "total")
_STARTS = (VADUserStartedSpeakingFrame, UserStartedSpeakingFrame)


@dataclass(slots=True)
class StageStats:
    """One stage over the answered turns of a call (seconds, nearest-rank percentiles)."""

    count: int = 0
    p50: float | None = None
    p95: float | None = None
    max: float | None = None


@dataclass(slots=True)
class TurnLatencySummary:
    """The call's latency breakdown: answered and interrupted turns, and stats per stage
    (keys ``stt``, ``turn``, ``llm``, ``tts``, ``output``, ``total``)."""

    turns: int = 0
    interrupted: int = 0
    stages: dict[str, StageStats] = field(default_factory=dict)


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class TurnLatencyObserver(BaseObserver, EventEmitter):
    """Records the latency breakdown of every answered user turn.

    Args:
        push_metrics: Push each turn's record as a ``MetricsFrame`` (downstream, from the
            output transport).
        name: ``processor`` name in the metrics records.

    Events:
        on_turn_latency(observer, data): a turn was answered (``TurnLatencyMetricsData``).
        on_summary(observer, summary): the call ended (``TurnLatencySummary``).

    Attributes:
        turns: The answered turns' records, in order.
        interrupted: Turns whose reply had started when the user spoke again.
        summary: Set when the call ends.
    """

    frame_types = (
        VADUserStartedSpeakingFrame,
        UserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
        UserStoppedSpeakingFrame,
        TranscriptionFrame,
        LLMFullResponseStartFrame,
        LLMTextFrame,
        TTSAudioRawFrame,
        BotStartedSpeakingFrame,
    )
    _event_names = ("on_turn_latency", "on_summary")

    def __init__(self, *, push_metrics: bool = True, name: str = "TurnLatencyObserver") -> None:
        self.push_metrics = push_metrics
        self.name = name
        self.turns: list[TurnLatencyMetricsData] = []
        self.interrupted = 0
        self.summary: TurnLatencySummary | None = None
        self._transcript: int | None = None
        self._transcript_frame = -1
        self._reset()

    def _reset(self) -> None:
        self._stop: int | None = None
        self._vad_stop_secs: float | None = None
        self._llm_start: int | None = None
        self._first_token: int | None = None
        self._tts_audio: int | None = None

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        t = data.timestamp
        if isinstance(frame, TTSAudioRawFrame):
            if self._stop is not None and self._tts_audio is None:
                self._tts_audio = t
        elif isinstance(frame, LLMTextFrame):
            if self._llm_start is not None and self._first_token is None:
                self._first_token = t
        elif isinstance(frame, TranscriptionFrame):
            if frame.id != self._transcript_frame and self._llm_start is None:
                self._transcript_frame = frame.id
                self._transcript = t
        elif isinstance(frame, LLMFullResponseStartFrame):
            if self._stop is not None and self._llm_start is None:
                self._llm_start = t
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            if self._llm_start is None:
                self._stop = t
                self._vad_stop_secs = frame.stop_secs or None
        elif isinstance(frame, UserStoppedSpeakingFrame):
            if self._stop is None:
                self._stop = t
        elif isinstance(frame, _STARTS):
            if self._stop is not None:
                if self._llm_start is not None:
                    self.interrupted += 1
                    self._transcript = None
                self._reset()
        elif isinstance(frame, BotStartedSpeakingFrame) and self._stop is not None:
            await self._answered(data, t)

    async def _answered(self, data: FramePushed, out: int) -> None:
        stop = self._stop
        assert stop is not None  # noqa: S101 - invariant (type narrowing), not input validation
        last = stop
        stages: list[float | None] = []
        for point in (self._transcript, self._llm_start, self._first_token, self._tts_audio, out):
            if point is None:
                stages.append(None)
                continue
            point = max(point, last)
            stages.append((point - last) / 1e9)
            last = point
        record = TurnLatencyMetricsData(
            processor=self.name,
            turn=len(self.turns) + 1,
            user_stopped_at=stop / 1e9,
            vad_stop_secs=self._vad_stop_secs,
            stt_secs=stages[0],
            turn_secs=stages[1],
            llm_secs=stages[2],
            tts_secs=stages[3],
            output_secs=stages[4],
            total_secs=(out - stop) / 1e9,
        )
        self._transcript = None
        self._reset()
        self.turns.append(record)
        if self.push_metrics:
            src = data.source
            sched = src._sched
            if sched is not None:
                sched.submit(src, MetricsFrame(data=[record]), FrameDirection.DOWNSTREAM)
        await self._call_event_handler("on_turn_latency", record)

    def summarize(self) -> TurnLatencySummary:
        """Stats per stage over the turns answered so far."""
        out = TurnLatencySummary(turns=len(self.turns), interrupted=self.interrupted)
        for stage in STAGES:
            values = [v for v in (getattr(r, f"{stage}_secs") for r in self.turns) if v is not None]
            out.stages[stage] = (
                StageStats(len(values), _percentile(values, 50), _percentile(values, 95), max(values))
                if values
                else StageStats()
            )
        return out

    async def on_pipeline_finished(self, frame: Any) -> None:
        summary = self.summary = self.summarize()
        if summary.turns:
            logger.info("turn latency: %d turns answered, %d interrupted", summary.turns, summary.interrupted)
            for stage, st in summary.stages.items():
                if st.count:
                    logger.info(
                        "turn latency %-6s p50 %7.1f ms  p95 %7.1f ms  (n=%d)",
                        stage, (st.p50 or 0) * 1e3, (st.p95 or 0) * 1e3, st.count,
                    )
        await self._call_event_handler("on_summary", summary)
