"""Genesys Cloud AudioHook (Audio Connector, protocol version 2).

Wire: text frames are JSON control messages, binary frames are audio (PCMU 8 kHz,
external channel). Every message has ``version:"2"``, ``id`` (session), ``type``,
``seq`` (per sender, from 1) and ``parameters``; Genesys adds ``serverseq`` and
``position`` (ISO-8601 duration), we add ``clientseq`` (the last ``seq`` we got) and
no ``position``: in the protocol's reference implementation (``protocol/message.ts``,
``ClientMessageBase`` vs ``ServerMessageBase``) ``position`` is a client field only,
so ``pong``, ``closed``, ``event`` and ``disconnect`` carry none (pipecat adds one).

Pause: ``pause``/``resume`` are server → client requests (flowcat sends neither);
Genesys reports ``paused``/``resumed`` (also when it pauses on its own, e.g. a
secure pause). As in the reference server (``server/serversessionimpl.ts``):
``paused`` counts only on an open, active stream, ``resumed`` only while paused,
and audio arriving while paused is a protocol error — here logged as bad input
and dropped (the call goes on). A ``pause`` from Genesys is not a client message
and is reported as unknown (pipecat takes it as the client pausing). Bot audio
keeps being sent while paused: the protocol does not say otherwise.
Genesys → us ``open``, ``ping``, ``close``, ``paused``, ``resumed``, ``update``,
``discarded``, ``error``, ``dtmf``, ``playback_started``, ``playback_completed``;
us → Genesys ``opened``, ``pong``, ``closed``, ``event`` (``barge_in`` on
interruption) and ``disconnect`` (end of call, with ``outputVariables``). No REST
hang-up: ``disconnect`` ends the session and Genesys answers with ``close``. The
connector is configured in Genesys (base URI + Architect action), so there is no
answer document.

Authentication (:meth:`GenesysCarrier.verify_websocket`, run by the server
on the upgrade): ``X-API-KEY`` must equal ``GENESYS_API_KEY``; with a client secret
(``GENESYS_CLIENT_SECRET``, base64) the HTTP Message Signature must verify too. The
checks and their thresholds are in :mod:`flowcat.serializers._audiohook_auth`.
A failed check refuses the upgrade with 401. Then ``open.parameters.organizationId``
must agree with the upgrade's ``Audiohook-Organization-Id`` (compared
case-insensitively, as UUIDs; either one missing is accepted): on a mismatch the
session is refused in the open transaction, as Genesys's reference server does,
with ``disconnect`` ``reason: "unauthorized"`` and no ``opened``; Genesys answers
``close``, we reply ``closed`` and the socket is closed.

Docs:
    https://developer.genesys.cloud/devapps/audiohook
    https://developer.genesys.cloud/devapps/audiohook/session-walkthrough#establishing-connection
    https://help.mypurecloud.com/articles/audio-connector-overview/
    https://github.com/purecloudlabs/audiohook-reference-implementation
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import replace
from typing import Any

from ..errors import ProtocolError
from ..frames import CancelFrame, EndFrame, Frame
from ._audiohook_auth import check_audiohook_upgrade, public_target_authority, upgrade_authorities
from ._base import CallInfo, FrameSerializer, WireOut, dtmf_frame
from ._carrier import Carrier
from ._genesys_messages import GenesysClose, GenesysDtmf, GenesysError, GenesysMedia, GenesysOpen
from ._http_signatures import field_value
from ._rest import env

__all__ = ["GenesysCarrier", "GenesysFrameSerializer"]

logger = logging.getLogger("flowcat.serializers")

_MAX_AUDIO = 64_000  # bytes per binary message, as in Genesys's reference server
_warned_open = False  # "no GENESYS_API_KEY" is logged once per process


class GenesysFrameSerializer(FrameSerializer):
    """Serializer for Genesys AudioHook / Audio Connector sessions.

    Args:
        output_variables: Initial ``outputVariables`` for ``disconnect`` (update
            :attr:`output_variables` during the call).
        **kwargs: See :class:`~flowcat.serializers.FrameSerializer`.

    Attributes:
        position: The last stream ``position`` Genesys reported (e.g. ``"PT4.2S"``).
        paused: Whether Genesys reported the stream paused.
        output_variables: Sent back to the Architect flow in ``disconnect``.
        upgrade_organization_id: The upgrade's ``Audiohook-Organization-Id`` (None
            if absent or the serializer was not created by the server).
    """

    carrier = "genesys"
    has_marks = False

    def __init__(self, *, output_variables: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output_variables: dict[str, Any] = dict(output_variables or {})
        self.position = "PT0S"
        self.paused = False
        self._seq = 0
        self._client_seq = 0
        self._opened = False
        self._closing = False
        self._disconnected = False
        self.upgrade_organization_id: str | None = None

    def on_upgrade(self, request: Any) -> None:
        """Keep the upgrade's ``Audiohook-Organization-Id``: ``open`` must agree with it."""
        headers = getattr(request, "headers", None)
        value = field_value(headers, "audiohook-organization-id") if headers is not None else None
        self.upgrade_organization_id = value or None

    def message(self, type_: str, parameters: dict[str, Any]) -> str:
        """One server message with the next ``seq`` and the current ``clientseq``."""
        self._seq += 1
        return json.dumps(
            {
                "version": "2",
                "type": type_,
                "seq": self._seq,
                "clientseq": self._client_seq,
                "id": self.stream_id,
                "parameters": parameters,
            },
            separators=(",", ":"),
        )

    # ---------------------------------------------------------------- inbound

    async def _deserialize(self, data: str | bytes) -> Frame | None:
        if isinstance(data, bytes | bytearray):
            if not self._opened:
                self.bad_input("audio before open", data)
                return None
            if self.paused:
                self.bad_input("audio while the stream is paused", data)
                return None
            if not data or (self._codec == "L16" and len(data) & 1):
                self.bad_input("audio with a truncated or empty payload", data)
                return None
            return self.decode(bytes(data))
        try:
            msg = json.loads(data)
        except ValueError:
            self.bad_input("invalid JSON", data)
            return None
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            self.bad_input("message without a type", data)
            return None
        seq = msg.get("seq")
        if isinstance(seq, int):
            self._client_seq = seq
        position = msg.get("position")
        if isinstance(position, str):
            self.position = position
        type_ = msg["type"]
        try:
            return await self._on_control(type_, msg, data)
        except ProtocolError as exc:
            self.bad_input(str(exc), data)
            return None

    async def _on_control(self, type_: str, msg: dict[str, Any], data: str) -> Frame | None:
        """Handle one control message (a malformed one raises :class:`ProtocolError`)."""
        if type_ == "open":
            await self._on_open(GenesysOpen.from_json(msg), data)
        elif type_ == "ping":
            await self.reply(self.message("pong", {}))
        elif type_ == "close":
            self.remote_ended = True
            self._closing = True
            await self.reply(self.message("closed", {}))
            logger.debug("genesys: close on %s: %s", self.stream_id, GenesysClose.from_json(msg).reason)
        elif type_ == "dtmf":
            frame = dtmf_frame(GenesysDtmf.from_json(msg).digit)
            if frame is None:
                self.bad_input("dtmf without a valid digit", data)
            return frame
        elif type_ == "playback_completed":
            self.marks.all_played("playback_completed")
        elif type_ == "paused":
            if not self._opened or self._closing or self.paused:
                self.bad_input("paused on a stream that is not open and active", data)
            else:
                self.paused = True
                logger.debug("genesys: stream %s paused", self.stream_id)
        elif type_ == "resumed":
            if not self.paused:
                self.bad_input("resumed on a stream that is not paused", data)
            else:
                self.paused = False
                logger.debug("genesys: stream %s resumed", self.stream_id)
        elif type_ == "update":
            params = msg.get("parameters")
            params = params if isinstance(params, dict) else {}
            if self.call_info is not None:
                self.call_info.extra.setdefault("updates", []).append(params)
            logger.info("genesys: update on %s: %s", self.stream_id, str(params)[:200])
        elif type_ == "error":
            error = GenesysError.from_json(msg)
            logger.warning("genesys: error %s on %s: %s", error.code, self.stream_id, str(error.message)[:200])
        elif type_ not in ("discarded", "playback_started"):
            self.bad_input(f"unknown message type {type_!r}", data)
        return None

    def _organization_refused(self, open_: GenesysOpen) -> bool:
        """Whether ``open``'s ``organizationId`` contradicts the upgrade's header (logged)."""
        header = self.upgrade_organization_id
        claimed = open_.organization_id
        if not header or claimed is None or claimed.strip().lower() == header.strip().lower():
            return False
        logger.warning(
            "genesys: session %s refused: open organizationId %s differs from the upgrade's "
            "Audiohook-Organization-Id %s (conversation %s)",
            str(open_.session_id)[:64],
            claimed[:64],
            header[:64],
            str(open_.conversation_id)[:64],
        )
        return True

    async def _on_open(self, open_: GenesysOpen, raw: str) -> None:
        if self._opened or self._disconnected:
            self.bad_input("open on a session already opened or refused", raw)
            return
        if self._organization_refused(open_):
            self.stream_id = open_.session_id or self.stream_id
            self._disconnected = True
            info = "organizationId does not match the Audiohook-Organization-Id header"
            await self.reply(self.message("disconnect", {"reason": "unauthorized", "info": info}))
            return
        audio = [m for m in open_.media if m.type == "audio" and m.rate == 8000]
        offer = next((m for want in ("PCMU", "L16") for m in audio if m.format == want), None)
        if offer is None:
            self.bad_input("open without a PCMU/L16 8 kHz offer (answering PCMU)", raw)
            offer = GenesysMedia("PCMU", channels=("external",))
        else:
            channels = offer.channels or ("external",)
            offer = replace(offer, channels=("external",) if "external" in channels else channels[:1])
        participant = open_.participant
        self.set_output_format(offer.format, 8000)
        self.set_call(
            CallInfo(
                carrier=self.carrier,
                stream_id=open_.session_id or None,
                call_id=open_.conversation_id,
                codec=offer.format,
                sample_rate=8000,
                custom_parameters=dict(open_.input_variables),
                account_id=open_.organization_id or self.upgrade_organization_id,
                from_number=participant.ani,
                to_number=participant.dnis,
                extra={"language": open_.language, "participant": participant.to_json()},
            )
        )
        self._opened = True
        await self.reply(self.message("opened", {"startPaused": False, "media": [offer.to_json()]}))

    # ---------------------------------------------------------------- outbound

    def _media_message(self, data: bytes) -> WireOut:
        if len(data) <= _MAX_AUDIO:
            return data
        return [data[i : i + _MAX_AUDIO] for i in range(0, len(data), _MAX_AUDIO)]

    def _clear_message(self) -> WireOut:
        if not self._opened or self._closing:
            return None
        return self.message("event", {"entities": [{"type": "barge_in", "data": {}}]})

    def _end_message(self, frame: EndFrame | CancelFrame) -> WireOut:
        if not self._opened or self._closing or self._disconnected:
            return None
        self._disconnected = True
        params: dict[str, Any] = {"reason": "completed"}
        if self.output_variables:
            params["outputVariables"] = self.output_variables
        return self.message("disconnect", params)


