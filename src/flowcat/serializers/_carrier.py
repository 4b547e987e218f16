"""The HTTP side of a carrier: answer webhook, request authentication, busy refusal, REST hang-up and transfer.

A :class:`Carrier` is what the server consumes for one carrier; its serializer
(:attr:`Carrier.serializer`) speaks the media WebSocket's wire format only. Each
carrier module (``flowcat.serializers.<name>``) defines both. A carrier overrides
:meth:`~Carrier.answer_document` (the XML/JSON that connects a call to a media
stream), where it signs its requests :meth:`~Carrier.verify_request` and
:meth:`~Carrier.verify_websocket` (the media upgrade), and
:attr:`~Carrier.busy_document` where its answer language can refuse a call. A failed
check is refused with :attr:`~Carrier.auth_failure_status`.

An instance is the REST side of one call: it holds the credentials and API base and
builds the hang-up request (:meth:`~Carrier.hang_up_request`) from the call's ids,
which the serializer learned; the serializer's ``hang_up`` runs it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import aiohttp
    from aiohttp import web

    from ._base import FrameSerializer
    from ._call import CallInfo

HangUpRequest = tuple[str, str, dict[str, str], Any]
"""``(method, url, headers, body)``; ``body`` is None, ``("form", dict)`` or ``("json", obj)``."""

__all__ = ["Carrier"]

logger = logging.getLogger("flowcat.serializers")


class Carrier:
    """Answer webhook, request checks and busy refusal of one carrier (class methods)."""

    carrier: ClassVar[str] = "carrier"
    """The carrier's name (its module and route: ``/{carrier}/ws``)."""
    serializer: ClassVar[type[FrameSerializer]]
    """The serializer of the carrier's media stream."""
    answer_content_type: ClassVar[str] = "application/xml"
    auth_failure_status: ClassVar[int] = 403
    """HTTP status for a request whose check failed: 401 where the carrier
    authenticates with a key or token (Genesys, Vonage), 403 for request signatures."""
    busy_document: ClassVar[str | None] = None
    """The answer document that refuses a call when the server is full (answered with
    :attr:`answer_content_type`), or None where the carrier has none (503)."""
    default_api_base: ClassVar[str] = ""
    hang_up_ok_statuses: ClassVar[tuple[int, ...]] = ()
    """Statuses besides 2xx that mean the call is gone (Cloudonix: 404)."""
    rest_hang_up: ClassVar[bool] = True
    """Whether the carrier has a REST hang-up (False: the socket's close ends the call)."""
    rest_transfer: ClassVar[bool] = False
    """Whether the carrier can transfer a call over its REST API (:meth:`transfer_request`)."""

    def __init__(self, *, api_base: str | None = None, session: aiohttp.ClientSession | None = None) -> None:
        from ._rest import api_base_override

        self.api_base = (api_base or api_base_override(self.carrier) or self.default_api_base).rstrip("/")
        self.session = session

    def hang_up_request(self, call_id: str | None, info: CallInfo | None) -> HangUpRequest | None:
        """``(method, url, headers, body)`` of the REST hang-up of call ``call_id``
        (``info``: what the handshake learned), or None if unavailable (no id, no
        credentials, or no REST hang-up). Credentials are read when this is called
        (constructor arguments first, then the environment variables named in
        ``docs/carriers.md``)."""
        return None

    def transfer_request(self, call_id: str | None, info: CallInfo | None, target: str) -> HangUpRequest | None:
        """``(method, url, headers, body)`` of the REST request that hands call ``call_id`` to
        ``target`` (a number or SIP URI), or None if unavailable (no id, no credentials, or
        the carrier has no transfer: :attr:`rest_transfer`)."""
        return None

    async def transfer(
        self, call_id: str | None, info: CallInfo | None, target: str, session: aiohttp.ClientSession | None = None
    ) -> bool:
        """Send the transfer request; False (logged) on any failure, never raises."""
        from ._rest import send_transfer

        return await send_transfer(self, call_id, info, target, session or self.session)

    async def hang_up(
        self, call_id: str | None, info: CallInfo | None, session: aiohttp.ClientSession | None = None
    ) -> bool:
        """Send the hang-up request; False (logged) on any failure, never raises."""
        from ._rest import send_hang_up

        return await send_hang_up(self, call_id, info, session or self.session)

    @classmethod
    async def answer(cls, request: web.Request, stream_url: str, **options: Any) -> web.Response:
        """Answer the voice webhook with a document connecting the call to ``stream_url``.

        The signature is checked where the carrier signs and credentials are set
        (refused with :attr:`auth_failure_status` if bad).
        """
        from aiohttp import web

        body = await request.read()
        if not cls.verify_request(request, body, **options):
            logger.warning("%s: answer webhook signature check failed for %s", cls.carrier, request.path)
            return web.Response(status=cls.auth_failure_status, text="invalid signature")
        doc = cls.answer_document(stream_url, request=request, **options)
        return web.Response(text=doc, content_type=cls.answer_content_type)

    @classmethod
    def answer_document(cls, stream_url: str, **options: Any) -> str:
        """The answer document (XML/JSON text) that connects the call to ``stream_url``."""
        raise NotImplementedError

    @classmethod
    def busy_refusal(cls) -> tuple[str, str] | None:
        """``(document, content type)`` refusing a call when the server is full, or None."""
        doc = cls.busy_document
        return None if doc is None else (doc, cls.answer_content_type)

    @classmethod
    def verify_request(cls, request: web.Request, body: bytes, **options: Any) -> bool:
        """Whether a webhook request (answer or event) is authentic (True where none is checked)."""
        return True

    @classmethod
    def verify_websocket(cls, request: Any, *, public_url: str | None = None) -> bool:
        """Whether the media WebSocket upgrade is authentic (True where none is checked).

        ``request`` is aiohttp's, or the picows engine's with the same ``url``,
        ``headers``, ``path`` and ``query``; ``public_url`` the URL the carrier called
        (from ``--public-url`` or trusted forwarded headers), where it signs the URL.
        """
        return True
