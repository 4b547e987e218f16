"""Bookkeeping of a speech-to-speech session that does not touch the socket.

* :class:`PlaybackTracker`: how much of the model's current audio item the caller has
  heard, for ``conversation.item.truncate`` after a barge-in. The service sits before
  the output transport, so it cannot see the audio leave; it knows how much audio it
  pushed and when playback began: the output transport broadcasts
  ``BotStartedSpeakingFrame`` (upstream too) when the first chunk goes out and then
  sends in real time, so what was played is ``min(pushed, now - playback start)``.
  Without an output transport (tests, a recorder) the first push starts the clock.
  ``BotStoppedSpeakingFrame`` after the item's last audio means all of it was played.
* :class:`ConversationLog`: the conversation as text items (what the user said, what
  the model said, the tool calls and their results), replayed into a fresh session
  when the service reconnects (a session cap, a dropped socket).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ConversationItem", "ConversationLog", "PlaybackTracker"]


class PlaybackTracker:
    """The audio item being played: its id, the audio pushed, when playback began.

    Args:
        sample_rate: Rate of the audio counted (the provider's output rate).
        clock: Monotonic seconds (the loop's ``time``).
    """

    __slots__ = ("_clock", "_rate", "bytes_pushed", "done", "item_id", "started_at")

    def __init__(self, sample_rate: int, clock: Callable[[], float]) -> None:
        self._rate = sample_rate
        self._clock = clock
        self.item_id: str | None = None
        self.bytes_pushed = 0
        self.started_at: float | None = None
        self.done = False  # the provider sent the item's last audio

    def audio(self, item_id: str, nbytes: int) -> None:
        """``nbytes`` of PCM16 of ``item_id`` were pushed (a new item restarts the count)."""
        if item_id != self.item_id:
            self.item_id = item_id
            self.bytes_pushed = 0
            self.started_at = None
            self.done = False
        if self.started_at is None:
            self.started_at = self._clock()  # until the transport says when playback began
        self.bytes_pushed += nbytes

    def playback_started(self) -> None:
        """The output transport started sending the bot's audio (``BotStartedSpeakingFrame``)."""
        if self.item_id is not None:
            self.started_at = self._clock()

    def playback_stopped(self) -> None:
        """The transport ran out of bot audio: if the item's audio was all pushed, it was all heard."""
        if self.done:
            self.clear()

    def pushed_ms(self) -> int:
        """Milliseconds of audio pushed for the item."""
        return self.bytes_pushed * 500 // self._rate  # 2 bytes a sample, 1000 ms a second

    def played_ms(self) -> int:
        """Milliseconds of the item the caller has heard (at most what was pushed)."""
        if self.started_at is None:
            return 0
        elapsed = round((self._clock() - self.started_at) * 1000)
        return max(0, min(elapsed, self.pushed_ms()))

    def take(self) -> tuple[str, int] | None:
        """For a barge-in: ``(item_id, played_ms)`` of an item not fully heard, and forget it."""
        item = self.item_id
        if item is None:
            return None
        played = self.played_ms()
        self.clear()
        return item, played

    def clear(self) -> None:
        """No item is playing."""
        self.item_id = None
        self.bytes_pushed = 0
        self.started_at = None
        self.done = False


@dataclass(slots=True)
class ConversationItem:
    """One item of the conversation, provider-neutral.

    ``role`` is ``"system"``, ``"user"``, ``"assistant"``, ``"function_call"`` (``call_id``,
    ``name``, ``text`` = the JSON arguments) or ``"function_call_output"`` (``call_id``,
    ``text`` = the output).
    """

    role: str
    text: str
    call_id: str = ""
    name: str = ""


class ConversationLog:
    """The conversation so far, as text, bounded to the last ``max_items`` items."""

    __slots__ = ("added", "items", "max_items")

    def __init__(self, max_items: int = 200) -> None:
        self.items: list[ConversationItem] = []
        self.max_items = max_items
        self.added = 0
        """Items ever added (a reader's cursor: the last ``added - seen`` items are new)."""

    def since(self, seen: int) -> list[ConversationItem]:
        """The items added after the reader's cursor ``seen`` (those still held)."""
        n = min(self.added - seen, len(self.items))
        return self.items[len(self.items) - n:] if n > 0 else []

    def add(self, item: ConversationItem) -> None:
        """Append an item (the oldest goes when the log is full)."""
        if (item.role in ("user", "assistant", "system") and not item.text.strip()):
            return
        self.items.append(item)
        self.added += 1
        if len(self.items) > self.max_items:
            del self.items[: len(self.items) - self.max_items]

    def add_messages(self, messages: list[Any]) -> None:
        """Append OpenAI-style context messages (text content; tool calls and results)."""
        for m in messages:
            if not isinstance(m, dict):
                continue
            role = m.get("role")
            if role in ("system", "developer", "user", "assistant"):
                for call in m.get("tool_calls") or ():
                    fn = call.get("function") or {}
                    self.add(ConversationItem("function_call", str(fn.get("arguments") or "{}"),
                                              str(call.get("id") or ""), str(fn.get("name") or "")))
                text = _text(m.get("content"))
                if text:
                    self.add(ConversationItem("system" if role == "developer" else str(role), text))
            elif role == "tool":
                self.add(ConversationItem("function_call_output", _text(m.get("content")),
                                          str(m.get("tool_call_id") or "")))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("text"))
    return "" if content is None else str(content)
