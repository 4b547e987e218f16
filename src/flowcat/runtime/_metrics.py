"""Metrics helpers mixed into :class:`~flowcat.runtime.FrameProcessor`.

A processor that measures (a service) returns True from ``can_generate_metrics``
and calls ``start_ttfb_metrics`` / ``stop_ttfb_metrics``, ``start_processing_metrics``
/ ``stop_processing_metrics``, ``start_llm_usage_metrics`` and
``start_tts_usage_metrics``. Each report is a :class:`~flowcat.frames.MetricsFrame`
pushed downstream, only when the StartFrame enabled metrics (usage metrics need
``enable_usage_metrics``). Times are event-loop seconds, so virtual-time tests
see exact values.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..frames import (
    LLMTokenUsage,
    LLMUsageMetricsData,
    MetricsData,
    MetricsFrame,
    ProcessingMetricsData,
    StartFrame,
    TTFBMetricsData,
    TTSUsageMetricsData,
)

if TYPE_CHECKING:
    from ..frames import Frame
    from ._direction import FrameDirection

__all__ = ["ProcessorMetrics"]


class ProcessorMetrics:
    """TTFB, processing-time and usage metrics for a processor."""

    __slots__ = (
        "_metrics_enabled",
        "_only_initial_ttfb",
        "_processing_start",
        "_ttfb_reported",
        "_ttfb_start",
        "_usage_enabled",
    )

    _name: str
    model_name: str | None = None

    if TYPE_CHECKING:

        async def push_frame(self, frame: Frame, direction: FrameDirection = ...) -> None: ...

    def __init__(self) -> None:
        self._metrics_enabled = False
        self._usage_enabled = False
        self._only_initial_ttfb = False
        self._ttfb_start: float | None = None
        self._ttfb_reported = False
        self._processing_start: float | None = None

    def can_generate_metrics(self) -> bool:
        """Whether this processor reports metrics. Services override to return True."""
        return False

    def _configure_metrics(self, frame: StartFrame) -> None:
        can = self.can_generate_metrics()
        self._metrics_enabled = can and frame.enable_metrics
        self._usage_enabled = can and frame.enable_usage_metrics
        self._only_initial_ttfb = frame.report_only_initial_ttfb

    def _reset_metrics_on_interruption(self) -> None:
        self._ttfb_start = None
        self._processing_start = None

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    async def _push_metrics(self, data: MetricsData) -> None:
        await self.push_frame(MetricsFrame(data=[data]))

    async def start_ttfb_metrics(self) -> None:
        """Start timing the time to first byte."""
        if self._metrics_enabled and not (self._only_initial_ttfb and self._ttfb_reported):
            self._ttfb_start = self._now()

    async def stop_ttfb_metrics(self) -> None:
        """Stop timing TTFB and report it (once per start)."""
        start = self._ttfb_start
        if start is None:
            return
        self._ttfb_start = None
        self._ttfb_reported = True
        await self._push_metrics(TTFBMetricsData(self._name, self.model_name, self._now() - start))

    async def start_processing_metrics(self) -> None:
        """Start timing processing."""
        if self._metrics_enabled:
            self._processing_start = self._now()

    async def stop_processing_metrics(self) -> None:
        """Stop timing processing and report it."""
        start = self._processing_start
        if start is None:
            return
        self._processing_start = None
        await self._push_metrics(ProcessingMetricsData(self._name, self.model_name, self._now() - start))

    async def start_llm_usage_metrics(
        self, tokens: LLMTokenUsage, *, on_behalf_of: tuple[str, str | None] | None = None
    ) -> None:
        """Report LLM token usage (``on_behalf_of``: the ``(processor, model)`` label of the
        service that used the tokens, when it is not this one: a fallback's provider)."""
        if self._usage_enabled:
            name, model = on_behalf_of or (self._name, self.model_name)
            await self._push_metrics(LLMUsageMetricsData(name, model, tokens))

    async def start_tts_usage_metrics(self, text: str) -> None:
        """Report TTS character usage."""
        if self._usage_enabled:
            await self._push_metrics(TTSUsageMetricsData(self._name, self.model_name, len(text)))

    def _metrics_state(self) -> dict[str, Any]:
        return {"metrics": self._metrics_enabled, "usage": self._usage_enabled}
