"""What the realtime (speech-to-speech) fakes share: the responses they run beside the socket's reading
loop (which must go on reading: a cancel or a truncate comes while the fake speaks), cancelled on
:meth:`RealtimeFake.close`, and their answer's audio, tones at :attr:`sample_rate`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..conformance import FakeProvider
from ._tones import synthesize_tones

__all__ = ["RealtimeFake"]


class RealtimeFake(FakeProvider):
    """A :class:`FakeProvider` whose answer is tones encoding :attr:`expected_text` at 24 kHz."""

    sample_rate = 24000

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coro: Any) -> None:
        """Run ``coro`` beside the reading loop until it ends or the fake closes."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await super().close()

    @property
    def expected_audio(self) -> bytes:  # type: ignore[override]
        return synthesize_tones(self.expected_text, self.sample_rate)
