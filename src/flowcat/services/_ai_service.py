"""AIService: the base of every STT, LLM and TTS service.

It adds to :class:`~flowcat.FrameProcessor`: typed settings updated at run time by
``*UpdateSettingsFrame``, capabilities declared as data, metrics on, an API key
that never reaches a log line, and vendor errors reported as ``ErrorFrame`` s
with the key masked.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp

from .._ratelimit import RateLimitedLog
from ..errors import ConfigError, ServiceConnectionError, ServiceError, ServiceProtocolError
from ..frames import Frame, ServiceUpdateSettingsFrame
from ..runtime import FrameDirection, FrameProcessor
from ._secrets import Secret, redact

__all__ = ["AIService", "ServiceCapabilities", "ServiceSettings"]

logger = logging.getLogger("flowcat.services")
_BAD = RateLimitedLog(logger)


@dataclass
class ServiceSettings:
    """Settings every service has. Providers subclass and add fields.

    Attributes:
        model: Model (or voice family) name, reported in metrics.
        extra: Provider parameters with no field of their own (sent as given).
    """

    model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def apply(self, delta: Mapping[str, Any] | ServiceSettings) -> dict[str, Any]:
        """Apply ``delta`` (a mapping, or settings whose non-None fields count).

        Returns:
            The fields that changed, with their new values.

        Raises:
            ConfigError: A key names no field.
        """
        if isinstance(delta, ServiceSettings):
            items = {
                f.name: getattr(delta, f.name)
                for f in dataclasses.fields(delta)
                if getattr(delta, f.name) is not None and not (f.name == "extra" and not delta.extra)
            }
        else:
            items = dict(delta)
        names = {f.name for f in dataclasses.fields(self)}
        changed: dict[str, Any] = {}
        for key, value in items.items():
            if key not in names:
                raise ConfigError(f"{type(self).__name__}: unknown setting {key!r}")
            if key == "extra":
                merged = {**self.extra, **value}
                if merged != self.extra:
                    self.extra = merged
                    changed[key] = merged
            elif getattr(self, key) != value:
                setattr(self, key, value)
                changed[key] = value
        return changed


@dataclass(frozen=True)
class ServiceCapabilities:
    """What a provider can do, as data (for routing, docs and the conformance suite).

    Attributes:
        streaming: Results arrive incrementally (tokens, audio chunks, interim text).
        word_timestamps: TTS reports when each word is spoken.
        function_calling: The LLM can call tools.
        parallel_tool_calls: The LLM can request several tool calls at once.
        interim_results: STT emits interim transcripts.
        context_ids: TTS multiplexes utterances by context id on one connection.
        sample_rates: Output (TTS) or input (STT) sample rates supported; empty: any.
        transport: ``"http"``, ``"sse"``, ``"websocket"`` or ``"http2"`` (a bidirectional HTTP/2 stream).
    """

    streaming: bool = True
    word_timestamps: bool = False
    function_calling: bool = False
    parallel_tool_calls: bool = False
    interim_results: bool = False
    context_ids: bool = False
    sample_rates: tuple[int, ...] = ()
    transport: str = "http"


def drop_tracebacks(exc: BaseException) -> None:
    """Detach the tracebacks of ``exc`` and of its causes and contexts (in place)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        e.__traceback__ = None
        stack += (e.__cause__, e.__context__)


