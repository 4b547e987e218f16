"""Typed Genesys AudioHook (Audio Connector, protocol v2) client messages: ``open`` (with its
media offers and participant), ``dtmf``, ``error``, ``close``.

Only the ``parameters`` that flowcat reads are typed; the envelope (``seq``,
``position``, ``type``) stays with the serializer, and audio travels in binary frames.
``from_json`` raises :class:`~flowcat.errors.ProtocolError` on a wrong type or a missing
required field; the serializer logs it as bad input and survives.

Docs:
    https://developer.genesys.cloud/devapps/audiohook
    https://github.com/purecloudlabs/audiohook-reference-implementation (protocol/message.ts)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

from ..errors import ProtocolError
from ._wire import need_object, opt_int, opt_object, opt_str, opt_str_list

__all__ = ["GenesysClose", "GenesysDtmf", "GenesysError", "GenesysMedia", "GenesysOpen", "GenesysParticipant"]


def _params(obj: object, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    msg = need_object(obj, what)
    return msg, opt_object(msg, "parameters", what) or {}


@dataclass(frozen=True, slots=True)
class GenesysMedia:
    """One offered format: ``{"type":"audio","format":"PCMU","channels":["external"],"rate":8000}``."""

    format: str
    type: str = "audio"
    channels: tuple[str, ...] = ()
    rate: int = 8000

    @classmethod
    def from_json(cls, obj: object) -> Self:
        media = need_object(obj, "media offer")
        what = "media offer"
        fmt = media.get("format")
        if not isinstance(fmt, str):
            raise ProtocolError("media offer without a format", obj)
        rate = opt_int(media, "rate", what)
        return cls(
            format=fmt,
            type=opt_str(media, "type", what) or "audio",
            channels=opt_str_list(media, "channels", what) or (),
            rate=8000 if rate is None else rate,
        )

    def to_json(self) -> dict[str, Any]:
        """The offer as ``opened`` echoes it."""
        return {"type": self.type, "format": self.format, "channels": list(self.channels), "rate": self.rate}


@dataclass(frozen=True, slots=True)
class GenesysParticipant:
    """``open.parameters.participant``: ``{"id","ani","aniName","dnis"}``."""

    id: str | None = None
    ani: str | None = None
    ani_name: str | None = None
    dnis: str | None = None

    @classmethod
    def from_json(cls, obj: object) -> Self:
        p = need_object(obj, "participant")
        what = "participant"
        return cls(
            id=opt_str(p, "id", what),
            ani=opt_str(p, "ani", what),
            ani_name=opt_str(p, "aniName", what),
            dnis=opt_str(p, "dnis", what),
        )

    def to_json(self) -> dict[str, Any]:
        """The participant as sent (fields not sent are left out)."""
        fields = (("id", self.id), ("ani", self.ani), ("aniName", self.ani_name), ("dnis", self.dnis))
        return {k: v for k, v in fields if v is not None}


@dataclass(frozen=True, slots=True)
class GenesysOpen:
    """``open``: session id, conversation, organization, participant, media offers, language,
    and the Architect action's ``inputVariables``.

    Offers that are not well-formed (not an object, no ``format``, a non-integer ``rate``) are
    left out of ``media`` rather than refusing the session: ``opened`` picks among the rest.
    """

    session_id: str | None = None
    conversation_id: str | None = None
    organization_id: str | None = None
    participant: GenesysParticipant = field(default_factory=GenesysParticipant)
    media: tuple[GenesysMedia, ...] = ()
    language: str | None = None
    input_variables: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: object) -> Self:
        msg, params = _params(obj, "open")
        what = "open"
        offered = params.get("media")
        if offered is not None and not isinstance(offered, list):
            raise ProtocolError("open whose media is not a list", obj)
        media = []
        for offer in offered or ():
            try:
                media.append(GenesysMedia.from_json(offer))
            except ProtocolError:
                continue
        participant = opt_object(params, "participant", what)
        return cls(
            session_id=opt_str(msg, "id", what),
            conversation_id=opt_str(params, "conversationId", what),
            organization_id=opt_str(params, "organizationId", what),
            participant=GenesysParticipant.from_json(participant) if participant else GenesysParticipant(),
            media=tuple(media),
            language=opt_str(params, "language", what),
            input_variables=opt_object(params, "inputVariables", what) or {},
        )


@dataclass(frozen=True, slots=True)
class GenesysDtmf:
    """``dtmf``: ``{"parameters":{"digit":"5"}}``."""

    digit: str

    @classmethod
    def from_json(cls, obj: object) -> Self:
        _, params = _params(obj, "dtmf")
        digit = params.get("digit")
        if not isinstance(digit, str):
            raise ProtocolError("dtmf without a valid digit", obj)
        return cls(digit=digit)


@dataclass(frozen=True, slots=True)
class GenesysError:
    """``error``: ``code`` (400, 405, 408, 409, 413, 415, 429, 500, 503), ``message``, and
    ``retryAfter`` (an ISO-8601 duration) when rate-limited. Read leniently: it is only logged."""

    code: object = None
    message: object = None
    retry_after: object = None

    @classmethod
    def from_json(cls, obj: object) -> Self:
        _, params = _params(obj, "error")
        return cls(
            code=params.get("code"), message=params.get("message"), retry_after=params.get("retryAfter")
        )


@dataclass(frozen=True, slots=True)
class GenesysClose:
    """``close``: Genesys ends the session (``reason``: ``end``, ``error``, ``disconnect``, ``reconnect``)."""

    reason: str | None = None

    @classmethod
    def from_json(cls, obj: object) -> Self:
        _, params = _params(obj, "close")
        return cls(reason=opt_str(params, "reason", "close"))
