"""OpenAI text-to-speech (``POST /audio/speech``), raw 24 kHz PCM streamed back as it is made.

Wire protocol:

* https://platform.openai.com/docs/api-reference/audio/createSpeech
* https://platform.openai.com/docs/guides/text-to-speech

``POST {base_url}/audio/speech`` with ``Authorization: Bearer <key>`` and the JSON body
``{"model": "gpt-4o-mini-tts" | "tts-1" | ..., "input", "voice", "response_format": "pcm",
"instructions"?, "speed"?}`` (``input`` up to 4096 characters; ``instructions`` is not
for ``tts-1``/``tts-1-hd``). The answer is the audio file itself, sent with chunked
transfer encoding, read as it arrives; for ``pcm`` that is headerless 16-bit
little-endian mono at 24 kHz, resampled here when the pipeline's output rate differs.
Errors come with an HTTP status and ``{"error": {"message", "type", "param", "code"}}``.
Cancel = close the response. A 200 answer that is not audio (an HTML page from a proxy,
a JSON body) is a protocol error.

UNCONFIRMED (the guide says it, the API reference does not): ``pcm`` is 24 kHz.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from ...audio import StreamResampler
from ...errors import ConfigError, ServiceProtocolError
from .._ai_service import ServiceCapabilities
from .._http import http_session, raise_for_status
from .._registry import ProviderInfo
from .._secrets import Secret, resolve_api_key
from .._tts import TTSAudio, TTSChunk, TTSService, TTSSettings

__all__ = ["OpenAITTSService", "OpenAITTSSettings"]

PROVIDERS = (
    ProviderInfo(
        name="openai",
        kind="tts",
        title="OpenAI speech (HTTP streaming)",
        service="flowcat.services.tts.OpenAITTSService",
        docs=("https://platform.openai.com/docs/api-reference/audio/createSpeech",),
        env="OPENAI_API_KEY",
        base_url="https://api.openai.com/v1",
        notes="24 kHz PCM, resampled to the pipeline's rate",
    ),
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PCM_RATE = 24000
_AUDIO_TYPES = ("audio/", "application/octet-stream", "binary/")


@dataclass
class OpenAITTSSettings(TTSSettings):
    """Request fields: ``model``, ``voice``, ``instructions``, ``speed``; ``extra`` is merged into the body."""

    model: str | None = "gpt-4o-mini-tts"
    voice: str | None = "alloy"
    instructions: str | None = None
    speed: float | None = None


class OpenAITTSService(TTSService):
    """OpenAI speech: one streamed ``/audio/speech`` request per unit of text.

    Args:
        api_key: The key (else ``OPENAI_API_KEY``).
        base_url: The API root; ``/audio/speech`` is appended (any compatible server).
        voice: Shortcut for ``settings.voice``.
        settings: :class:`OpenAITTSSettings`.
        organization: ``OpenAI-Organization`` header.
        project: ``OpenAI-Project`` header.
        headers: Extra request headers.
        **kwargs: :class:`~flowcat.services.TTSService` arguments (``sample_rate``…).

    Raises:
        ConfigError: No key, or ``base_url`` is not an http(s) URL.
    """

    capabilities = ServiceCapabilities(streaming=True, transport="http", sample_rates=(PCM_RATE,))

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str = DEFAULT_BASE_URL,
        voice: str | None = None,
        settings: OpenAITTSSettings | None = None,
        organization: str | None = None,
        project: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        settings = settings if settings is not None else OpenAITTSSettings()
        if voice is not None:
            settings.voice = voice
        super().__init__(api_key=resolve_api_key("openai", api_key), settings=settings, **kwargs)
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{self.name}: base_url must be an http(s) URL, got {base_url!r}")
        self.url = base_url.rstrip("/") + "/audio/speech"
        self._headers: dict[str, str] = {"Content-Type": "application/json"}
        if organization:
            self._headers["OpenAI-Organization"] = organization
        if project:
            self._headers["OpenAI-Project"] = project
        self._headers.update(headers or {})

    def request_body(self, text: str) -> dict[str, Any]:
        """The JSON body for ``text``, as sent."""
        s = cast(OpenAITTSSettings, self.settings)
        body: dict[str, Any] = {"model": s.model, "input": text, "voice": s.voice, "response_format": "pcm"}
        if s.instructions is not None:
            body["instructions"] = s.instructions
        if s.speed is not None:
            body["speed"] = s.speed
        body.update(s.extra)
        return body

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[TTSChunk, None]:
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        headers = {**self._headers, "Authorization": f"Bearer {self._api_key.reveal()}"}
        session = await http_session()
        async with session.post(self.url, json=self.request_body(text), headers=headers) as resp:
            await raise_for_status(resp, self.name, self._api_key)
            ctype = resp.headers.get("Content-Type", "")
            if ctype and not ctype.lower().startswith(_AUDIO_TYPES):
                raise ServiceProtocolError(f"{self.name}: expected audio, got {ctype[:60]!r}")
            rate = self.sample_rate or PCM_RATE
            resampler = None if rate == PCM_RATE else StreamResampler(PCM_RATE, rate)
            async for chunk in resp.content.iter_any():
                if resampler is not None:
                    chunk = resampler.resample(chunk)
                if chunk:
                    yield TTSAudio(chunk)
            if resampler is not None:
                tail = resampler.flush()
                if tail:
                    yield TTSAudio(tail)
