"""ContextRelay: keep a long speech-to-speech call cheap by reseeding its session with text.

A realtime model re-reads the whole conversation, audio included, for every response, so the
input tokens (and the cost) of a turn grow with the call. The relay watches a
:class:`~flowcat.services.RealtimeLLMService` and, when a trigger fires after a bot turn,
replaces the session by a fresh one whose instructions are the base prompt plus a digest of
the conversation as text (``renew_session(instructions=digest, replay=False)``): no audio
history is carried over. The digest is a rolling summary of the older turns (a pluggable
:class:`Summarizer`) and the last ``keep_recent_turns`` turns verbatim::

    <base prompt>

    --- Conversation so far (preserved across a session refresh) ---
    Summary of earlier conversation: ...
    user: ...
    assistant: ...
    --- end of preserved conversation ---

Triggers, checked when the service reports a finished turn (``on_turn_done``):

* **budget**: the last response's input tokens > ``max_context_tokens``, once at least
  ``min_turns_between`` turns passed since the last reseed (the anti-thrash floor);
* **session age**: ``max_session_secs`` since the session began (bypasses the floor);
* **turn count**: ``trigger_after_turns`` turns since the last reseed.

A new system prompt (a graph agent's transition: an ``LLMUpdateSettingsFrame`` carrying
``instructions`` through the relay, or :meth:`ContextRelay.set_base_prompt`) becomes the base:
digests never stack. The reseed happens between responses, while the caller's audio keeps
flowing to the service; its latency and the tokens before and after are logged and reported
by the ``on_reseed`` event. Off unless placed in the pipeline (before the realtime service).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..frames import (
    BotSpeakingFrame,
    Frame,
    InputAudioRawFrame,
    LLMContext,
    LLMTokenUsage,
    LLMUpdateSettingsFrame,
    UserSpeakingFrame,
)
from ..runtime import FrameDirection, FrameProcessor
from ..services import LLMService, RealtimeLLMService

__all__ = [
    "DIGEST_END",
    "DIGEST_START",
    "ContextRelay",
    "LLMSummarizer",
    "ReseedReport",
    "Summarizer",
    "VerbatimSummarizer",
]

logger = logging.getLogger("flowcat.agent.context_relay")

DIGEST_START = "--- Conversation so far (preserved across a session refresh) ---"
DIGEST_END = "--- end of preserved conversation ---"
_ROLES = ("user", "assistant")


class Summarizer(ABC):
    """Folds older turns into a rolling summary."""

    @abstractmethod
    async def summarize(self, previous: str, turns: Sequence[tuple[str, str]]) -> str:
        """The new summary of ``previous`` (the summary so far, maybe empty) plus ``turns``
        (``(role, text)`` pairs, oldest first)."""


def _lines(turns: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"{role}: {text}" for role, text in turns)


class VerbatimSummarizer(Summarizer):
    """Keeps every line: the summary is the transcript itself (lossless, grows with the call)."""

    async def summarize(self, previous: str, turns: Sequence[tuple[str, str]]) -> str:
        new = _lines(turns)
        return f"{previous}\n{new}" if previous and new else previous or new


class LLMSummarizer(Summarizer):
    """Asks any :class:`~flowcat.services.LLMService` (``run_inference``) for a short summary;
    on a failure, an empty answer or a timeout it falls back to :class:`VerbatimSummarizer`.

    Args:
        llm: The service summarizing (it is not in the pipeline; only ``run_inference`` is used).
        timeout_secs: Bound on one summary.
        max_words: The length asked for.
    """

    def __init__(self, llm: LLMService, *, timeout_secs: float = 10.0, max_words: int = 120) -> None:
        self.llm = llm
        self.timeout_secs = timeout_secs
        self.max_words = max_words
        self.fallbacks = 0
        """Summaries that fell back to verbatim."""
        self._verbatim = VerbatimSummarizer()

    async def summarize(self, previous: str, turns: Sequence[tuple[str, str]]) -> str:
        prompt = (f"Summarize this phone call in under {self.max_words} words, third person. Keep every "
                  "name, number, date and commitment exactly.\n")
        body = (f"Earlier summary: {previous}\n" if previous else "") + _lines(turns)
        context = LLMContext(messages=[{"role": "system", "content": prompt}, {"role": "user", "content": body}])
        try:
            text = await asyncio.wait_for(self.llm.run_inference_text(context), self.timeout_secs)
        except Exception as exc:  # noqa: BLE001 - any failure of the summarizer: keep the words
            self.fallbacks += 1
            logger.warning("context relay: summary failed (%r); kept verbatim", exc)
            return await self._verbatim.summarize(previous, turns)
        if not text.strip():
            self.fallbacks += 1
            logger.warning("context relay: empty summary; kept verbatim")
            return await self._verbatim.summarize(previous, turns)
        return text.strip()


@dataclass(frozen=True, slots=True)
class ReseedReport:
    """What one reseed did (the ``on_reseed`` event's argument).

    Attributes:
        reason: ``"budget"``, ``"age"``, ``"turns"`` or ``"manual"``.
        tokens_before: Input tokens of the last response before the reseed (0: unknown).
        tokens_after: Input tokens of the first response after it (set on the next turn; 0 until then).
        digest_chars: Length of the instructions sent.
        latency_ms: Time the reseed took (the session replaced, between two responses).
        turns_kept: Turns verbatim; ``turns_summarized``: turns in the rolling summary so far.
    """

    reason: str
    tokens_before: int
    digest_chars: int
    latency_ms: float
    turns_kept: int
    turns_summarized: int
    tokens_after: int = 0


class ContextRelay(FrameProcessor):
    """Reseeds a realtime session with a text digest when a trigger fires (module docstring).

    Place it just before the realtime service (it passes every frame on, and rewrites an
    ``LLMUpdateSettingsFrame``'s ``instructions`` into base + digest).

    Args:
        service: The realtime service it watches and reseeds.
        base_prompt: The system prompt (None: the service's ``instructions`` setting, else the
            system items of its conversation, when first needed).
        max_context_tokens: Budget trigger (input tokens of one response).
        min_turns_between: Anti-thrash floor of the budget and turn triggers.
        max_session_secs: Age trigger (None: off); bypasses the floor.
        trigger_after_turns: Turn-count trigger (None: off).
        keep_recent_turns: Turns kept verbatim after the summary.
        summarizer: Folds older turns (default :class:`VerbatimSummarizer`).
        clock: Monotonic seconds (default the loop's clock).

    Events: ``on_reseed(relay, report)`` after each reseed (:class:`ReseedReport`).
    """

    def __init__(
        self,
        service: RealtimeLLMService,
        *,
        base_prompt: str | None = None,
        max_context_tokens: int = 4000,
        min_turns_between: int = 2,
        max_session_secs: float | None = None,
        trigger_after_turns: int | None = None,
        keep_recent_turns: int = 4,
        summarizer: Summarizer | None = None,
        clock: Callable[[], float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.base_prompt = base_prompt
        self.max_context_tokens = max_context_tokens
        self.min_turns_between = min_turns_between
        self.max_session_secs = max_session_secs
        self.trigger_after_turns = trigger_after_turns
        self.keep_recent_turns = keep_recent_turns
        self.summarizer = summarizer if summarizer is not None else VerbatimSummarizer()
        self._clock = clock or time.monotonic
        self.turns: list[tuple[str, str]] = []
        """Turns not yet folded into the summary (``(role, text)``)."""
        self.summary = ""
        self.turns_summarized = 0
        self.turns_since_reseed = 0
        self.reseeds: list[ReseedReport] = []
        self._seen = service.conversation.added
        self._session_start: float | None = None
        self._busy = False
        self._digest = ""
        self._register_event_handler("on_reseed")
        service.add_event_handler("on_turn_done", self._on_turn_done)

    # ------------------------------------------------------------------ frames

    inline_frames = (InputAudioRawFrame, UserSpeakingFrame, BotSpeakingFrame)
    """The audio path passes straight through (no task, no await)."""

    def process_inline(self, frame: Frame, direction: FrameDirection) -> Any:
        return frame

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMUpdateSettingsFrame) and frame.service in (None, self.service):
            frame = self._adopt(frame)
        await self.push_frame(frame, direction)

    def _adopt(self, frame: LLMUpdateSettingsFrame) -> LLMUpdateSettingsFrame:
        """A transition's new prompt becomes the base; the frame carries base + the digest."""
        settings = frame.settings
        if isinstance(settings, dict) and isinstance(settings.get("instructions"), str):
            self.set_base_prompt(settings["instructions"])
            if self._digest:
                frame.settings = {**settings, "instructions": self.instructions()}
        elif dataclasses.is_dataclass(settings) and isinstance(getattr(settings, "instructions", None), str):
            self.set_base_prompt(settings.instructions)  # type: ignore[union-attr]
            if self._digest:
                frame.settings = dataclasses.replace(settings, instructions=self.instructions())  # type: ignore[type-var]
        return frame

    def set_base_prompt(self, prompt: str) -> None:
        """Adopt ``prompt`` as the base (a transition): the next digest goes after it, not after
        an older digest."""
        self.base_prompt = _strip_digest(prompt)

    # ----------------------------------------------------------------- digest

    def _collect(self) -> None:
        log = self.service.conversation
        for item in log.since(self._seen):
            if item.role in _ROLES and item.text.strip():
                self.turns.append((item.role, item.text.strip()))
        self._seen = log.added

    def _base(self) -> str:
        if self.base_prompt is None:
            current = getattr(self.service._settings, "instructions", None)
            if not isinstance(current, str):
                current = "\n".join(i.text for i in self.service.conversation.items if i.role == "system")
            self.base_prompt = _strip_digest(current)
        return self.base_prompt

    def instructions(self) -> str:
        """The base prompt plus the current digest (the base alone before any reseed)."""
        base = self._base()
        return f"{base}\n\n{self._digest}" if self._digest else base

    async def build_digest(self) -> str:
        """Fold the turns older than ``keep_recent_turns`` into the summary; the digest text."""
        self._collect()
        keep = max(0, self.keep_recent_turns)
        old, recent = (self.turns[:-keep], self.turns[-keep:]) if keep else (self.turns, [])
        if old:
            self.summary = await self.summarizer.summarize(self.summary, old)
            self.turns_summarized += len(old)
            self.turns = list(recent)
        lines = [DIGEST_START]
        if self.summary:
            lines.append(f"Summary of earlier conversation: {self.summary}")
        lines.extend(f"{role}: {text}" for role, text in recent)
        lines.append(DIGEST_END)
        self._digest = "\n".join(lines)
        return self._digest

    # --------------------------------------------------------------- triggers

    def _reason(self, usage: LLMTokenUsage | None, now: float) -> str | None:
        start = self._session_start
        if self.max_session_secs is not None and start is not None and now - start >= self.max_session_secs:
            return "age"
        if self.turns_since_reseed < self.min_turns_between:
            return None
        if usage is not None and usage.prompt_tokens > self.max_context_tokens:
            return "budget"
        if self.trigger_after_turns is not None and self.turns_since_reseed >= self.trigger_after_turns:
            return "turns"
        return None

    async def _on_turn_done(self, _service: Any, usage: LLMTokenUsage | None) -> None:
        now = self._clock()
        if self._session_start is None:
            self._session_start = now
        self._collect()
        if self.reseeds and self.turns_since_reseed == 0 and usage is not None:
            self.reseeds[-1] = dataclasses.replace(self.reseeds[-1], tokens_after=usage.prompt_tokens)
        self.turns_since_reseed += 1
        if self._busy or not (self.turns or self.summary):
            return
        reason = self._reason(usage, now)
        if reason is not None:
            await self.reseed(reason, usage.prompt_tokens if usage is not None else 0)

    async def reseed(self, reason: str = "manual", tokens_before: int = 0) -> ReseedReport:
        """Build the digest and replace the session by one seeded with it now."""
        self._busy = True
        try:
            t0 = time.perf_counter()
            await self.build_digest()
            instructions = self.instructions()
            await self.service.renew_session(instructions=instructions, replay=False)
            latency_ms = (time.perf_counter() - t0) * 1000
        finally:
            self._busy = False
        self._session_start = self._clock()
        self.turns_since_reseed = 0
        report = ReseedReport(reason, tokens_before, len(instructions), latency_ms,
                              min(len(self.turns), self.keep_recent_turns), self.turns_summarized)
        self.reseeds.append(report)
        logger.info("context relay: reseeded (%s) in %.1f ms; %d input tokens before, digest %d chars",
                    reason, latency_ms, tokens_before, len(instructions))
        await self._call_event_handler("on_reseed", report)
        return report


def _strip_digest(prompt: str) -> str:
    """A prompt without a digest appended to it (so digests never stack)."""
    at = prompt.find(DIGEST_START)
    return prompt[:at].rstrip() if at >= 0 else prompt
