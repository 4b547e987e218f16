"""The REST side of a call: the hang-up request and credential helpers."""

from __future__ import annotations

import base64
import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp

    from ._call import CallInfo
    from ._carrier import Carrier

__all__ = ["basic_auth", "env", "send_hang_up"]

logger = logging.getLogger("flowcat.serializers")

HANG_UP_TIMEOUT_S = 5.0
"""Budget (s) for one hang-up request; a slow carrier API must not hold up the call's end."""


def env(value: str | None, name: str) -> str | None:
    """``value`` if given, else the environment variable ``name`` (None if unset or empty)."""
    return value or os.environ.get(name) or None


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
            ok = 200 <= resp.status < 300 or resp.status in ser.hang_up_ok_statuses
            if ok:
                logger.debug("%s: hung up call %s (%d)", ser.carrier, call_id, resp.status)
            else:
                text = await resp.text()
                logger.warning(
                    "%s: hang-up of call %s refused: %d %s", ser.carrier, call_id, resp.status, text[:200]
                )
            return ok
    except Exception as exc:
        logger.warning("%s: hang-up of call %s failed: %r", ser.carrier, call_id, exc)
        return False
    finally:
        if own:
            await sess.close()
