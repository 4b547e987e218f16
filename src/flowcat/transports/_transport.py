"""BaseTransport: a connection with an input and an output processor."""

from __future__ import annotations

from ..runtime import EventEmitter
from ._input import BaseInputTransport
from ._output import BaseOutputTransport
from ._params import TransportParams

__all__ = ["BaseTransport"]


class BaseTransport(EventEmitter):
    """A transport: put :meth:`input` first in the pipeline and :meth:`output` last.

    Args:
        params: Transport parameters.
        name: Name for logs.
    """

    def __init__(self, params: TransportParams | None = None, *, name: str | None = None) -> None:
        self._params = params or TransportParams()
        self.name = name or type(self).__name__

    @property
    def params(self) -> TransportParams:
        """The transport's parameters."""
        return self._params

    def input(self) -> BaseInputTransport:
        """The input processor (user audio and messages in)."""
        raise NotImplementedError

    def output(self) -> BaseOutputTransport:
        """The output processor (bot audio and messages out)."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name
