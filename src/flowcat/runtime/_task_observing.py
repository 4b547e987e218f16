"""What a :class:`~flowcat.PipelineTask` lets watch it while it runs: observers
(added and removed at any time) and the frame types that fire
``on_frame_reached_upstream`` / ``on_frame_reached_downstream``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..frames import Frame
from ._observer import BaseObserver, install_observers
from ._pipeline import unflatten_links

if TYPE_CHECKING:
    import asyncio

    from ._processor import FrameProcessor
    from ._scheduler import CallScheduler

__all__ = ["TaskObserving"]


class TaskObserving:
    """Observers and reached filters of a :class:`~flowcat.PipelineTask` (a base of it)."""

    if TYPE_CHECKING:
        _observers: list[BaseObserver]
        _observed: bool
        _procs: list[FrameProcessor]
        _reached_up: tuple[type[Frame], ...]
        _reached_down: tuple[type[Frame], ...]
        _loop: asyncio.AbstractEventLoop | None
        _sched: CallScheduler
        _state: str

    @property
    def observers(self) -> list[BaseObserver]:
        """The attached observers (a copy)."""
        return list(self._observers)

    def add_observer(self, observer: BaseObserver) -> None:
        """Attach ``observer``; while running it sees pushes from the next one on.

        A task started without observers runs with the observing ``push_frame``
        from then on (as if started with one).
        """
        self._observers.append(observer)
        if self._state == "running" and not self._observed:
            self._observe()

    async def remove_observer(self, observer: BaseObserver) -> None:
        """Detach ``observer`` (it sees nothing more)."""
        try:
            self._observers.remove(observer)
        except ValueError:
            pass

    @property
    def reached_upstream_types(self) -> tuple[type[Frame], ...]:
        """Frame types that fire ``on_frame_reached_upstream``."""
        return self._reached_up

    @property
    def reached_downstream_types(self) -> tuple[type[Frame], ...]:
        """Frame types that fire ``on_frame_reached_downstream``."""
        return self._reached_down

    def set_reached_upstream_filter(self, types: Iterable[type[Frame]]) -> None:
        """Fire ``on_frame_reached_upstream(task, frame)`` for frames of these types
        reaching the top of the pipeline (none by default)."""
        self._reached_up = tuple(dict.fromkeys(types))

    def set_reached_downstream_filter(self, types: Iterable[type[Frame]]) -> None:
        """Fire ``on_frame_reached_downstream(task, frame)`` for frames of these types
        reaching the end of the pipeline (none by default)."""
        self._reached_down = tuple(dict.fromkeys(types))

    def add_reached_upstream_filter(self, types: Iterable[type[Frame]]) -> None:
        """Add types to :meth:`set_reached_upstream_filter`'s."""
        self.set_reached_upstream_filter((*self._reached_up, *types))

    def add_reached_downstream_filter(self, types: Iterable[type[Frame]]) -> None:
        """Add types to :meth:`set_reached_downstream_filter`'s."""
        self.set_reached_downstream_filter((*self._reached_down, *types))

    def _observe(self) -> None:
        """Give every processor the observing ``push_frame`` (full chain, no flattening)."""
        loop = self._loop
        assert loop is not None  # noqa: S101 - set when the run started
        self._observed = True
        unflatten_links(self._procs)
        for proc in self._procs:
            install_observers(proc, self._observers, loop)
            proc._plain_push = False  # inline results go through the observed push
        self._sched.forget_routes()
