"""Cloudonix voice-application streams (Twilio-compatible).

Wire: Twilio Media Streams in shape (``connected``/``start``/``media``/``dtmf``/
``stop`` in, ``media``/``clear`` out with ``streamSid``, base64 μ-law 8 kHz). The
differences handled here: the ``start`` frame carries a session token (seen as
``start.session`` and as ``start.sessionToken``; both are accepted and the form
that arrived is logged), hang-up is ``DELETE
/customers/self/domains/{domain}/sessions/{session}`` with ``Authorization: Bearer
<CLOUDONIX_API_KEY>`` (404 = already gone), and marks are not known to be supported,
so none are sent unless asked for (echoes are still honoured). Answer: CXML
``<Connect><Stream url/></Connect><Hangup/>``. No webhook signature is documented.

Docs:
    https://developers.cloudonix.com/Documentation/voiceApplication/Verb/connect/stream
    https://github.com/cloudonix/pipecat (serializers/cloudonix.py; message reference not published)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import quoteattr

from ._base import CallInfo, WireOut
from ._carrier import HangUpRequest
from ._rest import env
from ._twilio_messages import TwilioStart
from .twilio import TwilioCarrier, TwilioFrameSerializer

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["CloudonixCarrier", "CloudonixFrameSerializer"]


class CloudonixFrameSerializer(TwilioFrameSerializer):
    """Serializer for Cloudonix streams.

    Args:
        api_key: Cloudonix API key (default ``CLOUDONIX_API_KEY``).
        domain: Cloudonix domain (default ``CLOUDONIX_DOMAIN``).
        session_token: The session token, when known before ``start``.
        **kwargs: See :class:`~flowcat.serializers.FrameSerializer`.
    """

    carrier = "cloudonix"
    regional_api = False  # Twilio's region/edge do not apply

    def __init__(
        self,
        *,
        api_key: str | None = None,
        domain: str | None = None,
        session_token: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._rest_credentials = {"api_key": api_key, "domain": domain, "session_token": session_token}
        super().__init__(**kwargs)
        self.session_token = session_token

    def _rest_carrier(self, **credentials: Any) -> TwilioCarrier:
        return CloudonixCarrier(api_base=self._api_base, session=self.session, **self._rest_credentials)

    def _call_from_start(self, start: TwilioStart, raw: str) -> CallInfo | None:
        info = super()._call_from_start(start, raw)
        for key, token in (("session", start.session), ("sessionToken", start.session_token)):
            if token:
                self.note("session-field", "session token arrived in start.%s", key)
                self.session_token = token
                if info is not None:
                    info.extra["session"] = token
                break
        else:
            self.note(
                "session-field",
                "start carried no session token (neither start.session nor start.sessionToken)",
            )
        return info

    def _end_of_batch(self) -> WireOut:
        # Marks go out only through mark(): Cloudonix support for them is unconfirmed.
        return self._flush()


class CloudonixCarrier(TwilioCarrier):
    """Cloudonix's HTTP side (see :class:`~flowcat.serializers.Carrier`)."""

    carrier = "cloudonix"
    serializer = CloudonixFrameSerializer
    default_api_base = "https://api.cloudonix.io"
    hang_up_ok_statuses = (404,)

    def __init__(
        self,
        *,
        api_key: str | None = None,
        domain: str | None = None,
        session_token: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key
        self.domain = domain
        self.session_token = session_token

    def hang_up_request(self, call_id: str | None, info: CallInfo | None) -> HangUpRequest | None:
        key = env(self.api_key, "CLOUDONIX_API_KEY")
        domain = env(self.domain, "CLOUDONIX_DOMAIN")
        # The token from ``start`` (kept in the call info), else the one given.
        token = (info.extra.get("session") if info is not None else None) or self.session_token
        if not (key and domain and token):
            return None
        url = f"{self.api_base}/customers/self/domains/{domain}/sessions/{token}"
        return "DELETE", url, {"Authorization": "Bearer " + key}, None

    @classmethod
    def answer_document(cls, stream_url: str, **options: Any) -> str:
        """CXML ``<Connect><Stream url/></Connect>`` then ``after`` (default ``<Hangup/>``)."""
        return '<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url={}/></Connect>{}</Response>'.format(
            quoteattr(stream_url),
            options.get("after", "<Hangup/>"),
        )

    @classmethod
    def verify_request(cls, request: web.Request, body: bytes, **options: Any) -> bool:
        """No signature is documented for Cloudonix; use an unguessable path token."""
        return True

    @classmethod
    def verify_websocket(
        cls, request: web.Request, *, auth_token: str | None = None, public_url: str | None = None
    ) -> bool:
        """No upgrade signature is documented for Cloudonix (Twilio's ``X-Twilio-Signature``
        check is not inherited: ``TWILIO_AUTH_TOKEN`` is Twilio's secret, not Cloudonix's)."""
        return True
