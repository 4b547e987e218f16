"""Asterisk chan_websocket (media over WebSocket).

Wire: binary frames are raw media in the dialled codec (``ulaw``, ``alaw``,
``slin``/``slin16``/…); text frames are control messages, JSON (preferred from
20.18/22.8/23.2, ``f(json)``) or the deprecated plain-text ``NAME key:value …``.
Both are read; commands are written in the form ``MEDIA_START`` arrived in.
Asterisk → us ``MEDIA_START``, ``DTMF_END``, ``MEDIA_XOFF``/``MEDIA_XON``,
``MEDIA_MARK_PROCESSED``, ``QUEUE_DRAINED``, ``STATUS``,
``MEDIA_BUFFERING_COMPLETED``; us → Asterisk ``FLUSH_MEDIA`` (interruption),
``MARK_MEDIA`` (marks), ``HANGUP`` (end of call). Outbound media is sent in whole
multiples of ``optimal_frame_size`` (a partial frame would be dropped) and at most
65,500 bytes per message. There is no answer webhook (dialplan/ARI) and no REST
hang-up (``HANGUP`` does it). AudioSocket (raw TCP) is not covered here.

Docs:
    https://docs.asterisk.org/Configuration/Channel-Drivers/WebSocket/
    https://docs.asterisk.org/Latest_API/API_Documentation/Module_Configuration/chan_websocket/
    https://docs.asterisk.org/Development/Reference-Information/Asterisk-Framework-and-API-Examples/External-Media-and-ARI/
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from ..frames import CancelFrame, EndFrame, Frame
from ._base import CallInfo, FrameSerializer, WireOut, dtmf_frame
from ._carrier import Carrier
from ._framer import Framer

__all__ = ["AsteriskCarrier", "AsteriskFrameSerializer"]

logger = logging.getLogger("flowcat.serializers")

_MAX_MESSAGE = 65_500
_SLIN = re.compile(r"^slin(\d*)$")
_SILENCE = {"PCMU": 0xFF, "PCMA": 0xD5, "L16": 0}


def _format(name: str) -> tuple[str, int] | None:
    if name == "ulaw":
        return "PCMU", 8000
    if name == "alaw":
        return "PCMA", 8000
    m = _SLIN.match(name)
    if m:
        k = int(m.group(1) or 8)
        return "L16", 44100 if k == 44 else k * 1000
    return None


class AsteriskFrameSerializer(FrameSerializer):
    """Serializer for Asterisk's chan_websocket.

    Args:
        format: The dialled codec (``c(…)``), used until ``MEDIA_START`` reports it.
        **kwargs: See :class:`~flowcat.serializers.FrameSerializer`.

    Attributes:
        xoff: True between ``MEDIA_XOFF`` and ``MEDIA_XON`` (Asterisk's queue is nearly
            full; the transport should hold bot audio back).
        json_control: Whether commands are sent as JSON (else plain text).
    """

    carrier = "asterisk"
    has_marks = True

    def __init__(self, *, format: str = "ulaw", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.xoff = False
        self.json_control = True
        codec, rate = _format(format) or ("PCMU", 8000)
        self._set_format(codec, rate, 160 * (2 if codec == "L16" else 1) * rate // 8000)

    def _set_format(self, codec: str, rate: int, frame_size: int) -> None:
        self.set_input_format(codec, rate)
        self.set_output_format(codec, rate)
        self._framer = Framer(frame_size, max_bytes=_MAX_MESSAGE, silence=_SILENCE[codec])

    # ---------------------------------------------------------------- inbound

    def _deserialize(self, data: str | bytes) -> Frame | None:
        if isinstance(data, bytes | bytearray):
            if not data or (self._codec == "L16" and len(data) & 1):
                self.bad_input("media with a truncated or empty payload", data)
                return None
            return self.decode(bytes(data))
        msg = self._parse(data)
        if msg is None:
            return None
        event = msg.get("event")
        if event == "MEDIA_START":
            self._on_media_start(msg, data)
        elif event == "DTMF_END":
            frame = dtmf_frame(msg.get("digit"))
            if frame is None:
                self.bad_input("DTMF_END without a valid digit", data)
            return frame
        elif event == "MEDIA_MARK_PROCESSED":
            name = msg.get("correlation_id")
            if isinstance(name, str):
                self.marks.echoed(name)
            else:
                self.bad_input("MEDIA_MARK_PROCESSED without correlation_id", data)
        elif event == "MEDIA_XOFF":
            self.xoff = True
        elif event == "MEDIA_XON":
            self.xoff = False
        elif event == "QUEUE_DRAINED":
            self.marks.all_played("QUEUE_DRAINED")
        elif event not in ("STATUS", "MEDIA_BUFFERING_COMPLETED"):
            self.bad_input(f"unknown event {event!r}", data)
        return None

    def _parse(self, data: str) -> dict[str, Any] | None:
        text = data.strip()
        if text.startswith("{"):
            try:
                msg = json.loads(text)
            except ValueError:
                self.bad_input("invalid JSON", data)
                return None
            if not isinstance(msg, dict) or not isinstance(msg.get("event"), str):
                self.bad_input("JSON control message without an event", data)
                return None
            return msg
        name, _, rest = text.partition(" ")
        if not name or not name.replace("_", "").isalpha() or not name.isupper():
            self.bad_input("unreadable control message", data)
            return None
        msg = {"event": name}
        for part in rest.split():
            key, sep, value = part.partition(":")
            if sep:
                msg[key] = value
        return msg

    def _on_media_start(self, msg: dict[str, Any], raw: str) -> None:
        self.json_control = raw.lstrip().startswith("{")
        self.note(
            "control-format", "control messages arrive as %s", "JSON" if self.json_control else "plain text"
        )
        fmt = _format(str(msg.get("format", "ulaw")))
        if fmt is None:
            self.bad_input("unsupported format {!r} (keeping {})".format(msg.get("format"), self._codec), raw)
            fmt = (self._codec, self._rate)
        codec, rate = fmt
        try:
            frame_size = int(msg.get("optimal_frame_size") or 0)
        except (TypeError, ValueError):
            frame_size = 0
        if frame_size <= 0:
            frame_size = rate // 50 * (2 if codec == "L16" else 1)
        self._set_format(codec, rate, frame_size)
        variables = msg.get("channel_variables")
        self.set_call(
            CallInfo(
                carrier=self.carrier,
                stream_id=msg.get("connection_id"),
                call_id=msg.get("channel_id"),
                codec=codec,
                sample_rate=rate,
                custom_parameters=variables if isinstance(variables, dict) else {},
                extra={
                    "channel": msg.get("channel"),
                    "optimal_frame_size": frame_size,
                    "ptime": msg.get("ptime"),
                },
            )
        )

    # ---------------------------------------------------------------- outbound

    def command(self, name: str, **fields: str) -> str:
        """A control command in the connection's format (JSON or plain text)."""
        if self.json_control:
            return json.dumps({"command": name, **fields}, separators=(",", ":"))
        return " ".join([name, *("{}:{}".format(*kv) for kv in fields.items())])

    def _media_message(self, data: bytes) -> WireOut:
        return data

    def _clear_message(self) -> WireOut:
        return self.command("FLUSH_MEDIA")

    def _mark_message(self, name: str) -> WireOut:
        return self.command("MARK_MEDIA", correlation_id=name)

    def _end_message(self, frame: EndFrame | CancelFrame) -> WireOut:
        if self.remote_ended:
            return None
        return self.command("HANGUP")


class AsteriskCarrier(Carrier):
    """Asterisk's HTTP side (see :class:`~flowcat.serializers.Carrier`)."""

    carrier = "asterisk"
    serializer = AsteriskFrameSerializer
    rest_hang_up = False

