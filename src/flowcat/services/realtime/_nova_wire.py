"""The wire of Amazon Nova Sonic: Bedrock's ``InvokeModelWithBidirectionalStream`` over HTTP/2.

* Request: ``POST /model/{modelId}/invoke-with-bidirectional-stream`` on
  ``bedrock-runtime.{region}.amazonaws.com`` over HTTP/2, ``Content-Type:
  application/vnd.amazon.eventstream``, SigV4-signed for service ``bedrock`` with the payload
  hash ``STREAMING-AWS4-HMAC-SHA256-EVENTS``
  (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModelWithBidirectionalStream.html).
  Bedrock API keys are not accepted for this operation: SigV4 only.
* Body: AWS event-stream messages (:mod:`flowcat.services._eventstream`). Each input event is
  a ``chunk`` message (``:message-type: event``, ``:event-type: chunk``, ``:content-type:
  application/json``) whose payload is ``{"bytes": "<base64 of the event's JSON>"}``
  (BidirectionalInputPayloadPart:
  https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_BidirectionalInputPayloadPart.html),
  wrapped in a signed envelope (``:chunk-signature``, ``:date``;
  :class:`flowcat.services._sigv4.EventSigner`). The input ends with a signed empty envelope
  and END_STREAM.
* Answer (HTTP 200): ``chunk`` events with ``{"bytes": "<base64 JSON>"}`` (BidirectionalOutputPayloadPart),
  or one ``:message-type: exception`` message (``:exception-type`` ``validationException``,
  ``modelStreamErrorException``, ``throttlingException``...; payload ``{"message": …}``) after
  which the answer ends
  (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModelWithBidirectionalStreamOutput.html).

:class:`NovaSocket` presents that stream to :class:`~flowcat.services.RealtimeLLMService` as
the subset of a client WebSocket the base uses (``send_str``, ``receive``, ``close``,
``closed``, ``close_code``): a text message sent is one input event; each chunk received is
a binary message holding the event's JSON (a chunk that does not decode is handed on as it
came, for the base to count as malformed); an exception, or the end of the answer, is a
``CLOSE`` message whose reason names it (the base reports it and reconnects).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from ...errors import (
    ServiceAuthError,
    ServiceError,
    ServiceProtocolError,
    ServiceRateLimitError,
    ServiceStatusError,
)
from .._eventstream import EventStreamDecoder, EventStreamMessage, encode_headers, frame_message
from .._http2 import H2Stream
from .._sigv4 import EventSigner

__all__ = ["EXCEPTION_STATUS", "NovaSocket", "decode_chunk", "input_chunk", "refusal"]

logger = logging.getLogger("flowcat.services.realtime.nova_sonic")

EVENTSTREAM = "application/vnd.amazon.eventstream"
_CHUNK_HEADERS = encode_headers(
    ((":message-type", "event"), (":event-type", "chunk"), (":content-type", "application/json"))
)

EXCEPTION_STATUS = {
    "validationException": 400,
    "accessDeniedException": 403,
    "resourceNotFoundException": 404,
    "modelTimeoutException": 408,
    "modelStreamErrorException": 424,
    "throttlingException": 429,
    "modelErrorException": 424,
    "modelNotReadyException": 429,
    "serviceQuotaExceededException": 400,
    "internalServerException": 500,
    "serviceUnavailableException": 503,
}
"""The HTTP status Bedrock documents for each exception (the ``close_code`` reported)."""


def input_chunk(event_json: bytes) -> bytes:
    """The (unsigned) ``chunk`` message carrying one input event's JSON."""
    payload = b'{"bytes":"' + base64.b64encode(event_json) + b'"}'
    return frame_message(_CHUNK_HEADERS, payload)


