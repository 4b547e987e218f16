"""Inworld Realtime (speech-to-speech): the OpenAI Realtime GA wire with Inworld's endpoint,
auth and session fields; a configuration of :class:`~.openai.OpenAIRealtimeLLMService`.

Wire protocol:

* https://docs.inworld.ai/realtime/overview ("follows the OpenAI Realtime protocol")
* https://docs.inworld.ai/realtime/connect/websocket (endpoint, auth, session config)
* https://docs.inworld.ai/realtime/openai-migration (what differs from OpenAI)
* https://docs.inworld.ai/realtime/usage/using-realtime-models (model, STT and TTS fields)
* https://docs.inworld.ai/api-reference/realtimeAPI/realtime/realtime-websocket (event schemas)

Differences from OpenAI, each handled here: the socket is
``wss://api.inworld.ai/api/v1/realtime/session?key=<session-id>&protocol=realtime`` (the
``key`` is a session id the client chooses: a fresh one per connection); the API key (already
Base64 in Inworld's portal) goes as ``Authorization: Basic <key>``; the model is a session
field (``provider/model`` or an Inworld router, e.g. ``openai/gpt-4o-mini``), not a query
parameter; ``audio.output.model`` picks the TTS model and ``audio.input.transcription.model``
the STT model (``inworld/inworld-stt-1``); the documented turn detection is
``semantic_vad``. There is no beta protocol. Events (``session.update``,
``input_audio_buffer.append``, ``response.output_audio.delta``, ``conversation.item.truncate``,
``response.cancel`` …) are the GA ones.

UNCONFIRMED against a primary page: the session cap (``max_session_secs`` keeps OpenAI's
55 minutes), the ``usage`` of ``response.done``, and ``audio/pcm`` at 24 kHz as the default
format (it is what is sent).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError
from .._registry import ProviderInfo
from .openai import OpenAIRealtimeLLMService, OpenAIRealtimeSettings

__all__ = ["InworldRealtimeLLMService", "InworldRealtimeSettings"]

PROVIDERS = (
    ProviderInfo(
        name="inworld",
        kind="realtime",
        title="Inworld Realtime",
        service="flowcat.services.realtime.InworldRealtimeLLMService",
        docs=("https://docs.inworld.ai/realtime/connect/websocket",
              "https://docs.inworld.ai/realtime/openai-migration"),
        env="INWORLD_API_KEY",
        base_url="wss://api.inworld.ai/api/v1/realtime/session",
        notes="the OpenAI GA wire; `Authorization: Basic`, session id in the URL, model in the session",
    ),
)

DEFAULT_URL = "wss://api.inworld.ai/api/v1/realtime/session"


@dataclass
class InworldRealtimeSettings(OpenAIRealtimeSettings):
    """Session settings (a change is sent as a ``session.update`` at once).

    Attributes:
        model: The LLM (``provider/model``) or an Inworld router (``inworld/<router>``).
        voice: An Inworld voice (or a cloned one).
        transcription_model: The STT model (None: no user transcripts).
        turn_detection: The ``turn_detection`` object with ``server_vad`` (None: semantic VAD
            that answers and can be interrupted).
        tts_model: ``audio.output.model`` (None: the server's default).
    """

    model: str | None = "openai/gpt-4o-mini"
    voice: str | None = "Clive"
    transcription_model: str | None = "inworld/inworld-stt-1"
    tts_model: str | None = "inworld-tts-1.5-mini"


_SEMANTIC_VAD = {"type": "semantic_vad", "create_response": True, "interrupt_response": True}


class InworldRealtimeLLMService(OpenAIRealtimeLLMService):
    """Inworld Realtime: the OpenAI GA wire (see the module docstring).

    Args:
        url: The socket URL without its query (``ws://127.0.0.1:PORT/api/v1/realtime/session``
            for a local server). None: Inworld's endpoint.
        settings: :class:`InworldRealtimeSettings`.
        session_key: The ``key`` of the first connection (None: a random one); each later
            connection (a renewal, a reconnection) gets a fresh random one.
        **kwargs: :class:`OpenAIRealtimeLLMService` arguments (key: ``INWORLD_API_KEY``,
            sent as ``Authorization: Basic``); ``beta`` is refused.
    """

    vendor = "inworld"

    def __init__(self, *, url: str | None = None, settings: InworldRealtimeSettings | None = None,
                 session_key: str | None = None, **kwargs: Any) -> None:
        if kwargs.get("beta"):
            raise ConfigError("inworld: there is no beta protocol (the OpenAI GA wire only)")
        super().__init__(url=url or DEFAULT_URL, settings=settings or InworldRealtimeSettings(), **kwargs)
        self._next_key = session_key
        self.session_key = ""
        """The ``key`` (session id) of the current connection."""

    def socket_url(self) -> str:
        self.session_key, self._next_key = self._next_key or uuid.uuid4().hex, None
        sep = "&" if "?" in self.url else "?"
        return f"{self.url}{sep}key={self.session_key}&protocol=realtime"

    def socket_headers(self) -> dict[str, str]:
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        return {"Authorization": f"Basic {self._api_key.reveal()}"}

    def session_events(self) -> list[dict[str, Any]]:
        events = super().session_events()
        s = self.s
        session = events[0]["session"]
        audio_in = session["audio"]["input"]
        if s.server_vad and s.turn_detection is None:
            audio_in["turn_detection"] = dict(_SEMANTIC_VAD)
        tts = getattr(s, "tts_model", None)
        if tts:
            session["audio"]["output"]["model"] = tts
        session.update(s.extra)  # after the Inworld fields: extra wins, as in the base
        return events
