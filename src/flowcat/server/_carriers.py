"""Carrier adapters: handshake, answer webhook, signature check and serializer per carrier.

Each adapter wraps :mod:`flowcat.serializers` (imported lazily, when a carrier is
first used). The raw route ``/ws`` needs no serializer module.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import CarrierError
from ._apps import CallInfo

if TYPE_CHECKING:
    from ..serializers import FrameSerializer, RawPCMSerializer

__all__ = ["CarrierError", "Opened", "carrier_names", "get_carrier", "raw_serializer"]

logger = logging.getLogger("flowcat.server")


class Opened:
    """Result of a carrier handshake: the call's serializer and what came with it."""

    __slots__ = ("call", "in_rate", "out_rate", "pending", "serializer")

    def __init__(
        self,
        serializer: FrameSerializer,
        call: CallInfo,
        *,
        in_rate: int | None = None,
        out_rate: int | None = None,
        pending: list[str | bytes] | None = None,
    ) -> None:
        self.serializer = serializer
        self.call = call
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.pending = pending or []


def raw_serializer(sample_rate: int) -> RawPCMSerializer:
    """The raw-PCM serializer (binary PCM16 both ways at ``sample_rate``)."""
    from ..serializers.raw_pcm import RawPCMSerializer

    return RawPCMSerializer(sample_rate=sample_rate)


_ADAPTERS: dict[str, Any] = {}


def carrier_names() -> list[str]:
    """Names of the carriers this build can serve."""
    from ._carrier_adapters import available

    return sorted(available())


def get_carrier(name: str) -> Any | None:
    """The adapter for ``name`` or None (unknown carrier, or its serializer is missing)."""
    adapter = _ADAPTERS.get(name)
    if adapter is None:
        from ._carrier_adapters import build

        adapter = build(name)
        if adapter is None:
            return None
        _ADAPTERS[name] = adapter
    return adapter
