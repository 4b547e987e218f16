"""FallbackLLMService: several LLM providers behind one LLM service, with optional hedging.

The fallback is an :class:`~flowcat.services.LLMService` whose ``run_inference`` runs
its providers' ``run_inference`` (the seam), so the frames, metrics, interruptions and
tool calls are the base's, done once. Per request:

* the providers are tried in order (skipping those whose breaker is open, see
  :class:`~flowcat.services.FallbackPolicy`); each gets ``policy.retry`` attempts
  (default one) bounded by its own ``request_timeout_secs`` to the first chunk; a failure
  that the policy fails over on moves the **same context** to the next provider
  (``on_service_switched(fallback, from, to, error)``);
* once a provider produced its first chunk it serves the whole response; a failure after
  that is reported (no half answer twice) and counts against it for the next request;
* all providers failing is one ``ErrorFrame`` (the last failure) and an empty response;
* with ``hedge_after_secs``, when the first provider has produced nothing by then a
  second request starts (the next provider, or the same one when there is only one);
  the first to produce a chunk wins and the other is cancelled (its stream closed).

Metrics: TTFB and processing time are the fallback's (what the caller waited, failovers
included) with ``model`` set to the serving provider's; token usage is labelled with the
provider that used the tokens (``processor`` = its name), the hedge loser's included.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

from ..errors import ConfigError, ServiceError
from ..frames import Frame, LLMContext, LLMTokenUsage
from ..runtime import FrameDirection
from ._ai_service import drop_tracebacks
from ._backoff import Backoff
from ._fallback import FallbackGroup, FallbackPolicy, open_first
from ._function_schema import FunctionSchema
from ._llm import LLMChunk, LLMService

__all__ = ["FallbackLLMService"]

logger = logging.getLogger("flowcat.services.fallback")

_Opened = tuple[AsyncGenerator[LLMChunk, None], LLMChunk | None]


class FallbackLLMService(FallbackGroup[LLMService], LLMService):
    """One LLM service backed by several providers, tried in order.

    Args:
        services: The providers, most preferred first (not linked into any pipeline).
        policy: Which failures fail over, attempts per provider, the circuit breaker.
        hedge_after_secs: Start a second request when the first has produced nothing
            after this long (None: no hedging).
        request_timeout_secs: Bound from the context to the first chunk, all providers
            together (each provider's own ``request_timeout_secs`` bounds its attempts).
        chunk_timeout_secs: Bound on the wait for each following chunk.
        **kwargs: :class:`~flowcat.services.LLMService` arguments (``name``,
            ``run_in_parallel``, ``function_call_timeout_secs``).

    Attributes:
        active: The provider that served the last request.
        switches: Requests moved to another provider.
        hedges: Second requests started by hedging.
        hedges_won: Of those, how many answered first.

    Events: ``on_service_switched(fallback, from_service, to_service, error)``,
    ``on_hedge_started(fallback, first_service, second_service)``.
    """

    def __init__(
        self,
        services: Sequence[LLMService],
        *,
        policy: FallbackPolicy | None = None,
        hedge_after_secs: float | None = None,
        request_timeout_secs: float = 30.0,
        chunk_timeout_secs: float = 30.0,
        **kwargs: Any,
    ) -> None:
        if "retry" in kwargs:
            raise ConfigError("FallbackLLMService: attempts are per provider: pass policy=FallbackPolicy(retry=...)")
        super().__init__(retry=Backoff(max_attempts=1), request_timeout_secs=request_timeout_secs,
                         chunk_timeout_secs=chunk_timeout_secs, **kwargs)
        self._init_group(services, policy)
        if hedge_after_secs is not None and hedge_after_secs < 0:
            raise ConfigError(f"{self.name}: hedge_after_secs must be >= 0, got {hedge_after_secs}")
        self.hedge_after_secs = hedge_after_secs
        self.hedges = 0
        self.hedges_won = 0
        self.model_name = self.services[0].model_name
        self._usage_by: LLMService | None = None
        self._register_event_handler("on_hedge_started")

    # ------------------------------------------------------------ plumbing

    async def start(self, frame: Any) -> None:
        await super().start(frame)
        await self._start_services(frame)

    async def stop(self, frame: Any) -> None:
        await super().stop(frame)
        await self._stop_services(frame)

    async def cancel(self, frame: Any) -> None:
        await super().cancel(frame)
        await self._cancel_services(frame)

    async def update_settings(self, delta: Any) -> dict[str, Any]:
        """Apply a settings change to every provider that has those settings."""
        return await self._update_services(delta)

    async def handle_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, self.settings_frame_type) and frame.service in self.services:
            await frame.service.update_settings(frame.settings or {})
            return
        await super().handle_frame(frame, direction)

    def register_direct_function(
        self,
        fn: Callable[..., Awaitable[Any]],
        *,
        name: str | None = None,
        cancel_on_interruption: bool = True,
        timeout_secs: float | None = None,
    ) -> FunctionSchema:
        """Register a direct function here (it runs here) and its schema with every provider
        (each one builds its own request's ``tools``)."""
        schema = super().register_direct_function(fn, name=name, cancel_on_interruption=cancel_on_interruption,
                                                  timeout_secs=timeout_secs)
        for s in self.services:
            s.register_direct_function(fn, name=name)
        return schema

    def unregister_function(self, function_name: str | None) -> None:
        super().unregister_function(function_name)
        for s in self.services:
            s.unregister_function(function_name)

    async def start_llm_usage_metrics(
        self, tokens: LLMTokenUsage, *, on_behalf_of: tuple[str, str | None] | None = None
    ) -> None:
        """Report ``tokens`` labelled with the provider that used them."""
        by = self._usage_by or self.active
        await super().start_llm_usage_metrics(tokens, on_behalf_of=on_behalf_of or (by.name, by.model_name))

    # ------------------------------------------------------------ the seam

    async def run_inference(self, context: LLMContext) -> AsyncGenerator[LLMChunk, None]:
        candidates = self.candidates()
        failed: ServiceError | None = None
        prev: LLMService | None = None
        if self.hedge_after_secs is not None:
            opened, failed, prev, candidates = await self._hedge(context, candidates)
            if opened is not None:
                async for chunk in opened:
                    yield chunk
                return
        for svc in candidates:
            if prev is not None and failed is not None:
                await self.switched(prev, svc, failed)
            try:
                agen, first = await self._open(svc, context)
            except ServiceError as exc:
                self.record_failure(svc, exc)
                if not self.policy.fails_over(exc):
                    raise
                drop_tracebacks(exc)  # no cycle through this frame (nor its cause's: the provider's frames)
                failed, prev = exc, svc
                continue
            async for chunk in self._serve(svc, agen, first):
                yield chunk
            return
        assert failed is not None  # noqa: S101 - invariant (type narrowing), not input validation
        raise failed

    async def _open(self, svc: LLMService, context: LLMContext) -> _Opened:
        """Start ``svc``'s stream and wait for its first chunk (its attempts, its deadline)."""
        return await open_first(svc, lambda: svc.run_inference(context), self.provider_retry(svc),
                                self.attempt_timeout(svc))

    async def _serve(
        self, svc: LLMService, agen: AsyncGenerator[LLMChunk, None], first: LLMChunk | None
    ) -> AsyncGenerator[LLMChunk, None]:
        """The rest of ``svc``'s answer (it produced ``first``): it serves this request."""
        await self.serving(svc)
        try:
            if first is not None:
                self._usage_by = svc
                yield first
            with svc.attempt_errors(lambda: True):
                async for chunk in agen:
                    self._usage_by = svc
                    yield chunk
        except ServiceError as exc:
            self.broke(svc, exc)
            raise
        finally:
            await agen.aclose()

    # ------------------------------------------------------------ hedging

    async def _hedge(
        self, context: LLMContext, candidates: list[LLMService]
    ) -> tuple[AsyncGenerator[LLMChunk, None] | None, ServiceError | None, LLMService | None, list[LLMService]]:
        """Race the first candidate against a second request started at ``hedge_after_secs``.

        Returns the winner's stream (or None), the last failure, the provider it came
        from, and the candidates left to try in order when both failed.
        """
        first = candidates[0]
        second = candidates[1] if len(candidates) > 1 else first
        rest = candidates[2:] if len(candidates) > 1 else []
        tasks: dict[asyncio.Task[_Opened], LLMService] = {}
        tasks[asyncio.ensure_future(self._open(first, context))] = first
        failed: ServiceError | None = None
        prev: LLMService | None = None
        hedged = False
        try:
            while tasks:
                timeout = None if hedged else self.hedge_after_secs
                done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:  # nothing yet from the first: hedge
                    hedged = True
                    self.hedges += 1
                    logger.info("%s: %s silent after %.2f s; hedging on %s", self.name, first.name,
                                self.hedge_after_secs, second.name)
                    await self._call_event_handler("on_hedge_started", first, second)
                    tasks[asyncio.ensure_future(self._open(second, context))] = second
                    continue
                for task in done:
                    svc = tasks.pop(task)
                    exc = task.exception()
                    if exc is None:
                        losers = list(tasks.items())
                        tasks.clear()
                        if svc is not first:
                            self.hedges_won += 1
                        agen, chunk = task.result()
                        lost = [await self._abort(t, loser) for t, loser in losers]
                        return self._serve_hedged(svc, agen, chunk, lost), None, None, []
                    if not isinstance(exc, ServiceError):
                        raise exc
                    self.record_failure(svc, exc)
                    if not self.policy.fails_over(exc):
                        raise exc
                    drop_tracebacks(exc)  # no cycle through this frame (nor its cause's: the provider's frames)
                    failed, prev = exc, svc
                    if not hedged:  # the first failed before the hedge: start the second now
                        hedged = True
                        if second is not first:
                            await self.switched(svc, second, exc)
                            tasks[asyncio.ensure_future(self._open(second, context))] = second
            return None, failed, prev, rest
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)

    async def _serve_hedged(
        self,
        svc: LLMService,
        agen: AsyncGenerator[LLMChunk, None],
        first: LLMChunk | None,
        lost: list[LLMService | None],
    ) -> AsyncGenerator[LLMChunk, None]:
        """The winner's answer, then the usage of the losers (cancelled already, their
        streams closed) once the winner's is known."""
        prompt = 0
        async for chunk in self._serve(svc, agen, first):
            if isinstance(chunk, LLMTokenUsage):
                prompt = chunk.prompt_tokens
            yield chunk
        for loser in lost:
            if loser is not None:
                # Its stream was closed before any usage came: the provider still read the
                # prompt; the winner's prompt count is the estimate (no completion tokens).
                self._usage_by = loser
                yield LLMTokenUsage(prompt_tokens=prompt, completion_tokens=0, total_tokens=prompt)

    async def _abort(self, task: asyncio.Task[_Opened], svc: LLMService) -> LLMService | None:
        """Cancel a losing request; returns its provider when the request was under way."""
        task.cancel()
        await asyncio.wait((task,))
        if task.cancelled():
            return svc
        exc = task.exception()
        if exc is not None:
            return None  # it failed by itself: nothing to count
        agen, _ = task.result()  # it answered at the same moment: close it
        await agen.aclose()
        return svc


