"""The events of a playground call: an observer on its pipeline, buffered until the page listens.

Each event is a JSON object ``{"type": ..., "data": {...}, "ts": <unix seconds>}``:

=========================  ====================================================================
``user-started-speaking``  the user turn started (``UserStartedSpeakingFrame``)
``user-stopped-speaking``  the user turn ended (``UserStoppedSpeakingFrame``)
``user-transcription``     ``{"text", "final"}``: interim (``final`` false) or final transcript
``bot-llm-started``        the LLM's response started (``LLMFullResponseStartFrame``)
``bot-text``               ``{"text"}``: a piece of the LLM's response (``LLMTextFrame``)
``bot-llm-stopped``        the LLM's response ended (``LLMFullResponseEndFrame``)
``bot-started-speaking``   the first chunk of a reply left the server
``bot-stopped-speaking``   the reply's audio ended
``function-call-start``    ``{"name", "id", "arguments"}`` (``FunctionCallInProgressFrame``)
``function-call-end``      ``{"name", "id", "result"}`` (``FunctionCallResultFrame``)
``turn-latency``           ``{"turn", "stt_ms", "turn_ms", "llm_ms", "tts_ms", "output_ms", "total_ms"}``:
                           end of speech → STT final → LLM response start → first token →
                           TTS first audio → first audio out (``TurnLatencyObserver``)
``call-ended``             ``{"reason"}``: the last event of the call
=========================  ====================================================================

An observer sees every hop of a frame; each frame is reported once (by its id), a
function call's start and end once per call id, and speaking events only when the
state changes (the output pushes its bot-speaking frames both ways, the LLM its
function call frames, each direction a frame of its own). The observer asks only for these frame types, so audio frames
cost it nothing. Events are kept in a bounded buffer until a listener (the page's
``/api/events`` socket) takes them; then they go straight to it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from ..frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    InterimTranscriptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TurnLatencyMetricsData,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from ..runtime import BaseObserver, FramePushed

__all__ = ["CallEvents", "EventsObserver", "latency_event"]

_STAGES = ("stt", "turn", "llm", "tts", "output", "total")


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return repr(value)


class CallEvents:
    """One call's event stream: a bounded buffer, and the listeners' queues once they connect.

    Args:
        max_buffered: Events kept for a page that has not connected yet (older ones dropped).
    """

    def __init__(self, max_buffered: int = 2000) -> None:
        self._buffer: deque[dict[str, Any]] = deque(maxlen=max_buffered)
        self._listeners: list[asyncio.Queue[dict[str, Any] | None]] = []
        self.ended = False

    def emit(self, type_: str, data: dict[str, Any] | None = None) -> None:
        """Record one event (synchronous)."""
        if self.ended:
            return
        event = {"type": type_, "data": data or {}, "ts": round(time.time(), 3)}
        self._buffer.append(event)
        for q in self._listeners:
            q.put_nowait(event)
        if type_ == "call-ended":
            self.ended = True
            for q in self._listeners:
                q.put_nowait(None)

    def listen(self) -> asyncio.Queue[dict[str, Any] | None]:
        """A queue with every event so far, then each new one; None after ``call-ended``."""
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        for event in self._buffer:
            q.put_nowait(event)
        if self.ended:
            q.put_nowait(None)
        else:
            self._listeners.append(q)
        return q

    def unlisten(self, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        if q in self._listeners:
            self._listeners.remove(q)

    @property
    def buffered(self) -> list[dict[str, Any]]:
        """The events kept so far (oldest first)."""
        return list(self._buffer)


def latency_event(record: TurnLatencyMetricsData) -> dict[str, Any]:
    """The ``turn-latency`` event's data for one answered turn (milliseconds, None where unknown)."""
    out: dict[str, Any] = {"turn": record.turn}
    for stage in _STAGES:
        secs = getattr(record, f"{stage}_secs")
        out[f"{stage}_ms"] = None if secs is None else round(secs * 1000, 1)
    return out


class EventsObserver(BaseObserver):
    """Turns a call's frames into :class:`CallEvents` (see the module docstring)."""

    frame_types = (
        UserStartedSpeakingFrame,
        UserStoppedSpeakingFrame,
        TranscriptionFrame,
        InterimTranscriptionFrame,
        LLMFullResponseStartFrame,
        LLMTextFrame,
        LLMFullResponseEndFrame,
        BotStartedSpeakingFrame,
        BotStoppedSpeakingFrame,
        FunctionCallInProgressFrame,
        FunctionCallResultFrame,
    )

    def __init__(self, events: CallEvents) -> None:
        self.events = events
        self._seen: deque[int] = deque(maxlen=64)
        self._calls: deque[tuple[str, str]] = deque(maxlen=64)
        self._bot_speaking = False
        self._user_speaking = False

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        emit = self.events.emit
        if isinstance(frame, BotStartedSpeakingFrame | BotStoppedSpeakingFrame):
            speaking = isinstance(frame, BotStartedSpeakingFrame)
            if speaking != self._bot_speaking:
                self._bot_speaking = speaking
                emit("bot-started-speaking" if speaking else "bot-stopped-speaking")
            return
        if isinstance(frame, UserStartedSpeakingFrame | UserStoppedSpeakingFrame):
            speaking = isinstance(frame, UserStartedSpeakingFrame)
            if speaking != self._user_speaking:
                self._user_speaking = speaking
                emit("user-started-speaking" if speaking else "user-stopped-speaking")
            return
        fid = frame.id
        if fid in self._seen:
            return
        self._seen.append(fid)
        if isinstance(frame, TranscriptionFrame):
            emit("user-transcription", {"text": frame.text, "final": True})
        elif isinstance(frame, InterimTranscriptionFrame):
            emit("user-transcription", {"text": frame.text, "final": False})
        elif isinstance(frame, LLMTextFrame):
            emit("bot-text", {"text": frame.text})
        elif isinstance(frame, LLMFullResponseStartFrame):
            emit("bot-llm-started")
        elif isinstance(frame, LLMFullResponseEndFrame):
            emit("bot-llm-stopped")
        elif isinstance(frame, FunctionCallInProgressFrame | FunctionCallResultFrame):
            # The LLM pushes each of these both ways, as two frames: one event per call id.
            key = (type(frame).__name__, frame.tool_call_id)
            if key in self._calls:
                return
            self._calls.append(key)
            self._function_call(frame)

    def _function_call(self, frame: FunctionCallInProgressFrame | FunctionCallResultFrame) -> None:
        emit = self.events.emit
        if isinstance(frame, FunctionCallInProgressFrame):
            emit(
                "function-call-start",
                {"name": frame.function_name, "id": frame.tool_call_id, "arguments": _jsonable(frame.arguments)},
            )
        else:
            emit(
                "function-call-end",
                {"name": frame.function_name, "id": frame.tool_call_id, "result": _jsonable(frame.result)},
            )
