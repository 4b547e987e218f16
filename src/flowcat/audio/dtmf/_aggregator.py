"""DTMFAggregator: collects keypad digits into a TranscriptionFrame, as pipecat does."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from ...frames import CancelFrame, EndFrame, Frame, InputDTMFFrame, KeypadEntry, TranscriptionFrame
from ...runtime import FrameDirection, FrameProcessor
from ._keypad import to_keypad_entry

__all__ = ["DTMFAggregator"]


class DTMFAggregator(FrameProcessor):
    """Collects :class:`~flowcat.frames.InputDTMFFrame` digits and flushes them as text.

    Behaviour follows pipecat's ``DTMFAggregator``:

    * every InputDTMFFrame passes on first;
    * the first digit of a collection broadcasts an interruption (the bot stops
      talking when the caller starts keying);
    * the collection is flushed as a finalized
      :class:`~flowcat.frames.TranscriptionFrame` with text ``prefix + digits``
      (the termination digit included, e.g. ``"DTMF: 123#"``) when the termination
      digit arrives, ``timeout`` seconds after the last digit, or on
      EndFrame/CancelFrame (before passing it on);
    * an InterruptionFrame passes on and clears nothing.

    The idle timeout is one timer handle (``loop.call_later``) re-armed on each
    digit; when it fires, the flush is pushed from a call-owned task.

    Args:
        timeout: Idle time after the last digit before flushing, seconds.
        termination_digit: Key that flushes at once.
        prefix: Text put before the digits.
        interrupt_on_first_digit: Broadcast an interruption on a collection's first digit.
        **kwargs: Passed to :class:`~flowcat.FrameProcessor`.
    """

    def __init__(
        self,
        timeout: float = 2.0,
        termination_digit: KeypadEntry | str = KeypadEntry.POUND,
        prefix: str = "DTMF: ",
        *,
        interrupt_on_first_digit: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._timeout = timeout
        self._termination = to_keypad_entry(termination_digit)
        self._prefix = prefix
        self._interrupt = interrupt_on_first_digit
        self._digits: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> str:
        """Digits collected and not yet flushed."""
        return "".join(self._digits)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Collect digits; flush on the termination digit and on End/Cancel."""
        await super().process_frame(frame, direction)
        if isinstance(frame, InputDTMFFrame):
            await self.push_frame(frame, direction)
            first = not self._digits
            self._digits.append(frame.button.value)
            if first and self._interrupt:
                await self.broadcast_interruption()
            if frame.button == self._termination:
                self._disarm()
                await self._flush_now()
            else:
                self._arm()
        elif isinstance(frame, (EndFrame, CancelFrame)):
            self._disarm()
            await self._flush_now()
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        """Drop the idle timer."""
        self._disarm()

    # ----------------------------------------------------------------- timer

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._on_timeout)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timeout(self) -> None:
        self._timer = None
        frame = self._take()
        if frame is not None:
            self.create_task(self.push_frame(frame), name="dtmf_flush")

    # ----------------------------------------------------------------- flush

    def _take(self) -> TranscriptionFrame | None:
        if not self._digits:
            return None
        text = self._prefix + "".join(self._digits)
        self._digits.clear()
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        return TranscriptionFrame(text=text, user_id="", timestamp=now, finalized=True)

    async def _flush_now(self) -> None:
        frame = self._take()
        if frame is not None:
            await self.push_frame(frame)
