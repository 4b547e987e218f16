"""Per-carrier adapters over :mod:`flowcat.serializers`.

An adapter finds the carrier's :class:`~flowcat.serializers.Carrier` subclass
(module ``flowcat.serializers.<name>``, class attribute ``carrier``), and gives the
server five things: the WebSocket handshake (feed messages to the carrier's
serializer's ``handshake`` until the call is known), the answer webhook (the
carrier's ``answer``), the event webhook (checked, logged, answered 204),
signature checks (``verify_request`` / ``verify_websocket``, refused with the
carrier's ``auth_failure_status``: 401 or 403) and the carrier's busy refusal
when the worker is full.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._carriers import CarrierError, Opened
from ._session import CallSocket

if TYPE_CHECKING:
    from ..serializers._carrier import Carrier

__all__ = ["CarrierAdapter", "available", "build"]

logger = logging.getLogger("flowcat.server")

KNOWN = ("twilio", "telnyx", "plivo", "vobiz", "exotel", "vonage", "genesys", "asterisk", "cloudonix")

_HANDSHAKE_LIMIT = 16  # messages read before giving up on a start message


def _carrier_class(name: str) -> type[Carrier] | None:
    from ..serializers._carrier import Carrier

    try:
        module = importlib.import_module(f"flowcat.serializers.{name}")
    except ImportError:
        return None
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, Carrier) and obj.carrier == name:
            return obj
    return None


class CarrierAdapter:
    """Server-side handling of one carrier."""

    def __init__(self, name: str, cls: type[Carrier], *, auto_hang_up: bool = True) -> None:
        self.name = name
        self.cls = cls
        self.auto_hang_up = auto_hang_up

    def verify(
        self, request: Any, body: bytes, *, websocket: bool = False, public_url: str | None = None
    ) -> bool:
        """The carrier's signature check (True where the carrier signs nothing or no secret is set).

        ``request`` is the aiohttp request, or for the WebSocket upgrade any object
        with the same ``url``, ``headers``, ``path`` and ``query`` (the picows engine's).
        ``public_url`` is the full URL the carrier called (``http(s)``, see
        :mod:`._public_url`); carriers that sign a URL check against it.
        """
        try:
            if websocket:
                return bool(self.cls.verify_websocket(request, public_url=public_url))
            return bool(self.cls.verify_request(request, body, public_url=public_url))
        except Exception:
            logger.warning("%s: signature check failed with an error", self.name, exc_info=True)
            return False

    @property
    def refusal_status(self) -> int:
        """HTTP status when a signature check fails (401 or 403, per carrier)."""
        return self.cls.auth_failure_status

    def refusal(self, what: str) -> web.HTTPException:
        """The exception that refuses a request whose check failed (``what``: the body text)."""
        if self.refusal_status == 401:
            return web.HTTPUnauthorized(text=what)
        return web.HTTPForbidden(text=what)

    def event(self, request: web.Request, body: bytes) -> web.Response:
        """An accepted event/status callback: logged (debug) and answered 204."""
        logger.debug("%s: event webhook %s (%d bytes): %r", self.name, request.path, len(body), body[:200])
        return web.Response(status=204)

    def reject(self, request: web.Request) -> web.Response | None:
        """A refusal document where the carrier has one (else None: the server answers 503)."""
        doc = self.cls.busy_refusal()
        if doc is None:
            return None
        return web.Response(text=doc[0], content_type=doc[1])

    async def answer(self, request: web.Request, body: bytes, stream_url: str) -> web.StreamResponse:
        """The answer document connecting the call to ``stream_url``.

        The server has checked the request already (against the public URL, or not at
        all with ``--no-verify``), so the serializer's own check in ``answer`` is skipped.
        """
        try:
            doc = self.cls.answer_document(stream_url, request=request)
        except NotImplementedError:
            raise web.HTTPNotFound(text=f"{self.name} has no answer webhook") from None
        return web.Response(text=doc, content_type=self.cls.answer_content_type)

    async def open(self, sock: CallSocket, request: Any) -> Opened | None:
        """Read the carrier's handshake and return the call's serializer (None if the socket closed).

        ``sock`` is the call's :class:`~flowcat.server._session.CallSocket` (any engine);
        ``request`` the upgrade request (handed to ``serializer.on_upgrade``; ``remote``,
        ``path`` and ``query`` are used). None too when the carrier ended the session
        before it started (the serializer refused it, e.g. Genesys's ``disconnect``
        answered by ``close``/``closed``); the server then closes the socket.
        """
        ser = self.cls.serializer(auto_hang_up=self.auto_hang_up)
        ser.on_upgrade(request)
        send = sock.send
        ser.sender = send
        for _ in range(_HANDSHAKE_LIMIT):
            data = await sock.receive()
            if data is None:
                return None
            info = await ser.handshake(data)
            for reply in ser.take_replies():
                await send(reply)
            if info is None and ser.remote_ended:
                logger.info("%s: session on %s ended during the handshake", self.name, request.path)
                return None
            if info is not None:
                info.remote, info.path, info.query = request.remote, request.path, dict(request.query)
                return Opened(ser, info)
        raise CarrierError(f"no start message in the first {_HANDSHAKE_LIMIT} messages")


def available() -> list[str]:
    """Carriers whose module is importable."""
    return [n for n in KNOWN if _carrier_class(n) is not None]


def build(name: str) -> CarrierAdapter | None:
    """The adapter for ``name``, or None if unknown or its serializer is missing."""
    if name not in KNOWN:
        return None
    cls = _carrier_class(name)
    return None if cls is None else CarrierAdapter(name, cls)
