"""The REST side of a call: the hang-up and transfer requests, and credential helpers."""

from __future__ import annotations

import base64
import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp

    from ._call import CallInfo
    from ._carrier import Carrier, HangUpRequest

__all__ = ["api_base_override", "basic_auth", "env", "send_hang_up", "send_transfer"]

logger = logging.getLogger("flowcat.serializers")

HANG_UP_TIMEOUT_S = 5.0
"""Budget (s) for one hang-up or transfer request; a slow carrier API must not hold up the call."""


def env(value: str | None, name: str) -> str | None:
    """``value`` if given, else the environment variable ``name`` (None if unset or empty)."""
    return value or os.environ.get(name) or None


def api_base_override(carrier: str) -> str | None:
    """``FLOWCAT_<CARRIER>_API_BASE``: the carrier's REST base URL set by the operator (a
    regional proxy; tests point it at a local fake), or None."""
    return os.environ.get(f"FLOWCAT_{carrier.upper()}_API_BASE") or None


def basic_auth(user: str, password: str) -> str:
    """An HTTP Basic ``Authorization`` header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


async def send_hang_up(
    ser: Carrier, call_id: str | None, info: CallInfo | None, session: aiohttp.ClientSession | None
) -> bool:
    """Send the carrier's hang-up request; log and return False on any failure (never raise)."""
    try:
        req = ser.hang_up_request(call_id, info)
    except Exception as exc:
        logger.warning("%s: cannot build hang-up request: %s", ser.carrier, exc)
        return False
    if req is None:
        logger.info("%s: no REST hang-up for call %s (missing id or credentials)", ser.carrier, call_id)
        return False
    return await _send(ser, "hang-up", req, call_id, session, ser.hang_up_ok_statuses)


async def send_transfer(
    ser: Carrier, call_id: str | None, info: CallInfo | None, target: str, session: aiohttp.ClientSession | None
) -> bool:
    """Send the carrier's transfer request; log and return False on any failure (never raise)."""
    try:
        req = ser.transfer_request(call_id, info, target)
    except Exception as exc:
        logger.warning("%s: cannot build the transfer request: %s", ser.carrier, exc)
        return False
    if req is None:
        logger.warning("%s: no REST transfer for call %s (missing id or credentials)", ser.carrier, call_id)
        return False
    return await _send(ser, "transfer", req, call_id, session, ())


async def _send(
    ser: Carrier, what: str, req: HangUpRequest, call_id: str | None, session: aiohttp.ClientSession | None,
    ok_statuses: tuple[int, ...],
) -> bool:
    import aiohttp

    method, url, headers, body = req
    kwargs: dict[str, object] = {"headers": headers}
    if body is not None:
        kind, payload = body
        kwargs["data" if kind == "form" else "json"] = payload
    own = session is None
    sess = session if session is not None else aiohttp.ClientSession()
    try:
        timeout = aiohttp.ClientTimeout(total=HANG_UP_TIMEOUT_S)
        async with sess.request(method, url, timeout=timeout, **kwargs) as resp:  # type: ignore[arg-type]
            ok = 200 <= resp.status < 300 or resp.status in ok_statuses
            if ok:
                logger.debug("%s: %s of call %s done (%d)", ser.carrier, what, call_id, resp.status)
            else:
                text = await resp.text()
                logger.warning(
                    "%s: %s of call %s refused: %d %s", ser.carrier, what, call_id, resp.status, text[:200]
                )
            return ok
    except Exception as exc:
        logger.warning("%s: %s of call %s failed: %r", ser.carrier, what, call_id, exc)
        return False
    finally:
        if own:
            await sess.close()
