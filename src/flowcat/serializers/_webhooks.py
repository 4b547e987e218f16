"""The HTTP side of a carrier: answer webhook, request authentication, REST hang-up request.

:class:`CarrierWebhooks` is mixed into :class:`~flowcat.serializers.FrameSerializer`;
a carrier overrides :meth:`~CarrierWebhooks.answer_document` (the XML/JSON that
connects a call to a media stream), where it signs its requests
:meth:`~CarrierWebhooks.verify_request` (and ``verify_websocket`` for the media
upgrade), and :meth:`~CarrierWebhooks.hang_up_request` where it has a REST hang-up.
A failed check is refused with :attr:`~CarrierWebhooks.auth_failure_status`. Once an
upgrade is accepted, the server hands it to the call's serializer
(:meth:`~CarrierWebhooks.on_upgrade`) before the first message.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["CarrierWebhooks"]

logger = logging.getLogger("flowcat.serializers")


class CarrierWebhooks:
    """Answer webhook, request checks and the REST hang-up request of one carrier."""

    carrier: ClassVar[str] = "carrier"
    answer_content_type: ClassVar[str] = "application/xml"
    auth_failure_status: ClassVar[int] = 403
    """HTTP status for a request whose check failed: 401 where the carrier
    authenticates with a key or token (Genesys, Vonage), 403 for request signatures."""

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
    def verify_request(cls, request: web.Request, body: bytes, **options: Any) -> bool:
        """Whether a webhook request (answer or event) is authentic (True where none is checked)."""
        return True

    def on_upgrade(self, request: Any) -> None:
        """Learn what the accepted media upgrade carried, before the first message.

        Args:
            request: The upgrade request (aiohttp's, or the picows engine's with the
                same ``headers``, ``path`` and ``query``). The default ignores it;
                Genesys keeps ``Audiohook-Organization-Id`` to compare with ``open``.
        """

    def hang_up_request(self) -> tuple[str, str, dict[str, str], Any] | None:
        """``(method, url, headers, body)`` of the REST hang-up, or None if unavailable.

        ``body`` is None, ``("form", dict)`` (URL-encoded form) or ``("json", obj)``.
        Credentials are read when this is called (constructor arguments first, then the
        environment variables named in ``docs/carriers.md``).
        """
        return None
