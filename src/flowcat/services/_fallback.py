"""What the fallback services share: the policy, the circuit breaker and the provider group.

A fallback service (:class:`~flowcat.services.FallbackLLMService`,
:class:`~flowcat.services.FallbackTTSService`, :class:`~flowcat.services.FallbackSTTService`)
is one processor of its kind that holds several providers of that kind. It calls their
provider seams (``run_inference``, ``run_tts``, ``connect``/``send_audio``/``finalize``)
itself; the providers are never linked into the pipeline. They are its
:attr:`~flowcat.FrameProcessor.processors`, so the task attaches them to the call (their
background tasks are the call's) and cleans them up with it.

:class:`FallbackPolicy` says which failures move a request to the next provider, how many
attempts each provider gets first, and the circuit breaker: after ``failure_threshold``
failures in a row a provider is skipped for ``cooldown_secs`` (loop time), then tried again;
a success closes its breaker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import ConfigError, ServiceAuthError, ServiceError, ServiceTimeout
from ..frames import CancelFrame, EndFrame, StartFrame
from ..runtime import FrameProcessor
from ._ai_service import AIService
from ._backoff import Backoff, Deadline, retry_call

__all__ = ["FallbackGroup", "FallbackPolicy", "ProviderHealth", "open_first"]

logger = logging.getLogger("flowcat.services.fallback")

S = TypeVar("S", bound=AIService)
T = TypeVar("T")

_ONE_ATTEMPT = Backoff(max_attempts=1)


@dataclass(frozen=True)
class FallbackPolicy:
    """When a fallback service moves a request to its next provider.

    Attributes:
        retry: Attempts on one provider before moving on (its backoff and ``max_attempts``).
            The default, one attempt, fails over at once (the least silence for the caller);
            None: each provider's own ``retry``.
        fail_over_on_auth: Also fail over on :class:`~flowcat.errors.ServiceAuthError`
            (401/403: a missing or wrong key on one provider should not silence the bot).
        fail_over_on_client_error: Also fail over on the other non-retryable errors (400,
            404, a malformed payload). Off: they are reported as today (the next provider
            would most likely refuse the same request).
        attempt_timeout_secs: Bound from a request to a provider's first output, its
            attempts together, before the request moves on (LLM, TTS; None: the provider's
            own ``request_timeout_secs``). Keep it under the fallback's own
            ``request_timeout_secs``, or a hung provider uses up the whole budget.
        failure_threshold: Failures in a row that open a provider's breaker.
        cooldown_secs: How long an open breaker skips its provider (loop time); then the
            provider is tried again (and its breaker opens again at the next failure).
    """

    retry: Backoff | None = _ONE_ATTEMPT
    fail_over_on_auth: bool = True
    fail_over_on_client_error: bool = False
    attempt_timeout_secs: float | None = None
    failure_threshold: int = 1
    cooldown_secs: float = 30.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ConfigError(f"FallbackPolicy: failure_threshold must be >= 1, got {self.failure_threshold}")
        if self.cooldown_secs < 0:
            raise ConfigError(f"FallbackPolicy: cooldown_secs must be >= 0, got {self.cooldown_secs}")

    def fails_over(self, exc: ServiceError) -> bool:
        """Whether ``exc`` moves the request to the next provider."""
        if exc.retryable:
            return True
        if isinstance(exc, ServiceAuthError):
            return self.fail_over_on_auth
        return self.fail_over_on_client_error


class ProviderHealth:
    """One provider's circuit breaker (loop time).

    Attributes:
        failures: Failures in a row.
        open_until: Loop time until which the provider is skipped (0: closed).
        served: Requests (utterances, connections) it served.
    """

    __slots__ = ("failures", "open_until", "served")

    def __init__(self) -> None:
        self.failures = 0
        self.open_until = 0.0
        self.served = 0

    def available(self, now: float) -> bool:
        """Whether the breaker lets a request through at ``now``."""
        return now >= self.open_until


class FallbackGroup(Generic[S]):
    """The providers of a fallback service, in order of preference, with their breakers.

    Mixed into the fallback services (which are :class:`AIService` s): the providers'
    lifecycle follows the fallback's, settings updates reach every provider, and the
    ``on_service_switched(fallback, from_service, to_service, error)`` event fires on each
    switch.
    """

    if TYPE_CHECKING:  # provided by the AIService side
        _name: str
        model_name: str | None

        def _register_event_handler(self, event_name: str) -> None: ...

        async def _call_event_handler(self, event_name: str, *args: Any, **kwargs: Any) -> None: ...

    def _init_group(self, services: Sequence[S], policy: FallbackPolicy | None) -> None:
        services = list(services)
        if not services:
            raise ConfigError(f"{self._name}: a fallback needs at least one service")
        if len({id(s) for s in services}) != len(services):
            raise ConfigError(f"{self._name}: the same service is listed twice")
        for s in services:
            if s.next is not None or s.previous is not None:
                raise ConfigError(f"{self._name}: {s.name} is linked into a pipeline; a fallback's "
                                  "services must not be")
        self.services: list[S] = services
        self.policy = policy if policy is not None else FallbackPolicy()
        self.health: dict[S, ProviderHealth] = {s: ProviderHealth() for s in services}
        self.active: S = services[0]
        """The provider that served (or is serving) the last request."""
        self.switches = 0
        """How many times a request moved to another provider."""
        self._broke: tuple[S, BaseException] | None = None  # the provider that failed mid-answer
        self._register_event_handler("on_service_switched")

    @property
    def processors(self) -> list[FrameProcessor]:
        return list(self.services)

    # ------------------------------------------------------------ choosing

    def candidates(self) -> list[S]:
        """The providers to try, in order: those whose breaker is closed (or whose cool-down
        is over) in configured order, then, when every one is cooling down, all of them by
        the end of their cool-down (trying one is better than saying nothing)."""
        now = asyncio.get_running_loop().time()
        ready = [s for s in self.services if self.health[s].available(now)]
        if ready:
            return ready
        return sorted(self.services, key=lambda s: self.health[s].open_until)

    def record_success(self, service: S) -> None:
        h = self.health[service]
        h.failures = 0
        h.open_until = 0.0
        h.served += 1

    def record_failure(self, service: S, exc: BaseException) -> None:
        h = self.health[service]
        h.failures += 1
        if h.failures >= self.policy.failure_threshold:
            h.open_until = asyncio.get_running_loop().time() + self.policy.cooldown_secs
            logger.info("%s: %s skipped for %.1f s after %d failure(s) (%s)", self._name, service.name,
                        self.policy.cooldown_secs, h.failures, type(exc).__name__)

    def attempt_timeout(self, service: Any) -> float:
        """How long ``service`` gets to produce its first output."""
        t = self.policy.attempt_timeout_secs
        return t if t is not None else float(service.request_timeout_secs)

    def provider_retry(self, service: Any) -> Backoff:
        """The backoff one provider gets before the request moves on."""
        own = getattr(service, "retry", None)
        return self.policy.retry or (own if isinstance(own, Backoff) else _ONE_ATTEMPT)

    def broke(self, service: S, exc: BaseException) -> None:
        """``service`` failed after its output went out: count it; the next request that
        another provider serves reports the switch."""
        self.record_failure(service, exc)
        self._broke = (service, exc)

    async def serving(self, service: S) -> None:
        """``service`` produced its first output: it serves this request."""
        self.active = service
        self.model_name = service.model_name
        self.record_success(service)
        broke, self._broke = self._broke, None
        if broke is not None and broke[0] is not service:
            await self.switched(broke[0], service, broke[1])

    def _detach(self) -> None:
        self._broke = None
        super()._detach()  # type: ignore[misc]

    async def switched(self, old: S, new: S, exc: BaseException) -> None:
        """Note a switch from ``old`` to ``new`` (log, count, event)."""
        self.switches += 1
        logger.warning("%s: %s failed (%s); switching to %s", self._name, old.name, type(exc).__name__, new.name)
        await self._call_event_handler("on_service_switched", old, new, exc)

    # ------------------------------------------------------------ lifecycle

    async def _start_services(self, frame: StartFrame) -> None:
        for s in self.services:
            await s.start(frame)

    async def _stop_services(self, frame: EndFrame) -> None:
        for s in self.services:
            await s.stop(frame)

    async def _cancel_services(self, frame: CancelFrame) -> None:
        for s in self.services:
            await s.cancel(frame)

    async def _update_services(self, delta: Any) -> dict[str, Any]:
        """Apply a settings change to every provider that has those settings."""
        changed: dict[str, Any] = {}
        for s in self.services:
            try:
                changed.update(await s.update_settings(delta))
            except ConfigError as exc:
                logger.info("%s: %s does not take this setting: %s", self._name, s.name, exc)
        return changed


async def open_first(
    svc: AIService, make: Callable[[], AsyncGenerator[T, None]], backoff: Backoff, timeout_secs: float
) -> tuple[AsyncGenerator[T, None], T | None]:
    """Start ``svc``'s stream (``make()``) and wait for its first item, with ``backoff``'s
    attempts bounded by ``timeout_secs`` in all. Returns the open stream and its first item
    (None: the stream ended empty). Errors are ``svc``'s, mapped and key-masked.
    """
    deadline = Deadline(timeout_secs)

    async def attempt(n: int) -> tuple[AsyncGenerator[T, None], T | None]:
        agen = make()
        try:
            async with asyncio.timeout(deadline.remaining()):
                with svc.attempt_errors(lambda: False):
                    first = await agen.__anext__()
        except StopAsyncIteration:
            return agen, None
        except TimeoutError:
            await agen.aclose()
            raise ServiceTimeout(f"{svc.name}: no answer within {timeout_secs:g} s") from None
        except BaseException:
            await agen.aclose()
            raise
        return agen, first

    return await retry_call(attempt, backoff=backoff, deadline=deadline, what=svc.name)
