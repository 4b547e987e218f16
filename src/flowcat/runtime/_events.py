"""Named event handlers (``@obj.event_handler("on_x")``) that cost nothing when unused."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError

__all__ = ["EventEmitter"]

logger = logging.getLogger("flowcat.events")


class EventEmitter:
    """Mix-in giving an object pipecat-style named events.

    Handlers are called in registration order with the emitter as first argument;
    they may be plain functions or coroutines. A handler that raises is logged and
    does not stop the others. With no handler registered, emitting is one dict lookup.
    """

    __slots__ = ()

    _event_names: tuple[str, ...] = ()

    def _events(self) -> dict[str, list[Callable[..., Any]]]:
        try:
            return self.__dict__["_event_handlers"]
        except KeyError:
            handlers: dict[str, list[Callable[..., Any]]] = {}
            self.__dict__["_event_handlers"] = handlers
            return handlers

    def _register_event_handler(self, event_name: str) -> None:
        """Declare an event this object emits."""
        self._events().setdefault(event_name, [])

    def add_event_handler(self, event_name: str, handler: Callable[..., Any]) -> None:
        """Register ``handler`` for ``event_name``.

        Raises:
            ConfigError: The object does not emit that event.
        """
        events = self._events()
        if event_name not in events and event_name not in self._event_names:
            raise ConfigError(f"{type(self).__name__} has no event {event_name!r}")
        events.setdefault(event_name, []).append(handler)

    def event_handler(self, event_name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of :meth:`add_event_handler`."""

        def decorator(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.add_event_handler(event_name, handler)
            return handler

        return decorator

    def has_event_handler(self, event_name: str) -> bool:
        """Whether any handler is registered for ``event_name``."""
        handlers = self.__dict__.get("_event_handlers")
        return bool(handlers and handlers.get(event_name))

    def _clear_event_handlers(self) -> None:
        """Drop every registered handler (the events stay declared): the object's
        last event has fired, and a handler may close over it (a reference cycle)."""
        handlers = self.__dict__.get("_event_handlers")
        if handlers:
            for callbacks in handlers.values():
                callbacks.clear()

    async def _call_event_handler(self, event_name: str, *args: Any, **kwargs: Any) -> None:
        """Call every handler of ``event_name``; exceptions are logged, not raised."""
        handlers = self.__dict__.get("_event_handlers")
        if not handlers:
            return
        callbacks = handlers.get(event_name)
        if not callbacks:
            return
        for handler in list(callbacks):
            try:
                result = handler(self, *args, **kwargs)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("%s: event handler for %s failed", self, event_name)
