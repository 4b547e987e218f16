"""The URL a carrier addressed: for request signatures and stream URLs behind TLS or a proxy.

Carriers that sign a URL (Twilio, Plivo, Genesys's ``@authority``/``@request-target``)
sign the URL *they* called, e.g. ``https://bot.example.com/twilio/answer``; behind a
TLS-terminating proxy the server sees ``http://10.0.0.7:8765/twilio/answer``. The
public origin of a request (``scheme://host[:port][/prefix]``, ``http``/``https``) is,
in order:

1. the configured public URL (``--public-url`` / ``FLOWCAT_PUBLIC_URL``; a
   ``ws``/``wss`` one is read as ``http``/``https``);
2. with ``trusted_proxies`` = *n* > 0 (``--trust-proxy [N]``, off by default), the
   ``X-Forwarded-Proto``, ``X-Forwarded-Host`` and ``X-Forwarded-Port`` headers, each
   taken *n*-th from the right (the value the *n*-th proxy in front of us set; a value
   the client sent itself stays to the left and is ignored), as Werkzeug's ``ProxyFix``
   does; a header with fewer than *n* values is ignored;
3. the request's own scheme and ``Host`` header.

The signed URL is that origin followed by the request target exactly as received
(path and query, percent-encoding untouched). ``Forwarded`` (RFC 7239) is not read.
Forwarded headers can be set by anyone who reaches the server directly, so trust them
only when every request comes through the proxy (see ``docs/carriers.md``).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["configured_public_url", "forwarded_origin", "request_origin", "signed_url"]

_HTTP = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_DEFAULT_PORT = {"http": "80", "https": "443"}


def configured_public_url(public_url: str | None) -> str | None:
    """The public base URL (``public_url``, else ``FLOWCAT_PUBLIC_URL``) with an ``http(s)``
    scheme and no trailing slash; None when neither is set."""
    base = public_url or os.environ.get("FLOWCAT_PUBLIC_URL")
    if not base:
        return None
    scheme, sep, rest = base.partition("://")
    if sep and scheme.lower() in _HTTP:
        base = _HTTP[scheme.lower()] + "://" + rest
    return base.rstrip("/")


def _header_values(headers: Any, name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    lines = getall(name, []) if getall is not None else [v for v in [headers.get(name)] if v is not None]
    return [v.strip() for line in lines for v in str(line).split(",")]


def _forwarded(headers: Any, name: str, trusted: int) -> str | None:
    values = _header_values(headers, name)
    if len(values) < trusted:
        return None
    value = values[-trusted]
    return value or None


def _split_port(host: str) -> tuple[str, str | None]:
    if host.startswith("["):
        name, sep, rest = host.partition("]")
        return name + sep, rest[1:] if rest.startswith(":") else None
    name, sep, port = host.rpartition(":")
    return (name, port) if sep and ":" not in name else (host, None)


def forwarded_origin(headers: Any, trusted: int, *, scheme: str, host: str) -> str | None:
    """The origin the trusted forwarded headers describe, None if they say nothing.

    ``scheme`` and ``host`` are the request's own, used for what the headers leave out.
    A forwarded port that is the scheme's default is left out of the origin.
    """
    if trusted <= 0:
        return None
    proto = _forwarded(headers, "x-forwarded-proto", trusted)
    fhost = _forwarded(headers, "x-forwarded-host", trusted)
    fport = _forwarded(headers, "x-forwarded-port", trusted)
    if proto is None and fhost is None and fport is None:
        return None
    if proto is not None:
        scheme = _HTTP.get(proto.lower(), scheme)
    if fhost is not None:
        host = fhost
    if fport is not None and fport.isdigit():
        name, _ = _split_port(host)
        host = name if fport == _DEFAULT_PORT.get(scheme) else f"{name}:{fport}"
    return f"{scheme}://{host}"


def request_origin(request: Any, *, public_url: str | None, trusted_proxies: int) -> str:
    """The public origin of ``request`` (see the module docstring), ``http``/``https``.

    ``request`` is aiohttp's request or the picows engine's upgrade request
    (``url``, ``headers``).
    """
    configured = configured_public_url(public_url)
    if configured:
        return configured
    url = request.url
    scheme = _HTTP.get(url.scheme, url.scheme)
    host = request.headers.get("Host") or url.raw_authority or "localhost"
    return (
        forwarded_origin(request.headers, trusted_proxies, scheme=scheme, host=host) or f"{scheme}://{host}"
    )


def signed_url(request: Any, *, public_url: str | None, trusted_proxies: int) -> str:
    """The full URL the carrier called: the public origin plus the target as received."""
    target = getattr(request, "raw_path", None) or request.url.raw_path_qs
    return request_origin(request, public_url=public_url, trusted_proxies=trusted_proxies) + target
