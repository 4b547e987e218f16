"""The input events of Amazon Nova Sonic (JSON ``{"event": {<name>: {…}}}``), as documented in
https://docs.aws.amazon.com/nova/latest/nova2-userguide/sonic-input-events.html and
https://docs.aws.amazon.com/nova/latest/userguide/input-events.html .

A session is ``sessionStart`` (``inferenceConfiguration``), ``promptStart`` (``promptName``,
the output configurations, ``toolConfiguration``), then contents: each ``contentStart``
(``contentName``, ``type``, ``role``, ``interactive``, its input configuration), the content
(``textInput``, ``audioInput``, ``toolResult``) and ``contentEnd``; it ends with ``contentEnd`` of
the open audio, ``promptEnd`` and ``sessionEnd``. Two readers of output events come with them:
:func:`usage_delta` (``usageEvent``) and :func:`is_interruption` (the barge-in signal).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

__all__ = [
    "audio_content_start",
    "audio_input",
    "event",
    "farewell",
    "is_interruption",
    "prompt_start",
    "session_start",
    "text_content",
    "tool_result_content",
    "tool_specs",
    "usage_delta",
]

TEXT_PLAIN = {"mediaType": "text/plain"}


def event(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """One input event."""
    return {"event": {name: body}}


def session_start(
    max_tokens: int, top_p: float, temperature: float, endpointing: str | None
) -> dict[str, Any]:
    """``sessionStart`` (``turnDetectionConfiguration`` only when ``endpointing`` is set: Nova 2)."""
    body: dict[str, Any] = {
        "inferenceConfiguration": {"maxTokens": max_tokens, "topP": top_p, "temperature": temperature}
    }
    if endpointing:
        body["turnDetectionConfiguration"] = {"endpointingSensitivity": endpointing}
    return event("sessionStart", body)


def prompt_start(
    prompt: str, voice: str | None, rate: int, tools: list[dict[str, Any]], extra: dict[str, Any]
) -> dict[str, Any]:
    """``promptStart``: text and 16-bit mono LPCM audio out at ``rate``, tool use as JSON."""
    body: dict[str, Any] = {
        "promptName": prompt,
        "textOutputConfiguration": TEXT_PLAIN,
        "audioOutputConfiguration": {
            "mediaType": "audio/lpcm",
            "sampleRateHertz": rate,
            "sampleSizeBits": 16,
            "channelCount": 1,
            "voiceId": voice,
            "encoding": "base64",
            "audioType": "SPEECH",
        },
        "toolUseOutputConfiguration": {"mediaType": "application/json"},
    }
    if tools:
        body["toolConfiguration"] = {"tools": tools}
    body.update(extra)
    return event("promptStart", body)


def tool_specs(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-style function tools as ``toolSpec``s (``inputSchema.json`` is a JSON string)."""
    out = []
    for t in tools:
        fn = t.get("function", t)
        schema = fn.get("parameters") or {"type": "object", "properties": {}}
        spec = {"name": fn.get("name"), "description": fn.get("description", ""),
                "inputSchema": {"json": json.dumps(schema)}}  # fmt: skip
        out.append({"toolSpec": spec})
    return out


def _content(
    prompt: str, start: dict[str, Any], name: str, kind: str, body: dict[str, Any]
) -> list[dict[str, Any]]:
    return [
        event("contentStart", {"promptName": prompt, "contentName": name, **start}),
        event(kind, {"promptName": prompt, "contentName": name, **body}),
        event("contentEnd", {"promptName": prompt, "contentName": name}),
    ]


def text_content(prompt: str, role: str, text: str) -> list[dict[str, Any]]:
    """A text content (``SYSTEM``, or ``USER``/``ASSISTANT`` history)."""
    start = {"type": "TEXT", "interactive": False, "role": role, "textInputConfiguration": TEXT_PLAIN}
    return _content(prompt, start, str(uuid.uuid4()), "textInput", {"content": text})


def tool_result_content(prompt: str, tool_use_id: str, result: str) -> list[dict[str, Any]]:
    """A ``TOOL`` content carrying the result of ``toolUseId``."""
    start = {
        "interactive": False,
        "type": "TOOL",
        "role": "TOOL",
        "toolResultInputConfiguration": {
            "toolUseId": tool_use_id,
            "type": "TEXT",
            "textInputConfiguration": TEXT_PLAIN,
        },  # fmt: skip
    }
    return _content(prompt, start, str(uuid.uuid4()), "toolResult", {"content": result})


def audio_content_start(prompt: str, name: str, rate: int) -> dict[str, Any]:
    """The ``contentStart`` of the session's one interactive ``USER`` audio content."""
    config = {"mediaType": "audio/lpcm", "sampleRateHertz": rate, "sampleSizeBits": 16, "channelCount": 1,
              "audioType": "SPEECH", "encoding": "base64"}  # fmt: skip
    return event("contentStart", {"promptName": prompt, "contentName": name, "type": "AUDIO", "interactive": True,
                                  "role": "USER", "audioInputConfiguration": config})  # fmt: skip


def audio_input(prompt: str, name: str, b64: str) -> str:
    """The ``audioInput`` text for a chunk of the caller's audio (built without a JSON encoder:
    the names are UUIDs, the content base64)."""
    return (
        '{"event":{"audioInput":{"promptName":"'
        + prompt
        + '","contentName":"'
        + name
        + '","content":"'
        + b64
        + '"}}}'
    )


def farewell(prompt: str, audio_name: str) -> list[str]:
    """The end of a session: the audio content's end, ``promptEnd``, ``sessionEnd`` (JSON texts)."""
    events = (
        event("contentEnd", {"promptName": prompt, "contentName": audio_name}),
        event("promptEnd", {"promptName": prompt}),
        event("sessionEnd", {}),
    )
    return [json.dumps(e) for e in events]


def usage_delta(body: dict[str, Any]) -> tuple[int, int, int, int]:
    """A ``usageEvent``'s ``details.delta``: input speech, input text, output speech, output text tokens."""
    delta = (body.get("details") or {}).get("delta") or {}
    inp, out = delta.get("input") or {}, delta.get("output") or {}
    return (int(inp.get("speechTokens") or 0), int(inp.get("textTokens") or 0),
            int(out.get("speechTokens") or 0), int(out.get("textTokens") or 0))  # fmt: skip


def is_interruption(text: str) -> bool:
    """A ``textOutput`` content that is the barge-in signal (``{ "interrupted" : true }``)."""
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("interrupted") is True
