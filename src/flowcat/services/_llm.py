"""LLMService: one streaming generation at a time, metrics, retries, function calls.

A provider implements :meth:`LLMService.run_inference`, an async generator of
provider-neutral chunks (:class:`LLMTextDelta`, :class:`LLMToolCallDelta`,
:class:`~flowcat.frames.LLMTokenUsage`). The base does the rest:

* an ``LLMContextFrame`` starts a generation in a call-owned background task
  (``cancel_on_interruption=True``); ``process_frame`` never awaits I/O. While it
  runs, the service holds the frames arriving behind it (the processor is paused),
  so they leave after the response, in order, as in pipecat where the service is
  busy until the response ends; an interruption drops the held interruptible ones;
* it pushes ``LLMFullResponseStartFrame``, ``LLMTextFrame`` per text delta and
  ``LLMFullResponseEndFrame`` (also after a failure), reports TTFB (context to first
  chunk), processing time and token usage;
* failures before the first chunk are retried with backoff when retryable,
  bounded by ``request_timeout_secs`` (to the first chunk) and
  ``chunk_timeout_secs`` (between chunks); a failure is pushed upstream as a
  non-fatal ``ErrorFrame`` with the key masked (so is a context its adapter cannot
  convert, :class:`~flowcat.errors.LLMContextConversionError`: nothing is sent);
* tool calls of the response are run as described in :mod:`._functions`;
* preemptive generation (``docs/turns.md``): an ``LLMContextFrame(speculation=True,
  generation_id=g)`` is answered like any other, but ``EagerEndOfTurnCancelFrame(g)``
  (either direction) stops it, and if it asks for tools before its turn is confirmed
  (``EagerEndOfTurnConfirmFrame(g)``) the speculation is withdrawn instead (a
  broadcast ``EagerEndOfTurnCancelFrame(g)``): a tool's side effects cannot be held,
  and the confirmed turn then runs the LLM again;
* an ``LLMContextSummaryRequestFrame`` (from the assistant aggregator) is answered in a
  background task by :func:`~flowcat.services.generate_summary` with this service, as a
  broadcast ``LLMContextSummaryResultFrame`` (:mod:`._summary`); it is not passed on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import LLMContextConversionError, ServiceError, ServiceTimeout
from ..frames import (
    CancelFrame,
    EagerEndOfTurnCancelFrame,
    EagerEndOfTurnConfirmFrame,
    EndFrame,
    Frame,
    FunctionCallFromLLM,
    InputAudioRawFrame,
    LLMContext,
    LLMContextFrame,
    LLMContextSummaryRequestFrame,
    LLMContextSummaryResultFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    LLMTokenUsage,
    LLMUpdateSettingsFrame,
)
from ..runtime import FrameDirection
from ._ai_service import AIService, ServiceCapabilities
from ._backoff import Backoff, ChunkTimer, Deadline, retry_call
from ._functions import INVALID_ARGUMENTS, FunctionCalling
from ._summary import generate_summary

__all__ = ["LLMChunk", "LLMService", "LLMTextDelta", "LLMToolCallDelta"]

logger = logging.getLogger("flowcat.services.llm")


@dataclass(slots=True)
class LLMTextDelta:
    """A piece of the response text."""

    text: str


@dataclass(slots=True)
class LLMToolCallDelta:
    """A piece of a tool call; pieces with the same ``index`` are joined (OpenAI's streaming rule).

    Attributes:
        index: Which tool call of the response this piece belongs to.
        id: The call id (usually on the first piece only).
        name: The function name (usually on the first piece only).
        arguments: A fragment of the JSON arguments.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


LLMChunk = LLMTextDelta | LLMToolCallDelta | LLMTokenUsage


class _ToolAcc:
    __slots__ = ("args", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.args: list[str] = []


class LLMService(AIService, FunctionCalling):
    """Base of the LLM services.

    Args:
        run_in_parallel: Run a response's tool calls concurrently (else in order).
        group_parallel_tools: The calls of one response form a group: the LLM runs once, after
            the last of them settles (True). False: each result runs the LLM as it arrives.
        function_call_timeout_secs: Default bound on a tool call (None: unbounded).
        request_timeout_secs: Bound from the request to the first chunk (all attempts).
        chunk_timeout_secs: Bound on the wait for each following chunk.
        retry: Backoff for retryable failures before the first chunk.
        fallback_text: Said when a response fails (no answer in time, the stream broken or
            stalled, every attempt refused): pushed as the response's text after the part
            already said, so the caller hears it instead of silence (the failure is still
            reported as an ``ErrorFrame``). None: the response just ends.
        **kwargs: :class:`~flowcat.services.AIService` arguments.
    """

    inline_frames: ClassVar[tuple[type[Frame], ...]] = (InputAudioRawFrame,)
    """Input audio (50 frames/s per call) passes this service with a plain call. A subclass
    that overrides ``handle_frame`` (a speech-to-speech service consuming audio) sees it there."""

    inline_passes_input_audio: ClassVar[bool] = True
    """Its ``process_inline`` only passes input audio on: a subclass that overrides
    ``handle_frame`` without its own ``process_inline`` gets no inline frames (its
    ``handle_frame`` sees the audio, as a speech-to-speech service needs)."""

    def process_inline(self, frame: Frame, direction: FrameDirection) -> Any:
        """Pass input audio on untouched."""
        return frame

    settings_frame_type = LLMUpdateSettingsFrame
    capabilities = ServiceCapabilities(function_calling=True, parallel_tool_calls=True, transport="sse")

    def __init__(
        self,
        *,
        run_in_parallel: bool = True,
        group_parallel_tools: bool = True,
        function_call_timeout_secs: float | None = None,
        request_timeout_secs: float = 30.0,
        chunk_timeout_secs: float = 30.0,
        retry: Backoff | None = None,
        fallback_text: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fallback_text = fallback_text
        self._response_text_pushed = False  # the response being generated pushed text
        self._init_functions(run_in_parallel=run_in_parallel, group_parallel_tools=group_parallel_tools,
                             function_call_timeout_secs=function_call_timeout_secs)
        self.request_timeout_secs = request_timeout_secs
        self.chunk_timeout_secs = chunk_timeout_secs
        self.retry = retry if retry is not None else Backoff()
        self._gen_task: asyncio.Task[None] | None = None
        self._speculation = 0  # generation id of the unconfirmed speculative context answered (0: none)
        self._cleanups: list[Callable[[], Awaitable[None]]] = []
        self._register_event_handler("on_completion_timeout")

    # ---------------------------------------------------------- provider seam

    def run_inference(self, context: LLMContext) -> AsyncGenerator[LLMChunk, None]:
        """Stream the model's answer to ``context`` as chunks. Providers implement this.

        Raise :class:`~flowcat.errors.ServiceError` subclasses for failures (use
        :func:`~flowcat.services.raise_for_status` for HTTP statuses). Closing the
        generator (interruption, cancel) must close the request.
        """
        raise NotImplementedError

    async def run_inference_text(self, context: LLMContext) -> str:
        """The model's whole text answer to ``context``, outside any pipeline (a summary, a
        classification): :meth:`run_inference` run to the end, its text deltas joined.

        Raises:
            ServiceError: As :meth:`run_inference` (no retry here: the caller bounds and retries).
        """
        parts: list[str] = []
        gen = self.run_inference(context)
        try:
            async for chunk in gen:
                if isinstance(chunk, LLMTextDelta):
                    parts.append(chunk.text)
        finally:
            await gen.aclose()
        return "".join(parts)

    def tools_for(self, context: LLMContext) -> list[dict[str, Any]] | None:
        """OpenAI-style ``tools`` for a request: the context's, plus registered direct functions."""
        tools: list[dict[str, Any]] = []
        ctx_tools = context.tools
        if ctx_tools:
            items = getattr(ctx_tools, "standard_tools", ctx_tools)
            for t in items:
                tools.append(t.to_openai() if hasattr(t, "to_openai") else t)
        names = {t.get("function", {}).get("name") for t in tools}
        for schema in self.tool_schemas():
            if schema.name not in names:
                tools.append(schema.to_openai())
        return tools or None

    # ------------------------------------------------------------- frames

    async def handle_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, LLMContextFrame):
            self._speculation = frame.generation_id if frame.speculation else 0
            self.start_generation(frame.context)
            return
        cls = type(frame)
        if cls is EagerEndOfTurnCancelFrame:
            spec = self._speculation
            if spec and frame.generation_id in (0, spec):  # type: ignore[attr-defined]
                self._speculation = 0
                await self.cancel_generation()
        elif cls is EagerEndOfTurnConfirmFrame and frame.generation_id == self._speculation:  # type: ignore[attr-defined]
            self._speculation = 0
        elif cls is LLMContextSummaryRequestFrame:
            self.create_task(self._summarize(frame), "context_summary", generation_bound=False)  # type: ignore[arg-type]
            return
        await self.push_frame(frame, direction)

    async def _summarize(self, request: LLMContextSummaryRequestFrame) -> None:
        summary, error = "", None
        try:
            summary = await generate_summary(self, request)
        except Exception as exc:  # noqa: BLE001 - any failure still answers, or the aggregator waits for good
            error = str(exc) or type(exc).__name__
            logger.warning("%s: context summary %s failed: %r", self, request.request_id, exc)
        await self.broadcast_frame(
            LLMContextSummaryResultFrame, request_id=request.request_id, summary=summary,
            last_summarized_index=request.last_summarized_index if error is None else -1, error=error,
        )

    async def on_interruption(self) -> None:
        self._function_interruption()

    def start_generation(self, context: LLMContext) -> None:
        """Start answering ``context`` now (frames behind it wait until the response ends)."""
        if self._sched is not None:
            self.pause_processing_frames()
        task = self._gen_task = self.create_task(
            self._generate(context, self._llm_generation), "llm_generation", cancel_on_interruption=True
        )
        task.add_done_callback(self._generation_done)

    def _generation_done(self, task: asyncio.Task[None]) -> None:
        # A task cancelled before its first step never runs its ``finally``: release
        # the frames held behind it here, or the service stays paused for good.
        if self._gen_task is task:
            self._gen_task = None
            self._resume_held_frames()

    @property
    def generating(self) -> bool:
        """Whether a response is being generated."""
        return self._gen_task is not None and not self._gen_task.done()

    async def cancel_generation(self) -> None:
        """Stop the response being generated and discard its tool calls (preemptive generation)."""
        self.discard_generation()
        task = self._gen_task
        if task is not None:
            await self.cancel_task(task)

    async def _generate(self, context: LLMContext, generation: int) -> None:
        try:
            await self.push_frame(LLMFullResponseStartFrame())
            await self.start_processing_metrics()
            await self.start_ttfb_metrics()
            self._response_text_pushed = False
            try:
                calls = await self._stream(context)
            except (ServiceError, LLMContextConversionError) as exc:
                await self.push_service_error(exc, "completion failed")
                calls = []
                if self.fallback_text:
                    await self.push_frame(LLMTextFrame((" " if self._response_text_pushed else "") + self.fallback_text))
            await self.stop_processing_metrics()
            if calls and self._speculation:
                spec, self._speculation = self._speculation, 0
                logger.debug("%s: speculative generation %d asks for tools: withdrawn", self, spec)
                await self.broadcast_frame(EagerEndOfTurnCancelFrame, generation_id=spec)
                calls = []
            if calls:
                await self.run_function_calls(calls, generation)
            await self.push_frame(LLMFullResponseEndFrame())
        finally:
            self._gen_task = None
            self._resume_held_frames()

    async def _stream(self, context: LLMContext) -> list[FunctionCallFromLLM]:
        deadline = Deadline(self.request_timeout_secs)
        tools: dict[int, _ToolAcc] = {}

        async def attempt(n: int) -> None:
            emitted = False
            tools.clear()
            # Once output went downstream the attempt is not retried (never replay half a response).
            with self._attempt_errors(lambda: emitted):
                async with aclosing(self.run_inference(context)) as agen:
                    # The chunk loop with its first-answer and between-chunk timeouts is
                    # repeated in _tts.py (TTSService._speak) on purpose: a shared async generator would
                    # add a layer per chunk, and TTS chunks are the bot's audio.
                    it = agen.__aiter__()
                    timer = ChunkTimer()
                    try:
                        async with timer:
                            while True:
                                timer.expect(self.chunk_timeout_secs if emitted else deadline.remaining())
                                try:
                                    chunk = await it.__anext__()
                                except StopAsyncIteration:
                                    return
                                timer.pause()
                                if not emitted:
                                    emitted = True
                                    await self.stop_ttfb_metrics()
                                await self._on_chunk(chunk, tools)
                    except TimeoutError:
                        await self._call_event_handler("on_completion_timeout")
                        what = "chunk" if emitted else "answer"
                        raise ServiceTimeout(f"{self.name}: no {what}{timer.within()}") from None

        await retry_call(attempt, backoff=self.retry, deadline=deadline, what=self.name)
        return [self._tool_call(acc, context) for _, acc in sorted(tools.items())]

    async def _on_chunk(self, chunk: LLMChunk, tools: dict[int, _ToolAcc]) -> None:
        if isinstance(chunk, LLMTextDelta):
            if chunk.text:
                self._response_text_pushed = True
                await self.push_frame(LLMTextFrame(chunk.text))
        elif isinstance(chunk, LLMToolCallDelta):
            acc = tools.get(chunk.index)
            if acc is None:
                acc = tools[chunk.index] = _ToolAcc()
            if chunk.id:
                acc.id = chunk.id
            if chunk.name:
                acc.name += chunk.name
            if chunk.arguments:
                acc.args.append(chunk.arguments)
        elif isinstance(chunk, LLMTokenUsage):
            await self.start_llm_usage_metrics(chunk)

    def _tool_call(self, acc: _ToolAcc, context: LLMContext) -> FunctionCallFromLLM:
        raw = "".join(acc.args).strip()
        args: dict[str, Any] = INVALID_ARGUMENTS
        try:
            parsed = json.loads(raw) if raw else {}
            if isinstance(parsed, dict):
                args = parsed
        except ValueError:
            pass
        if args is INVALID_ARGUMENTS:
            self.bad_input(f"tool call {acc.name!r} with arguments that are not a JSON object", raw)
        return FunctionCallFromLLM(acc.name, acc.id, args, context)

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        await self.cancel_function_calls("end of the pipeline")

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self.cancel_function_calls("pipeline cancelled")

    async def cleanup(self) -> None:
        await super().cleanup()
        task = self._seq_task
        if task is not None and not task.done():
            task.cancel()
        for callback in list(self._cleanups):
            try:
                await callback()
            except Exception as exc:
                logger.warning("%s: a cleanup callback failed: %r", self.name, exc)

    def add_cleanup(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Await ``callback()`` when the service is cleaned up (the end of its pipeline).

        For resources its tools hold (an MCP session); a callback already added is not
        added again.
        """
        if callback not in self._cleanups:
            self._cleanups.append(callback)
