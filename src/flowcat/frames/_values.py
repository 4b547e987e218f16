"""Value types carried by frames: keypad entries, metrics data, token usage, function calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "FunctionCallFromLLM",
    "KeypadEntry",
    "LLMTokenUsage",
    "LLMUsageMetricsData",
    "MetricsData",
    "ProcessingMetricsData",
    "TTFBMetricsData",
    "TTSUsageMetricsData",
    "TurnLatencyMetricsData",
    "TurnMetricsData",
]


class KeypadEntry(StrEnum):
    """A DTMF key. Values are the characters printed on the keypad (A–D included)."""

    ONE = "1"
    TWO = "2"
    THREE = "3"
    FOUR = "4"
    FIVE = "5"
    SIX = "6"
    SEVEN = "7"
    EIGHT = "8"
    NINE = "9"
    ZERO = "0"
    POUND = "#"
    STAR = "*"
    A = "A"
    B = "B"
    C = "C"
    D = "D"


@dataclass(slots=True)
class MetricsData:
    """Base of metrics records: which processor (and model) produced it."""

    processor: str
    model: str | None = None


@dataclass(slots=True)
class TTFBMetricsData(MetricsData):
    """Time to first byte, seconds."""

    value: float = 0.0


@dataclass(slots=True)
class ProcessingMetricsData(MetricsData):
    """Processing time, seconds."""

    value: float = 0.0


@dataclass(slots=True)
class LLMTokenUsage:
    """Token counts reported by an LLM."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    input_audio_tokens: int | None = None
    """Of ``prompt_tokens``, those that were audio (speech-to-speech models; None: not reported)."""
    input_text_tokens: int | None = None
    """Of ``prompt_tokens``, those that were text."""
    output_audio_tokens: int | None = None
    """Of ``completion_tokens``, those that were audio."""
    output_text_tokens: int | None = None
    """Of ``completion_tokens``, those that were text."""


@dataclass(slots=True)
class LLMUsageMetricsData(MetricsData):
    """LLM token usage."""

    value: LLMTokenUsage = field(default_factory=LLMTokenUsage)


@dataclass(slots=True)
class TTSUsageMetricsData(MetricsData):
    """Characters sent to a TTS service."""

    value: int = 0


@dataclass(slots=True)
class TurnMetricsData(MetricsData):
    """End-of-turn prediction: completeness, probability and inference time (ms)."""

    is_complete: bool = False
    probability: float = 0.0
    e2e_processing_time_ms: float = 0.0


@dataclass(slots=True)
class TurnLatencyMetricsData(MetricsData):
    """Where one answered user turn's response time went, stage by stage (seconds).

    A stage not seen in the turn is None and the next stage runs from the last point
    that was seen; a point reached before the previous one (a final transcript that
    came before the VAD stop) counts as reached with it, so the stages that were seen
    add up to ``total_secs``.

    Attributes:
        turn: 1-based number of the answered turn in the call.
        user_stopped_at: Loop time (s) of the end of user speech (the VAD stop, else the
            user-turn stop).
        vad_stop_secs: Silence the VAD waited before reporting the stop (its hangover).
        stt_secs: End of user speech → final transcript.
        turn_secs: Final transcript → the LLM response starting (the end-of-turn decision).
        llm_secs: LLM response start → its first text token.
        tts_secs: First LLM token → first TTS audio.
        output_secs: First TTS audio → first bot audio written by the output transport.
        total_secs: End of user speech → first bot audio out.
    """

    turn: int = 0
    user_stopped_at: float = 0.0
    vad_stop_secs: float | None = None
    stt_secs: float | None = None
    turn_secs: float | None = None
    llm_secs: float | None = None
    tts_secs: float | None = None
    output_secs: float | None = None
    total_secs: float = 0.0


@dataclass(slots=True)
class FunctionCallFromLLM:
    """A tool call requested by an LLM."""

    function_name: str
    tool_call_id: str
    arguments: dict[str, Any]
    context: Any = None
