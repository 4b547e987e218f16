"""Vobiz audio streams (Plivo-compatible).

Same XML and events as Plivo (see :mod:`flowcat.serializers.plivo`). Differences:
inbound formats L16 8/16 kHz or μ-law 8 kHz from ``start.mediaFormat``;
``playedStream`` has no ``streamId``; no inbound ``stop`` (the socket close ends the
stream); DTMF is not in Vobiz's event list (accepted if it arrives); at the end of
the call we send ``{"event":"stop","streamId":…}`` and hang up with ``DELETE
/api/v1/Account/{auth_id}/Call/{call_uuid}/`` using the ``X-Auth-ID`` and
``X-Auth-Token`` headers (``VOBIZ_AUTH_ID``, ``VOBIZ_AUTH_TOKEN``). Webhooks carry
``X-Vobiz-Signature-V2``/``-V3`` (HMAC-SHA256 with the auth token over the URL and a
nonce), checked when ``VOBIZ_AUTH_TOKEN`` is set.

Docs:
    https://docs.vobiz.ai/concepts/validating-callbacks
    https://vobiz.ai/docs (xml/stream, xml/stream/play-audio, checkpoint-event, clear-audio,
    audio-streams; https://vobiz.ai/llms.txt)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from ..frames import CancelFrame, EndFrame
from ._base import CallInfo, WireOut
from ._carrier import HangUpRequest
from ._rest import env
from ._signatures import note_unchecked, validate_vobiz
from .plivo import PlivoCarrier, PlivoFrameSerializer

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["VobizCarrier", "VobizFrameSerializer"]


class VobizFrameSerializer(PlivoFrameSerializer):
    """Serializer for Vobiz streams (arguments as :class:`PlivoFrameSerializer`)."""

    carrier = "vobiz"

    def _rest_carrier(self, **credentials: Any) -> PlivoCarrier:
        return VobizCarrier(api_base=self._api_base, session=self.session, **credentials)

    def _end_message(self, frame: EndFrame | CancelFrame) -> WireOut:
        return f'{{"event":"stop","streamId":{self._sid}}}'


class VobizCarrier(PlivoCarrier):
    """Vobiz's HTTP side (see :class:`~flowcat.serializers.Carrier`)."""

    carrier = "vobiz"
    serializer = VobizFrameSerializer
    env_prefix = "VOBIZ"
    default_api_base = "https://api.vobiz.ai/api"

    def hang_up_request(self, call_id: str | None, info: CallInfo | None) -> HangUpRequest | None:
        auth_id, token = self._credentials()
        if not (auth_id and token and call_id):
            return None
        url = f"{self.api_base}/v1/Account/{auth_id}/Call/{call_id}/"
        return "DELETE", url, {"X-Auth-ID": auth_id, "X-Auth-Token": token}, None

    @classmethod
    def verify_request(cls, request: web.Request, body: bytes, **options: Any) -> bool:
        """Check ``X-Vobiz-Signature-V3`` (else ``-V2``) when an auth token is configured.

        Options: ``auth_token`` (default ``VOBIZ_AUTH_TOKEN``), ``public_url`` (the full
        URL as Vobiz called it; the server passes it). The strings signed are in
        :func:`~flowcat.serializers._signatures.vobiz_signatures` (partly unconfirmed).
        """
        token = env(options.get("auth_token"), "VOBIZ_AUTH_TOKEN")
        if not token:
            note_unchecked("vobiz", "VOBIZ_AUTH_TOKEN")
            return True
        params = (
            parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
            if request.method == "POST"
            else []
        )
        url = options.get("public_url") or str(request.url)
        return validate_vobiz(request.headers, request.method, url, params, token)
