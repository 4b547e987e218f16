"""Per-carrier adapters over :mod:`flowcat.serializers` (filled in as serializers land)."""

from __future__ import annotations

from typing import Any

__all__ = ["available", "build"]


def available() -> list[str]:
    return []


def build(name: str) -> Any | None:
    return None
