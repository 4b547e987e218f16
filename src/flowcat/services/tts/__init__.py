"""TTS providers, one module each (see ``docs/services.md``, "Adding a provider")."""

from __future__ import annotations

from .cartesia import CartesiaTTSService as CartesiaTTSService
from .cartesia import CartesiaTTSSettings as CartesiaTTSSettings

__all__ = ["CartesiaTTSService", "CartesiaTTSSettings"]