def decode_chunk(message: EventStreamMessage) -> tuple[str, Any]:
    """What one answer message is: ``("event", json bytes)``, ``("exception", (type, text))``
    or ``("bad", raw payload)``."""
    kind = message.headers.get(":message-type")
    if kind == "exception" or kind == "error":
        name = str(
            message.headers.get(":exception-type") or message.headers.get(":error-code") or "exception"
        )
        try:
            body = json.loads(message.payload)
            text = str(body.get("message") or body.get("Message") or "") if isinstance(body, dict) else ""
        except ValueError:
            text = message.payload[:200].decode("utf-8", "replace")
        return "exception", (name, text or str(message.headers.get(":error-message") or ""))
    if kind != "event" or message.headers.get(":event-type") != "chunk":
        return "bad", message.payload
    try:
        outer = json.loads(message.payload)
        return "event", base64.b64decode(outer["bytes"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        return "bad", message.payload


class NovaSocket:
    """One Nova Sonic session's stream, shaped like the client WebSocket the base drives.

    Args:
        stream: The open HTTP/2 request (answer status 200).
        signer: Signs each input message, chained from the request's signature.
    """

    def __init__(self, stream: H2Stream, signer: EventSigner) -> None:
        self.stream = stream
        self.signer = signer
        self.decoder = EventStreamDecoder()
        self.close_code: int | None = None
        self.farewell: list[str] = []
        """Input events sent by :meth:`close` before the end of the input (the session's end)."""
        self._pending: list[EventStreamMessage] = []
        self._lock = asyncio.Lock()  # one writer at a time: the signatures chain in wire order
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed or self.stream.ended

    async def send_str(self, data: str) -> None:
        """Send one input event (its JSON text)."""
        inner = input_chunk(data.encode("utf-8"))
        async with self._lock:
            if self.closed:
                raise ConnectionError("nova sonic: the stream is closed")
            await self.stream.send(self.signer.sign(inner))

    async def receive(self) -> aiohttp.WSMessage:
        """The next answer event (``BINARY``, its JSON), or ``CLOSE`` with the reason."""
        while not self._pending:
            data = await self.stream.receive()
            if data is None:
                self._closed = True
                await self.stream.close()
                if self.decoder.pending:
                    return _close(f"the answer ended inside a message ({self.decoder.pending} bytes held)")
                return _close(self.stream.error or "the answer ended")
            try:
                self._pending = self.decoder.feed(data)
            except ServiceProtocolError as exc:  # out of step: the stream cannot go on
                self._closed = True
                await self.stream.close()
                return _close(str(exc))
        message = self._pending.pop(0)
        what, value = decode_chunk(message)
        if what == "event":
            return aiohttp.WSMessage(aiohttp.WSMsgType.BINARY, value, None)
        if what == "exception":
            name, text = value
            self.close_code = EXCEPTION_STATUS.get(name, 500)
            self._closed = True
            await self.stream.close()
            return _close(f"{name}: {text}")
        return aiohttp.WSMessage(aiohttp.WSMsgType.BINARY, value, None)  # the base counts it

    async def close(self) -> bool:
        """End the session politely (:attr:`farewell`, the empty signed envelope, END_STREAM),
        then the connection; bounded."""
        if self._closed and self.stream.closed:
            return False
        try:
            async with asyncio.timeout(0.5), self._lock:
                if not self.stream.ended:
                    for text in self.farewell:
                        await self.stream.send(self.signer.sign(input_chunk(text.encode("utf-8"))))
                    await self.stream.send(self.signer.sign(b""))
                    await self.stream.end()
        except (TimeoutError, ConnectionError, OSError) as exc:
            logger.debug("nova sonic: the session did not end politely: %r", exc)
        self._closed = True
        await self.stream.close()
        return True


async def refusal(stream: H2Stream, what: str, redact: Callable[[str], str]) -> ServiceError:
    """The error for a request answered with an error status (its JSON ``message`` and
    ``x-amzn-errortype``); reads the body (bounded) and closes the stream."""
    body = b""
    try:
        async with asyncio.timeout(1.0):
            while len(body) < 65536 and (data := await stream.receive()) is not None:
                body += data
    except TimeoutError:
        pass
    await stream.close()
    message = body[:200].decode("utf-8", "replace")
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            message = str(parsed.get("message") or parsed.get("Message") or message)
    except ValueError:
        pass
    kind = stream.headers.get("x-amzn-errortype", "").split(":")[0]
    text = redact(f"{what}: refused: {kind + ': ' if kind else ''}{message}")
    if stream.status in (401, 403):
        return ServiceAuthError(text, stream.status)
    if stream.status == 429:
        return ServiceRateLimitError(text, stream.status)
    return ServiceStatusError(text, stream.status)


def _close(reason: str) -> aiohttp.WSMessage:
    return aiohttp.WSMessage(aiohttp.WSMsgType.CLOSE, None, reason)