class AIService(FrameProcessor):
    """Base of the STT, LLM and TTS services.

    Args:
        settings: The service's settings (a :class:`ServiceSettings` subclass).
        api_key: The resolved key (see :func:`~flowcat.services.resolve_api_key`), if any.
        name: Processor name.
    """

    capabilities: ClassVar[ServiceCapabilities] = ServiceCapabilities()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        own = cls.__dict__
        if (
            "handle_frame" in own
            and "process_inline" not in own
            and "inline_frames" not in own
            and getattr(cls, "inline_passes_input_audio", False)
        ):
            # Its own handle_frame must see the frames its base only passes on inline
            # (the rule FrameProcessor applies to an overridden process_frame).
            cls.inline_frames = ()
        super().__init_subclass__(**kwargs)

    settings_frame_type: ClassVar[type[ServiceUpdateSettingsFrame]] = ServiceUpdateSettingsFrame
    """The settings frame this kind of service consumes (``LLMUpdateSettingsFrame`` ...)."""

    def __init__(
        self,
        *,
        settings: ServiceSettings | None = None,
        api_key: Secret | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self._settings = settings if settings is not None else ServiceSettings()
        self._api_key = api_key
        self.model_name = self._settings.model
        self.bad_messages = 0
        """Malformed messages received from the provider and skipped."""
        self._register_event_handler("on_settings_updated")

    @property
    def settings(self) -> ServiceSettings:
        """The settings in force."""
        return self._settings

    def can_generate_metrics(self) -> bool:
        return True

    def redact(self, text: str) -> str:
        """``text`` with this service's key masked."""
        return redact(text, self._api_key)

    async def update_settings(self, delta: Mapping[str, Any] | ServiceSettings) -> dict[str, Any]:
        """Apply a settings change now; returns what changed and calls :meth:`on_settings_changed`."""
        changed = self._settings.apply(delta)
        if changed:
            if "model" in changed:
                self.model_name = changed["model"]
            await self.on_settings_changed(changed)
            await self._call_event_handler("on_settings_updated", changed)
        return changed

    async def on_settings_changed(self, changed: dict[str, Any]) -> None:
        """Hook: settings changed (reconnect, resend a session config...)."""

    def bad_input(self, reason: str, raw: str | bytes | None = None) -> None:
        """Count and log (rate-limited, key masked) a malformed provider message that is skipped."""
        self.bad_messages += 1
        n = self.bad_messages
        if _BAD.due(n):
            size = -1 if raw is None else len(raw)
            _BAD(n, "%s: skipped malformed message #%d (%s, %d bytes)", self.name, n, self.redact(reason), size)

    @contextmanager
    def attempt_errors(self, delivered: Callable[[], bool]) -> Iterator[None]:
        """Map what one request attempt raises to service errors (key masked).

        Used around a provider seam (``run_inference``, ``run_tts``) by the base and by
        whoever drives the seam from outside (the fallback services).

        ``delivered()`` says whether output already went downstream: such an attempt
        is never retried (a response half delivered must not be replayed). Connection
        failures become :class:`ServiceConnectionError`, malformed responses
        :class:`ServiceProtocolError`.
        """
        try:
            yield
        except ServiceError as exc:
            if delivered():
                exc.retryable = False
            raise
        except (aiohttp.ClientError, OSError) as exc:
            err = ServiceConnectionError(self.redact(f"{self.name}: {type(exc).__name__}: {exc}"))
            err.retryable = not delivered()
            raise err from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise ServiceProtocolError(self.redact(f"{self.name}: malformed response: {exc!r}")) from exc

    _attempt_errors = attempt_errors

    def _resume_held_frames(self) -> None:
        """Let frames held while a paused generation ran through (no-op when not paused)."""
        if self._gate is not None and self._sched is not None:
            self.resume_processing_frames()

    async def push_service_error(self, exc: BaseException, what: str = "") -> None:
        """Report a provider failure upstream as a non-fatal ``ErrorFrame`` (key masked).

        The exception travels in the frame without its traceback (nor those of its cause
        and context): a traceback holds the frames that raised it, with their locals —
        this service among them — and an exception kept by a frame that a local of those
        frames refers to would keep the whole call alive in a reference cycle.
        """
        kind = "retryable" if isinstance(exc, ServiceError) and exc.retryable else "error"
        msg = self.redact(f"{self.name}: {what + ': ' if what else ''}{type(exc).__name__}: {exc}")
        logger.warning("%s (%s)", msg, kind)
        drop_tracebacks(exc)
        await self.push_error(msg, exception=exc)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, self.settings_frame_type) and frame.service in (None, self):
            try:
                await self.update_settings(frame.settings or {})
            except ConfigError as exc:
                logger.warning("%s: bad settings update: %s", self.name, exc)
                await self.push_error(f"{self.name}: {exc}", exception=exc)
            return
        await self.handle_frame(frame, direction)

    async def handle_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Hook for subclasses: the frames this service does not consume itself. Default: pass on."""
        await self.push_frame(frame, direction)
