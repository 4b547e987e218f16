"""OpenAI transcription (``/audio/transcriptions``), one request per utterance, and the
OpenAI-compatible Whisper hosts (Groq, a local whisper server) as configurations.

Wire protocol:

* https://platform.openai.com/docs/api-reference/audio/createTranscription
* https://platform.openai.com/docs/guides/speech-to-text (streaming the transcription)
* https://console.groq.com/docs/speech-to-text (Groq: the same endpoint under
  ``https://api.groq.com/openai/v1``, models ``whisper-large-v3-turbo`` / ``whisper-large-v3``)

``POST {base_url}/audio/transcriptions`` with ``Authorization: Bearer <key>`` and a
``multipart/form-data`` body: ``file`` (the utterance as a WAV, ``audio.wav``,
``audio/wav``), ``model``, ``response_format=json``, and ``language`` (ISO-639-1),
``prompt``, ``temperature`` when set. The answer is ``{"text": …, "usage": …}``.

With ``stream=True`` (``gpt-4o-transcribe`` / ``gpt-4o-mini-transcribe``; ``whisper-1``
ignores it) the form also has ``stream=true`` and the answer is Server-Sent Events:
``transcript.text.delta`` (``delta``) events become interim frames with the text so far,
``transcript.text.done`` (``text``) the final one. A server that answers JSON anyway is
read as JSON.

Errors: the status mapping of :func:`~flowcat.services.raise_for_status` (401/403 auth,
429 rate limit, 5xx retried, other 4xx not). A body that does not parse is counted as
bad input and the request is asked again (a 200 with a garbled body is a server fault);
an answer cut off after its 200 is reported and not asked again (the server already
transcribed, and billed, that utterance); nor is one that already pushed interims.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from ...errors import ConfigError, ServiceConnectionError, ServiceProtocolError, ServiceTimeout
from .._ai_service import ServiceCapabilities
from .._http import http_session, iter_sse, raise_for_status
from .._registry import ProviderInfo
from .._secrets import Secret, resolve_api_key
from .._stt import SegmentedSTTService, STTSettings

__all__ = ["GroqSTTService", "OpenAISTTService", "OpenAISTTSettings"]

logger = logging.getLogger("flowcat.services.stt.openai")

PROVIDERS = (
    ProviderInfo(
        name="openai",
        kind="stt",
        title="OpenAI transcription (gpt-4o-transcribe, whisper-1)",
        service="flowcat.services.stt.OpenAISTTService",
        docs=("https://platform.openai.com/docs/api-reference/audio/createTranscription",),
        env="OPENAI_API_KEY",
        base_url="https://api.openai.com/v1",
        notes="one WAV per utterance; stream=True for interims (gpt-4o models); any compatible host via base_url",
    ),
    ProviderInfo(
        name="groq",
        kind="stt",
        title="Groq Whisper (OpenAI-compatible)",
        service="flowcat.services.stt.GroqSTTService",
        docs=("https://console.groq.com/docs/speech-to-text",),
        env="GROQ_API_KEY",
        base_url="https://api.groq.com/openai/v1",
        notes="whisper-large-v3-turbo; one WAV per utterance, final transcripts only",
    ),
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
GROQ_BASE_URL = "https://api.groq.com/openai/v1"


@dataclass
class OpenAISTTSettings(STTSettings):
    """Form fields of the request (None: not sent). ``extra`` entries are sent as more fields."""

    model: str | None = "gpt-4o-transcribe"
    language: str | None = "en"
    prompt: str | None = None
    temperature: float | None = None


class OpenAISTTService(SegmentedSTTService):
    """Whole-utterance transcription over ``/audio/transcriptions`` (OpenAI or a compatible host).

    Args:
        api_key: The key (else ``OPENAI_API_KEY``; a local server that ignores keys still
            needs a non-empty one).
        base_url: The API root; ``/audio/transcriptions`` is appended.
        model: Shortcut for ``settings.model``.
        settings: :class:`OpenAISTTSettings`.
        stream: Ask for SSE (interims, then the final) — the gpt-4o transcribe models.
        request_timeout_secs: Bound on one request (all of its answer).
        headers: Extra request headers.
        **kwargs: :class:`~flowcat.services.SegmentedSTTService` arguments.

    Raises:
        ConfigError: No key, or ``base_url`` is not an http(s) URL.
    """

    capabilities = ServiceCapabilities(streaming=False, transport="http")
    vendor = "openai"
    default_base_url = DEFAULT_BASE_URL

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        model: str | None = None,
        settings: OpenAISTTSettings | None = None,
        stream: bool = False,
        request_timeout_secs: float = 30.0,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        settings = settings if settings is not None else self.default_settings()
        if model is not None:
            settings.model = model
        super().__init__(api_key=resolve_api_key(self.vendor, api_key), settings=settings, **kwargs)
        base = self.default_base_url if base_url is None else base_url
        if not base.startswith(("http://", "https://")):
            raise ConfigError(f"{self.name}: base_url must be an http(s) URL, got {base!r}")
        self.base_url = base.rstrip("/")
        self.stream = stream
        self.request_timeout_secs = request_timeout_secs
        self._headers = dict(headers or {})

    def default_settings(self) -> OpenAISTTSettings:
        return OpenAISTTSettings()

    @property
    def url(self) -> str:
        """The transcription endpoint."""
        return f"{self.base_url}/audio/transcriptions"

    def form_fields(self) -> dict[str, str]:
        """The form's text fields, as sent (``file`` comes first, then these)."""
        s = self.settings
        assert isinstance(s, OpenAISTTSettings)  # noqa: S101 - the constructor's settings type
        fields: dict[str, str] = {}
        if s.model:
            fields["model"] = s.model
        fields["response_format"] = "json"
        if s.language:
            fields["language"] = s.language
        if s.prompt:
            fields["prompt"] = s.prompt
        if s.temperature is not None:
            fields["temperature"] = str(s.temperature)
        if self.stream:
            fields["stream"] = "true"
        fields.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in s.extra.items()})
        return fields

    # ------------------------------------------------------------- request

    async def run_stt(self, wav: bytes) -> AsyncGenerator[str, None]:
        assert self._api_key is not None  # noqa: S101 - the constructor resolved the key (required)
        form = aiohttp.FormData()
        form.add_field("file", wav, filename="audio.wav", content_type="audio/wav")
        for name, value in self.form_fields().items():
            form.add_field(name, value)
        headers = {**self._headers, "Authorization": f"Bearer {self._api_key.reveal()}"}
        session = await http_session()
        answered = False  # a 2xx status came: a broken answer is not asked for again
        pushed = False
        try:
            async with asyncio.timeout(self.request_timeout_secs):
                async with session.post(self.url, data=form, headers=headers) as resp:
                    await raise_for_status(resp, self.name, self._api_key)
                    answered = True
                    if resp.content_type == "text/event-stream":
                        final: str | None = None
                        text = ""
                        async for event in iter_sse(resp.content):
                            kind, value = self._event(event.data)
                            if kind == "delta":
                                text += value
                                pushed = True
                                await self.push_transcription(text.strip(), final=False,
                                                              language=self._language(), result=None)
                            elif kind == "done":
                                final = value
                                break
                        if final is None:
                            raise ServiceConnectionError(f"{self.name}: the stream ended without transcript.text.done",
                                                         retryable=False)
                        yield final
                        return
                    raw = await resp.read()
        except TimeoutError:
            raise ServiceTimeout(f"{self.name}: no transcript in {self.request_timeout_secs}s",
                                 retryable=not pushed) from None
        except (aiohttp.ClientError, OSError) as exc:
            err = ServiceConnectionError(self.redact(f"{self.name}: {type(exc).__name__}: {exc}"))
            err.retryable = not (answered or pushed)
            raise err from None
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        text_value = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text_value, str):
            self.bad_input("a transcription answer without text", raw)
            raise ServiceProtocolError(f"{self.name}: a transcription answer without text", retryable=True)
        yield text_value

    def _event(self, data: str) -> tuple[str, str]:
        """One SSE event: ``("delta", text)``, ``("done", text)`` or ``("", "")`` (skipped)."""
        data = data.strip()
        if not data or data == "[DONE]":
            return "", ""
        try:
            obj = json.loads(data)
            kind = obj.get("type")
        except (ValueError, AttributeError):
            self.bad_input("an event that is not a JSON object", data)
            return "", ""
        if kind == "transcript.text.delta" and isinstance(obj.get("delta"), str):
            return "delta", obj["delta"]
        if kind == "transcript.text.done" and isinstance(obj.get("text"), str):
            return "done", obj["text"]
        if kind in ("transcript.text.delta", "transcript.text.done"):
            self.bad_input(f"a {kind} event without its text", data)
        elif kind == "error" or obj.get("error") is not None:
            err = obj.get("error", obj)
            raise ServiceConnectionError(self.redact(f"{self.name}: error in the stream: {err}"), retryable=False)
        else:
            logger.debug("%s: skipped an event of type %r", self.name, str(kind)[:40])
        return "", ""

    def _language(self) -> str | None:
        return getattr(self.settings, "language", None)


class GroqSTTService(OpenAISTTService):
    """Groq's Whisper (``whisper-large-v3-turbo``) over its OpenAI-compatible endpoint.

    The key comes from ``GROQ_API_KEY``; ``base_url`` defaults to
    ``https://api.groq.com/openai/v1``. Groq does not stream transcriptions.
    """

    vendor = "groq"
    default_base_url = GROQ_BASE_URL

    def default_settings(self) -> OpenAISTTSettings:
        return OpenAISTTSettings(model="whisper-large-v3-turbo")
