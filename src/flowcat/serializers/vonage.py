"""Vonage Voice API WebSockets.

Wire: binary frames are audio both ways: 16-bit little-endian PCM, 20 ms per
message (640 bytes at 16 kHz, 320 at 8 kHz; outbound messages must be exactly that
size). Text frames are JSON: Vonage → us ``websocket:connected`` (first message,
with ``content-type`` and the NCCO ``headers`` echoed at top level),
``websocket:dtmf``, ``websocket:cleared``, ``websocket:notify``; us → Vonage
``{"action":"clear"}`` and ``{"action":"notify","payload":{"name":…}}``. Answer: an
NCCO ``connect`` to a ``websocket`` endpoint; we put the call ``uuid`` from the
answer request into the endpoint headers so the stream knows which call to hang up.
Hang-up: ``PUT /v1/calls/{uuid}`` ``{"action":"hangup"}`` with ``Authorization:
Bearer <JWT>``: ``VONAGE_JWT`` (pre-minted), else one minted from
``VONAGE_APPLICATION_ID`` + ``VONAGE_PRIVATE_KEY`` (PEM text or a file path; needs
the ``vonage`` extra, ``pip install 'flowcat[vonage]'``, for ``cryptography``).

Signed webhooks (:meth:`VonageCarrier.verify_request`, when
``VONAGE_SIGNATURE_SECRET`` is set): ``Authorization: Bearer <JWT>``, HS256 under
the account's signature secret, claims ``iat``, ``jti``, ``iss`` (``"Vonage"``),
``payload_hash`` (hex SHA-256 of the compact JSON of the request's parameters),
``api_key`` and ``application_id``. A failed check answers 401. Vonage's Voice
signed webhooks are a developer preview that signs only the call-status events
listed in :data:`SIGNED_EVENTS` and the ``record`` event; the answer webhook and
other events arrive unsigned and are let through unless
``VONAGE_REQUIRE_SIGNED_WEBHOOKS=1``.

Media upgrade (:meth:`VonageCarrier.verify_websocket`): with the secret set,
the answer NCCO asks for ``authorization: {"type": "vonage"}``, so Vonage opens the
socket with ``Authorization: Bearer <JWT>``, the same HS256 token as its signed
webhooks; the upgrade is refused with 401 unless that token verifies
(:mod:`flowcat.serializers._vonage_auth`, which also says what ``payload_hash`` means there).

Docs:
    https://developer.vonage.com/en/voice/voice-api/concepts/websockets
    https://developer.vonage.com/en/voice/voice-api/ncco-reference
    https://developer.vonage.com/en/api/voice#updateCall
    https://developer.vonage.com/en/voice/voice-api/guides/signed-webhooks
    https://developer.vonage.com/en/messages/concepts/signed-webhooks (claims)
    https://developer.vonage.com/en/getting-started/concepts/webhooks#decoding-signed-webhooks
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, MissingExtraError, ProtocolError
from ..frames import Frame
from ._base import CallInfo, FrameSerializer, WireOut, dtmf_frame
from ._carrier import Carrier, HangUpRequest
from ._framer import Framer
from ._json import parse_json_object
from ._rest import env
from ._signatures import check_vonage_webhook, vonage_payload_hashes
from ._vonage_auth import SIGNED_EVENTS, bearer_token, check_upgrade, signed_event_kind
from ._vonage_messages import VonageConnected, VonageDtmf, VonageNotify, VonageNotifyOut

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["SIGNED_EVENTS", "VonageCarrier", "VonageFrameSerializer"]

logger = logging.getLogger("flowcat.serializers")

_CLEAR = '{"action":"clear"}'

_noted: set[str] = set()  # one-time notes: unconfigured secret, unsigned kinds let through


def _note_once(key: str, message: str, *args: object) -> None:
    if key not in _noted:
        _noted.add(key)
        logger.info(message, *args)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_jwt(application_id: str, private_key_pem: str, ttl_s: int = 300) -> str | None:
    """An RS256 application JWT for the Vonage REST API, or None without ``cryptography``."""
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:
        return None
    now = int(time.time())
    header = _b64url(b'{"alg":"RS256","typ":"JWT"}')
    claims = {"application_id": application_id, "iat": now, "exp": now + ttl_s, "jti": str(uuid.uuid4())}
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError("VONAGE_PRIVATE_KEY is not an RSA key")
    sig = key.sign(f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{body}.{_b64url(sig)}"


class VonageFrameSerializer(FrameSerializer):
    """Serializer for Vonage WebSocket calls.

    Args:
        sample_rate: The endpoint's ``content-type`` rate (8000 or 16000), used until
            ``websocket:connected`` reports it.
        jwt: A pre-minted application JWT (default ``VONAGE_JWT``).
        application_id: Application id for minting (default ``VONAGE_APPLICATION_ID``).
        private_key: PEM text or path (default ``VONAGE_PRIVATE_KEY``).
        **kwargs: See :class:`~flowcat.serializers.FrameSerializer`.
    """

    carrier = "vonage"
    default_codec = "L16"
    default_rate = 16000
    has_marks = True

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        jwt: str | None = None,
        application_id: str | None = None,
        private_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rest = VonageCarrier(
            jwt=jwt,
            application_id=application_id,
            private_key=private_key,
            api_base=self._api_base,
            session=self.session,
        )
        self._set_rate(sample_rate)

    def _set_rate(self, rate: int) -> None:
        self.set_input_format("L16", rate)
        self.set_output_format("L16", rate)
        unit = rate // 50 * 2  # 20 ms of 16-bit audio: exactly this per message
        self._framer = Framer(unit, min_bytes=unit, max_bytes=unit)

    def _deserialize(self, data: str | bytes) -> Frame | None:
        if isinstance(data, bytes | bytearray):
            if not data or len(data) & 1:
                self.bad_input("audio with an odd or zero byte count", data)
                return None
            return self.decode(bytes(data))
        msg = parse_json_object(self, data)
        if msg is None:
            return None
        event = msg.get("event")
        try:
            if event == "websocket:connected":
                self._on_connected(VonageConnected.from_json(msg), data)
            elif event == "websocket:dtmf":
                return self._on_dtmf(VonageDtmf.from_json(msg), data)
            elif event == "websocket:notify":
                self.marks.echoed(VonageNotify.from_json(msg).name)
            elif event == "websocket:cleared":
                logger.debug("vonage: playback cleared")
            else:
                self.bad_input(f"unknown event {event!r}", data)
        except ProtocolError as exc:
            self.bad_input(str(exc), data)
        return None

    def _on_dtmf(self, dtmf: VonageDtmf, raw: str | bytes) -> Frame | None:
        frame = dtmf_frame(dtmf.digit)
        if frame is None:
            self.bad_input("dtmf without a valid digit", raw)
        return frame

    def _on_connected(self, hello: VonageConnected, raw: str | bytes) -> None:
        ctype = hello.content_type or ""
        encoding, _, rate_s = ctype.partition(";rate=")
        rate = self._rate
        if encoding.strip().lower() != "audio/l16" or not rate_s.isdigit():
            self.bad_input(f"unsupported content-type {ctype!r} (keeping L16/{rate})", raw)
        elif int(rate_s) not in (8000, 16000, 24000):
            self.bad_input(f"unexpected rate {rate_s} (keeping {rate})", raw)
        else:
            rate = int(rate_s)
        self._set_rate(rate)
        self.set_call(
            CallInfo(
                carrier=self.carrier,
                stream_id=hello.call_uuid,
                call_id=hello.call_uuid,
                codec="L16",
                sample_rate=rate,
                custom_parameters=dict(hello.headers),
            )
        )

    def _media_message(self, data: bytes) -> WireOut:
        return data

    def _clear_message(self) -> WireOut:
        return _CLEAR

    def _mark_message(self, name: str) -> WireOut:
        return VonageNotifyOut(name).to_json()


class VonageCarrier(Carrier):
    """Vonage's HTTP side (see :class:`~flowcat.serializers.Carrier`)."""

    carrier = "vonage"
    serializer = VonageFrameSerializer
    auth_failure_status = 401
    answer_content_type = "application/json"
    default_api_base = "https://api.nexmo.com"

    def __init__(
        self,
        *,
        jwt: str | None = None,
        application_id: str | None = None,
        private_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.jwt = jwt
        self.application_id = application_id
        self.private_key = private_key

    def _token(self) -> str | None:
        token = env(self.jwt, "VONAGE_JWT")
        if token:
            return token
        app_id = env(self.application_id, "VONAGE_APPLICATION_ID")
        key = env(self.private_key, "VONAGE_PRIVATE_KEY")
        if not (app_id and key):
            return None
        if "-----BEGIN" not in key and os.path.exists(key):
            with open(key) as f:
                key = f.read()
        token = mint_jwt(app_id, key)
        if token is None:
            logger.warning(
                "vonage: %s (or set VONAGE_JWT)", MissingExtraError("Minting Vonage JWTs", "vonage")
            )
        return token

    def hang_up_request(self, call_id: str | None, info: CallInfo | None) -> HangUpRequest | None:
        if not call_id:
            return None
        token = self._token()
        if not token:
            return None
        url = f"{self.api_base}/v1/calls/{call_id}"
        return "PUT", url, {"Authorization": "Bearer " + token}, ("json", {"action": "hangup"})

    @classmethod
    def answer_document(cls, stream_url: str, **options: Any) -> str:
        """NCCO: ``connect`` to a ``websocket`` endpoint.

        Options: ``request`` (its ``uuid`` query parameter goes into the headers as
        ``call_uuid``), ``sample_rate`` (default 16000), ``headers`` (dict, ≤ 512 bytes),
        ``event_url``, ``signature_secret`` (default ``VONAGE_SIGNATURE_SECRET``: when
        set, the endpoint asks for ``authorization: {"type": "vonage"}``, the JWT that
        :meth:`verify_websocket` checks).
        """
        headers: dict[str, Any] = dict(options.get("headers") or {})
        request = options.get("request")
        call_uuid = request.query.get("uuid") if request is not None else None
        if call_uuid:
            headers.setdefault("call_uuid", call_uuid)
        endpoint: dict[str, Any] = {
            "type": "websocket",
            "uri": stream_url,
            "content-type": "audio/l16;rate={}".format(options.get("sample_rate", 16000)),
        }
        if headers:
            endpoint["headers"] = headers
        if env(options.get("signature_secret"), "VONAGE_SIGNATURE_SECRET"):
            endpoint["authorization"] = {"type": "vonage"}
        action: dict[str, Any] = {"action": "connect", "endpoint": [endpoint]}
        if options.get("event_url"):
            action["eventType"] = "synchronous"
            action["eventUrl"] = [options["event_url"]]
        return json.dumps([action], separators=(",", ":"))

    @classmethod
    def verify_request(cls, request: web.Request, body: bytes, **options: Any) -> bool:
        """Check a Vonage signed webhook when a signature secret is configured.

        Options: ``signature_secret`` (default ``VONAGE_SIGNATURE_SECRET``; unset:
        nothing is checked, noted once), ``require_signed`` (default
        ``VONAGE_REQUIRE_SIGNED_WEBHOOKS``: refuse every unsigned request),
        ``api_key``/``application_id`` (default ``VONAGE_API_KEY``/
        ``VONAGE_APPLICATION_ID``: the claims must match when both are known),
        ``now`` (tests).

        A request with ``Authorization: Bearer`` must verify (HS256, fresh ``iat``,
        matching ``payload_hash``). One without is refused if it is an event Vonage
        signs or ``require_signed`` is on, else let through (noted once per kind).
        """
        secret = env(options.get("signature_secret"), "VONAGE_SIGNATURE_SECRET")
        if not secret:
            _note_once(
                "unconfigured", "vonage: VONAGE_SIGNATURE_SECRET is not set; webhook signatures not checked"
            )
            return True
        token = bearer_token(request.headers)
        if token is None:
            return cls._unsigned(request, body, options)
        form = request.content_type == "application/x-www-form-urlencoded"
        hashes = vonage_payload_hashes(body, {k: v for k, v in request.query.items()}, form=form)
        reason, claims = check_vonage_webhook(
            token,
            secret,
            hashes,
            now=options.get("now"),
            api_key=env(options.get("api_key"), "VONAGE_API_KEY"),
            application_id=env(options.get("application_id"), "VONAGE_APPLICATION_ID"),
        )
        if reason is None:
            return True
        logger.warning(
            "vonage: webhook %s %s refused: %s (peer %s, jti %s, %d body bytes)",
            request.method,
            request.path,
            reason,
            request.remote,
            str(claims.get("jti"))[:64],
            len(body),
        )
        return False

    @classmethod
    def verify_websocket(
        cls,
        request: Any,
        *,
        signature_secret: str | None = None,
        now: float | None = None,
        api_key: str | None = None,
        application_id: str | None = None,
        public_url: str | None = None,
    ) -> bool:
        """Authenticate the media upgrade by its bearer JWT (True: let it through).

        ``request``: aiohttp's upgrade request or the picows engine's (``headers``,
        ``path``, ``query``; ``remote`` for the log). ``signature_secret`` defaults to
        ``VONAGE_SIGNATURE_SECRET``: unset, nothing is checked (noted once), as the
        NCCO then asks for no token. With it, ``Authorization: Bearer <JWT>`` is
        required and must pass :func:`~flowcat.serializers._vonage_auth.check_upgrade`
        (webhook rules; a ``payload_hash``, if any, must be that of an empty payload).
        ``api_key``/``application_id`` default to ``VONAGE_API_KEY``/
        ``VONAGE_APPLICATION_ID``; ``now`` is for tests; ``public_url`` is ignored (Vonage
        signs no URL, so a proxy does not matter). A refusal is logged with its
        reason, path, peer and the token's ``jti``, never the token or the secret.
        """
        secret = env(signature_secret, "VONAGE_SIGNATURE_SECRET")
        if not secret:
            _note_once(
                "unconfigured-ws", "vonage: VONAGE_SIGNATURE_SECRET is not set; media upgrades not checked"
            )
            return True
        token = bearer_token(request.headers)
        claims: dict[str, Any] = {}
        if token is None:
            reason: str | None = "no Authorization: Bearer token"
        else:
            reason, claims = check_upgrade(
                token,
                secret,
                dict(request.query),
                now=now,
                api_key=env(api_key, "VONAGE_API_KEY"),
                application_id=env(application_id, "VONAGE_APPLICATION_ID"),
            )
        if reason is None:
            return True
        logger.warning(
            "vonage: media upgrade %s refused: %s (peer %s, jti %s)",
            str(request.path)[:200],
            reason,
            getattr(request, "remote", None),
            str(claims.get("jti"))[:64],
        )
        return False

    @classmethod
    def _unsigned(cls, request: web.Request, body: bytes, options: dict[str, Any]) -> bool:
        require = options.get("require_signed")
        if require is None:
            require = os.environ.get("VONAGE_REQUIRE_SIGNED_WEBHOOKS", "").lower() in ("1", "true", "yes")
        kind = signed_event_kind(body)
        if require or kind is not None:
            logger.warning(
                "vonage: unsigned webhook %s %s refused (event %s, which Vonage signs, or signatures "
                "required: %s; peer %s)",
                request.method,
                request.path,
                kind,
                bool(require),
                request.remote,
            )
            return False
        _note_once(
            "unsigned:" + request.path,
            "vonage: letting unsigned webhooks to %s through (Vonage signs only call-status and record "
            "events; set VONAGE_REQUIRE_SIGNED_WEBHOOKS=1 to refuse them)",
            request.path,
        )
        return True