class GenesysCarrier(Carrier):
    """Genesys's HTTP side (see :class:`~flowcat.serializers.Carrier`)."""

    carrier = "genesys"
    serializer = GenesysFrameSerializer
    rest_hang_up = False
    auth_failure_status = 401

    @classmethod
    def verify_websocket(
        cls,
        request: Any,
        *,
        api_key: str | None = None,
        client_secret: str | None = None,
        now: float | None = None,
        public_url: str | None = None,
    ) -> bool:
        """Authenticate the AudioHook upgrade request (True: let it through).

        Args:
            request: The upgrade request: ``headers``, and ``raw_path`` (aiohttp's, the
                target exactly as received) or ``url``; ``secure`` (it came over TLS;
                ``X-Forwarded-Proto`` takes precedence, see
                :func:`~flowcat.serializers._audiohook_auth.upgrade_authorities`);
                ``remote`` for the log.
            api_key: The integration's API key (default ``GENESYS_API_KEY``). Without
                one nothing is checked (logged once).
            client_secret: The integration's client secret, base64 (default
                ``GENESYS_CLIENT_SECRET``). With one the signature is required.
            now: The current Unix time (tests).
            public_url: The full URL Genesys called (the server passes it, from
                ``--public-url`` or trusted forwarded headers): its authority and
                target are tried first, then the request's own (``Host``, target as
                received).

        A refusal is logged with its reason and the request's path, peer and
        AudioHook ids; never with the key or secret.
        """
        global _warned_open
        key = env(api_key, "GENESYS_API_KEY")
        if not key:
            if not _warned_open:
                _warned_open = True
                logger.warning(
                    "genesys: GENESYS_API_KEY is not set; AudioHook upgrades are not authenticated"
                )
            return True
        secret_b64 = env(client_secret, "GENESYS_CLIENT_SECRET")
        secret: bytes | None = None
        if secret_b64:
            try:
                secret = base64.b64decode(secret_b64, validate=True)
            except (binascii.Error, ValueError):
                logger.error(
                    "genesys: GENESYS_CLIENT_SECRET is not valid base64; refusing AudioHook upgrades"
                )
                return False
        headers = request.headers
        target = getattr(request, "raw_path", None) or request.url.raw_path_qs
        authorities = upgrade_authorities(
            headers,
            secure_connection=bool(getattr(request, "secure", False)),
            fallback=request.url.raw_authority or "",
        )
        targets: tuple[str, ...] = (target,)
        if public_url:
            pub_target, pub_authority = public_target_authority(public_url)
            targets = tuple(dict.fromkeys((pub_target, target)))
            authorities = tuple(dict.fromkeys((pub_authority, *authorities)))
        reason = check_audiohook_upgrade(
            headers, request_target=targets, authority=authorities, api_key=key, client_secret=secret, now=now
        )
        if reason is None:
            return True
        logger.warning(
            "genesys: AudioHook upgrade refused: %s (path %s, peer %s, session %s, organization %s, correlation %s)",
            reason,
            target[:200],
            getattr(request, "remote", None),
            str(headers.get("Audiohook-Session-Id"))[:64],
            str(headers.get("Audiohook-Organization-Id"))[:64],
            str(headers.get("Audiohook-Correlation-Id"))[:64],
        )
        return False
