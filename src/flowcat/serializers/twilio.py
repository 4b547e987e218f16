"""Twilio Media Streams (bidirectional, ``<Connect><Stream>``).

Wire: JSON text frames. Twilio → us ``connected``, ``start``, ``media`` (base64
μ-law 8 kHz), ``dtmf``, ``mark``, ``stop``; us → Twilio ``media``, ``mark``,
``clear``, each with ``streamSid``. Hang-up: ``POST
/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` with ``Status=completed``
(HTTP Basic); a transfer updates the same resource with ``Twiml=<Response><Dial>…``.
Webhooks and the WebSocket upgrade carry ``X-Twilio-Signature``.

Regional REST API: with ``region`` and ``edge`` (or ``TWILIO_REGION`` / ``TWILIO_EDGE``)
the hang-up goes to ``https://api.{edge}.{region}.twilio.com``, Twilio's documented
``{product}.{edge}.{region}.twilio.com`` form (an edge alone targets ``us1``, as Twilio's
helper libraries do; a region alone is refused: the ``api.{region}.twilio.com`` form
stopped working on 2026-04-28). Credentials must belong to that region.

Credentials (constructor arguments first, then environment): ``TWILIO_ACCOUNT_SID``,
``TWILIO_AUTH_TOKEN`` (or ``TWILIO_API_KEY`` + ``TWILIO_API_SECRET`` for REST).

Docs:
    https://www.twilio.com/docs/voice/media-streams/websocket-messages
    https://www.twilio.com/docs/voice/twiml/stream
    https://www.twilio.com/docs/usage/security#validating-requests
    https://www.twilio.com/docs/voice/api/call-resource
    https://www.twilio.com/docs/voice/tutorials/how-to-modify-calls-in-progress (transfer: ``Twiml``)
    https://www.twilio.com/docs/global-infrastructure/edge-locations
    https://www.twilio.com/docs/global-infrastructure/using-the-twilio-rest-api-in-a-non-us-region
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape, quoteattr

from ..errors import ConfigError
from ._base import CallInfo
from ._carrier import Carrier, HangUpRequest
from ._media_stream import MediaStreamSerializer
from ._rest import api_base_override, basic_auth, env
from ._signatures import note_unchecked, twilio_body_hash_ok, validate_twilio
from ._twilio_messages import TwilioStart

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["TwilioCarrier", "TwilioFrameSerializer", "twilio_api_base", "twiml_connect_stream", "twiml_dial"]

logger = logging.getLogger("flowcat.serializers")

_REJECT_BUSY = '<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason="busy"/></Response>'
"""The answer that refuses a call when the server is full."""

_ENCODINGS = {"audio/x-mulaw": "PCMU"}


def twiml_connect_stream(
    stream_url: str,
    parameters: dict[str, Any] | None = None,
    *,
    status_callback: str | None = None,
    after: str = "",
) -> str:
    """TwiML that connects the call to a bidirectional stream.

    Args:
        stream_url: ``wss://`` URL; Twilio drops query strings, so per-call values go
            in ``parameters`` (they arrive in ``start.customParameters``) or the path.
        parameters: ``<Parameter name value>`` nouns.
        status_callback: Optional ``statusCallback`` URL for stream events.
        after: TwiML verbs to run after the stream ends (e.g. ``"<Hangup/>"``).
    """
    if "?" in stream_url:
        logger.warning("twilio: stream URL %s has a query string; Twilio drops it", stream_url)
    attrs = f"url={quoteattr(stream_url)}"
    if status_callback:
        attrs += f" statusCallback={quoteattr(status_callback)}"
    params = "".join(
        f"<Parameter name={quoteattr(str(k))} value={quoteattr(str(v))}/>"
        for k, v in (parameters or {}).items()
    )
    stream = f"<Stream {attrs}>{params}</Stream>" if params else f"<Stream {attrs}/>"
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Connect>{stream}</Connect>{after}</Response>'


def twiml_dial(target: str) -> str:
    """TwiML that hands the call to ``target``: ``<Dial>number</Dial>``, or
    ``<Dial><Sip>uri</Sip></Dial>`` for a ``sip:``/``sips:`` URI (escaped)."""
    target = target.strip()
    if target.lower().startswith(("sip:", "sips:")):
        return f"<Response><Dial><Sip>{escape(target)}</Sip></Dial></Response>"
    return f"<Response><Dial>{escape(target)}</Dial></Response>"


_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")

TWILIO_API = "https://api.twilio.com"


def twilio_api_base(region: str | None = None, edge: str | None = None) -> str:
    """Base URL of Twilio's REST API for a processing ``region`` and an ``edge`` location.

    Neither: ``https://api.twilio.com`` (US1). Both: ``https://api.{edge}.{region}.twilio.com``
    (e.g. ``au1`` + ``sydney``). An edge alone targets ``us1``.

    Raises:
        ConfigError: A region without an edge, or a value that is not a DNS label.
    """
    region = region.strip().lower() if region else None
    edge = edge.strip().lower() if edge else None
    for what, value in (("region", region), ("edge", edge)):
        if value is not None and not _LABEL.fullmatch(value):
            raise ConfigError(f"twilio: {what} {value!r} is not a Twilio {what} name (such as au1 / sydney)")
    if not region and not edge:
        return TWILIO_API
    if not edge:
        raise ConfigError(
            f"twilio: region {region!r} needs an edge: Twilio's regional API host is "
            "api.{edge}.{region}.twilio.com (e.g. edge 'sydney' for region 'au1')"
        )
    return f"https://api.{edge}.{region or 'us1'}.twilio.com"


def _form_params(request: web.Request, body: bytes) -> list[tuple[str, str]]:
    if request.method != "POST" or not body:
        return []
    if request.content_type not in ("application/x-www-form-urlencoded", ""):
        return []
    return parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)


class TwilioFrameSerializer(MediaStreamSerializer):
    """Serializer for Twilio Media Streams.

    Args:
        account_sid: Twilio account SID (default ``TWILIO_ACCOUNT_SID``, else the
            one in ``start``).
        auth_token: Auth token for REST and signatures (default ``TWILIO_AUTH_TOKEN``).
        region: Twilio processing region of the REST hang-up, e.g. ``au1`` (default
            ``TWILIO_REGION``); needs ``edge``.
        edge: Twilio edge location, e.g. ``sydney`` (default ``TWILIO_EDGE``); without
            a region it targets ``us1``. See :func:`twilio_api_base`.
        **kwargs: See :class:`~flowcat.serializers.FrameSerializer` (an explicit
            ``api_base`` wins over ``region``/``edge``).

    Raises:
        ConfigError: ``region``/``edge`` do not name a regional API host.
    """

    carrier = "twilio"
    regional_api: ClassVar[bool] = True
    """Whether ``region``/``edge`` (and ``TWILIO_REGION``/``TWILIO_EDGE``) pick the REST host."""
    out_sid_key = "streamSid"
    encodings: ClassVar[dict[str, str]] = _ENCODINGS

    def __init__(
        self,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        region: str | None = None,
        edge: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("api_base") is None and self.regional_api:
            kwargs["api_base"] = api_base_override(self.carrier) or twilio_api_base(
                env(region, "TWILIO_REGION"), env(edge, "TWILIO_EDGE"))
        super().__init__(**kwargs)
        self.rest = self._rest_carrier(account_sid=account_sid, auth_token=auth_token)

    def _rest_carrier(self, **credentials: Any) -> TwilioCarrier:
        return TwilioCarrier(api_base=self._api_base, session=self.session, **credentials)

    def _parse_start(self, msg: dict[str, Any], raw: str) -> CallInfo | None:
        return self._call_from_start(TwilioStart.from_json(msg), raw)

    def _call_from_start(self, start: TwilioStart, raw: str) -> CallInfo | None:
        fmt = start.media_format
        encoding = fmt.encoding or "audio/x-mulaw"
        return CallInfo(
            carrier=self.carrier,
            stream_id=start.stream_sid,
            call_id=start.call_sid,
            codec=self._codec_of(encoding, self.encodings, raw),
            sample_rate=fmt.sample_rate or 8000,
            custom_parameters=dict(start.custom_parameters),
            account_id=start.account_sid,
            extra={
                "tracks": list(start.tracks) if start.tracks is not None else None,
                "encoding": fmt.encoding,
            },
        )


class TwilioCarrier(Carrier):
    """Twilio's HTTP side (see :class:`~flowcat.serializers.Carrier`)."""

    carrier = "twilio"
    serializer = TwilioFrameSerializer
    busy_document = _REJECT_BUSY
    default_api_base = TWILIO_API

    def __init__(self, *, account_sid: str | None = None, auth_token: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.account_sid = account_sid
        self.auth_token = auth_token

    rest_transfer = True

    def _call_url_and_auth(self, call_id: str | None, info: CallInfo | None) -> tuple[str, str] | None:
        sid = env(self.account_sid, "TWILIO_ACCOUNT_SID") or (
            info.account_id if info else None
        )
        key = env(None, "TWILIO_API_KEY")
        secret = env(None, "TWILIO_API_SECRET")
        token = env(self.auth_token, "TWILIO_AUTH_TOKEN")
        if not (sid and call_id):
            return None
        if key and secret:
            auth = basic_auth(key, secret)
        elif token:
            auth = basic_auth(sid, token)
        else:
            return None
        return f"{self.api_base}/2010-04-01/Accounts/{sid}/Calls/{call_id}.json", auth

    def hang_up_request(self, call_id: str | None, info: CallInfo | None) -> HangUpRequest | None:
        ua = self._call_url_and_auth(call_id, info)
        if ua is None:
            return None
        return "POST", ua[0], {"Authorization": ua[1]}, ("form", {"Status": "completed"})

    def transfer_request(self, call_id: str | None, info: CallInfo | None, target: str) -> HangUpRequest | None:
        """Update the live call with new TwiML, ``<Response><Dial>target</Dial></Response>``
        (https://www.twilio.com/docs/voice/api/call-resource#update-a-call-resource): Twilio
        leaves the ``<Connect><Stream>`` (the media stream ends) and dials ``target``."""
        ua = self._call_url_and_auth(call_id, info)
        if ua is None or not target.strip():
            return None
        return "POST", ua[0], {"Authorization": ua[1]}, ("form", {"Twiml": twiml_dial(target)})

    @classmethod
    def answer_document(cls, stream_url: str, **options: Any) -> str:
        """TwiML ``<Connect><Stream>`` (options: ``parameters``, ``status_callback``, ``after``)."""
        return twiml_connect_stream(
            stream_url,
            options.get("parameters"),
            status_callback=options.get("status_callback"),
            after=options.get("after", ""),
        )

    @classmethod
    def verify_request(cls, request: web.Request, body: bytes, **options: Any) -> bool:
        """Check ``X-Twilio-Signature`` when an auth token is configured.

        Options: ``auth_token`` (default ``TWILIO_AUTH_TOKEN``), ``public_url`` (the
        full URL as Twilio called it, query included; the server passes it, built from
        ``--public-url`` or trusted forwarded headers; default: the request's own URL).
        A form POST's parameters are signed; a JSON webhook's URL carries
        ``bodySHA256``, which must be the body's hash (the URL alone is signed).
        """
        token = env(options.get("auth_token"), "TWILIO_AUTH_TOKEN")
        if not token:
            note_unchecked("twilio", "TWILIO_AUTH_TOKEN")
            return True
        url = options.get("public_url") or str(request.url)
        body_ok = twilio_body_hash_ok(url, body)
        if body_ok is False:
            return False
        params = None if body_ok else _form_params(request, body)
        return validate_twilio(url, params, request.headers.get("X-Twilio-Signature"), token)

    @classmethod
    def verify_websocket(
        cls, request: web.Request, *, auth_token: str | None = None, public_url: str | None = None
    ) -> bool:
        """Check the signature of the WebSocket upgrade (no form parameters).

        Twilio signs the ``wss://`` URL it dialled (the ``<Stream url>``): the URL
        (``public_url`` as the server passes it, else the request's own) is checked
        with its scheme mapped ``https``→``wss``, ``http``→``ws``, with and without the
        default port. A URL with a query (ConversationRelay; ``<Stream>`` URLs have none)
        is also tried the way Twilio's own server code validates it: the URL without its
        query, the query's parameters appended like form parameters (unconfirmed by
        Twilio's docs).
        """
        token = env(auth_token, "TWILIO_AUTH_TOKEN")
        if not token:
            return True
        url = _websocket_url(public_url or str(request.url))
        signature = request.headers.get("X-Twilio-Signature")
        if validate_twilio(url, None, signature, token):
            return True
        base, sep, query = url.partition("?")
        return bool(sep) and validate_twilio(base, parse_qsl(query, keep_blank_values=True), signature, token)


def _websocket_url(url: str) -> str:
    """``url`` with an ``http``/``https`` scheme turned into ``ws``/``wss``."""
    scheme, sep, rest = url.partition("://")
    mapped = {"http": "ws", "https": "wss"}.get(scheme.lower()) if sep else None
    return f"{mapped}://{rest}" if mapped else url
