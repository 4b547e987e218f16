"""Context summarization as the assistant half of the context aggregator pair asks for it (see
:mod:`._summary`): at the start of a reply when the context passes a bound, or at once on
``LLMSummarizeContextFrame``; a dedicated summarizer LLM is called directly, otherwise the request
goes upstream to the pipeline's LLM."""

from __future__ import annotations

from typing import Any

from ..frames import LLMContextSummaryRequestFrame, LLMContextSummaryResultFrame
from ..runtime import FrameDirection, FrameProcessor
from ._summary import ContextSummarizer, LLMContextSummaryConfig, summarize_with
from ._tool_calls import ToolCalls

__all__ = ["AssistantSummaries"]

UPSTREAM = FrameDirection.UPSTREAM


class AssistantSummaries(FrameProcessor):
    """Summary requests and results (a base of :class:`~flowcat.agent.LLMAssistantAggregator`, whose
    constructor sets these fields)."""

    summarizer: ContextSummarizer
    _tools: ToolCalls

    async def _request_summary(self, config: LLMContextSummaryConfig | None) -> None:
        made = self.summarizer.request(config, self._tools.calls.keys())
        if made is None:
            return
        request, cfg = made
        if cfg.llm is not None:  # a dedicated summarizer: called directly, the pipeline's LLM is not involved
            self.create_task(self._summarize_with(cfg.llm, request), "context_summary")
        else:
            await self.push_frame(request, UPSTREAM)

    async def _summarize_with(self, llm: Any, request: LLMContextSummaryRequestFrame) -> None:
        await self._summary_result(await summarize_with(llm, request))

    async def _summary_result(self, frame: LLMContextSummaryResultFrame) -> None:
        event = self.summarizer.result(frame)
        if event is not None:
            await self._call_event_handler("on_summary_applied", self.summarizer, event)
