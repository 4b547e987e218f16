"""The JSON shapes of Gemini Live messages (https://ai.google.dev/api/live): the server's
top-level message kinds, a protobuf ``Duration``, ``usageMetadata`` as ``LLMTokenUsage``, and the
tool payloads (``functionCall.args``, ``functionResponse.response``) of the client's messages.
"""

from __future__ import annotations

import json
from typing import Any

from ...frames import LLMTokenUsage

_KNOWN = (
    "serverContent",
    "toolCall",
    "toolCallCancellation",
    "goAway",
    "sessionResumptionUpdate",
    "setupComplete",
    "usageMetadata",
)


def _seconds(value: Any) -> float | None:
    """A protobuf ``Duration`` as JSON (``"5s"``, ``"1.5s"``, or ``{"seconds", "nanos"}``)."""
    try:
        if isinstance(value, str):
            return float(value.strip().removesuffix("s"))
        if isinstance(value, dict):
            return float(value.get("seconds") or 0) + float(value.get("nanos") or 0) / 1e9
    except ValueError:
        return None
    return None


def _without_handle(message: dict[str, Any]) -> dict[str, Any]:
    setup = dict(message["setup"])
    setup.pop("sessionResumption", None)
    return {"setup": setup}


def _object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"arguments": value}


def _response(text: str) -> dict[str, Any]:
    """A tool result as the ``response`` object: the result's own object, else ``{"result": …}``."""
    try:
        value = json.loads(text)
    except ValueError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


def _by_modality(details: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in details if isinstance(details, list) else ():
        if isinstance(d, dict):
            out[str(d.get("modality") or "").upper()] = int(d.get("tokenCount") or 0)
    return out


def _usage(raw: Any) -> LLMTokenUsage | None:
    if not isinstance(raw, dict):
        return None
    prompt = int(raw.get("promptTokenCount") or 0)
    completion = int(raw.get("responseTokenCount") or raw.get("candidatesTokenCount") or 0)
    inp = _by_modality(raw.get("promptTokensDetails"))
    out = _by_modality(raw.get("responseTokensDetails") or raw.get("candidatesTokensDetails"))
    cached = raw.get("cachedContentTokenCount")
    return LLMTokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(raw.get("totalTokenCount") or prompt + completion),
        cache_read_input_tokens=int(cached) if cached is not None else None,
        input_audio_tokens=inp.get("AUDIO"),
        input_text_tokens=inp.get("TEXT"),
        output_audio_tokens=out.get("AUDIO"),
        output_text_tokens=out.get("TEXT"),
    )
