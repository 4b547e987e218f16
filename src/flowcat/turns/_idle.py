"""User-idle timing: nobody has spoken for a while.

Pure and clock-injected; :class:`~flowcat.turns.UserTurnProcessor` owns the timer
and fires ``on_user_idle(processor, retry)`` when :meth:`UserIdleTimer.poll` says so.
"""

from __future__ import annotations

__all__ = ["UserIdleTimer"]


class UserIdleTimer:
    """Fires after ``timeout`` s with neither user nor bot speech, at most ``max_retries`` times.

    The countdown starts when the bot stops speaking or the user's turn ends, and
    stops while the bot speaks, the user speaks or a function call runs. After
    firing it re-arms itself (another ``timeout`` s) until ``max_retries``
    consecutive firings; user speech resets the count. Bot speech (e.g. the app's
    "are you still there?") pauses it without resetting the count.

    Args:
        timeout: Seconds of silence (0 disables). ``UserIdleTimeoutUpdateFrame`` changes it.
        max_retries: Consecutive firings before it stops re-arming. Default 3.

    Attributes:
        deadline: Loop time (s) of the next firing, or None.
        retries: Consecutive firings since the user last spoke.
    """

    __slots__ = ("_calls", "_waiting", "deadline", "max_retries", "retries", "timeout")

    def __init__(self, timeout: float = 0.0, max_retries: int = 3) -> None:
        self.timeout = timeout
        self.max_retries = max_retries
        self.deadline: float | None = None
        self.retries = 0
        self._waiting = False
        self._calls = 0

    def _arm(self, now: float) -> None:
        self._waiting = True
        if self.timeout > 0 and self._calls == 0 and self.retries < self.max_retries:
            self.deadline = now + self.timeout
        else:
            self.deadline = None

    def _disarm(self) -> None:
        self._waiting = False
        self.deadline = None

    def bot_started(self) -> None:
        """The bot speaks: no countdown."""
        self._disarm()

    def bot_stopped(self, now: float) -> None:
        """The bot finished: wait for the user."""
        self._arm(now)

    def user_started(self) -> None:
        """The user speaks: no countdown, retries reset."""
        self._disarm()
        self.retries = 0

    def user_stopped(self, now: float) -> None:
        """The user's turn ended: count down until someone speaks."""
        self._arm(now)

    def function_calls_started(self, count: int) -> None:
        """Tool calls run: no countdown until they end and someone speaks."""
        self._calls += count
        self._disarm()

    def function_call_done(self) -> None:
        """One tool call ended (result or cancel)."""
        if self._calls:
            self._calls -= 1

    def update_timeout(self, timeout: float, now: float) -> None:
        """New timeout (s; 0 disables); restarts a running countdown."""
        self.timeout = timeout
        if self._waiting:
            self._arm(now)

    def poll(self, now: float) -> int:
        """Return the retry number (1, 2, ...) if the timer fired now, else 0."""
        deadline = self.deadline
        if deadline is None or now < deadline - 1e-9:
            return 0
        self.retries += 1
        self._arm(now)
        return self.retries
