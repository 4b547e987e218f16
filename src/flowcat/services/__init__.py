"""Providers a pipeline talks to: speech-to-text, LLMs, text-to-speech (empty: later issues fill it).

Layer: above :mod:`flowcat.transports` (services may use frames, the runtime, audio,
turns, serializers and transports), below :mod:`flowcat.agent`.

Planned layout: the base classes (``STTService``, ``LLMService``, ``TTSService`` and what
they share: connection lifecycle, retries, metrics, translating vendor exceptions into
:class:`flowcat.errors.ServiceError`) live in this package; each provider is one module
under ``services/<kind>/`` (``services/stt/<provider>.py``, ``services/llm/…``,
``services/tts/…``), importing its vendor SDK lazily (a missing one raises
:class:`flowcat.errors.MissingExtraError`).
"""

from __future__ import annotations

__all__: list[str] = []
