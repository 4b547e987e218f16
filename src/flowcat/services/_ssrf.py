"""SSRF guard for outbound URLs taken from configuration (brain services, MCP servers).

A URL in a config file or a tenant's settings is not trusted to point at the public
internet: ``http://169.254.169.254/`` (cloud metadata), ``http://localhost:6379/`` or a
name whose DNS answer is ``10.0.0.5`` would let whoever writes the config make the
server reach its own private network. :class:`OutboundGuard` refuses those addresses:

* private (RFC 1918, ``fc00::/7`` unique local), loopback, link-local (``169.254/16``
  with the metadata address, ``fe80::/10``), CGNAT ``100.64/10``, multicast,
  unspecified (``0.0.0.0``, ``::``) and every other non-global range (documentation,
  benchmarking, reserved); IPv4-mapped and NAT64 IPv6 addresses are judged by the IPv4
  address inside;
* a host name is refused when **any** of its DNS answers is refused (a mixed answer
  would let the connector fall back to the private one);
* unless the client allows it: ``allow_private=True`` (anything), or a list of networks
  (``["10.1.2.0/24", "127.0.0.1"]``) allowed on top of the public internet.

**Pinning.** The check happens where the address is used, not before: the guarded
aiohttp session's resolver and the guarded httpx transport's network backend resolve
the host, vet every answer and hand the connector only vetted addresses, once per new
connection. There is no second lookup between "checked" and "connected", so a DNS
answer that changes (rebinding: public for the check, private for the connection)
cannot move the connection. aiohttp does not call its resolver for an IP literal, so
the guarded session's middleware checks literal hosts on every request and redirect hop
(and :meth:`OutboundGuard.check_url` checks a configured URL when the client is made).

A refusal raises :class:`~flowcat.errors.OutboundAddressError` (not retryable),
naming the host, the address and the range; never the URL's query or credentials.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, OutboundAddressError

__all__ = ["AllowPrivate", "OutboundGuard", "address_refusal", "outbound_guard"]

Resolve = Callable[[str, int], Awaitable[Sequence[str]]]
"""``await resolve(host, port)`` -> the host's IP addresses (strings)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_ULA = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_SCHEMES = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _embedded_v4(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def address_refusal(address: str | IPAddress) -> str | None:
    """Why the guard refuses ``address`` (``"loopback"``, ``"private"`` ...), or None if it is public."""
    ip = _embedded_v4(ipaddress.ip_address(address) if isinstance(address, str) else address)
    if ip in _METADATA:
        return "link-local (cloud metadata)"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip in _CGNAT:
        return "CGNAT (100.64.0.0/10)"
    if ip in _ULA:
        return "unique local (fc00::/7)"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "not globally routable"
    return None


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


async def _system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class OutboundGuard:
    """Vets the addresses an outbound client connects to (see the module docstring).

    Args:
        allow_private: ``True`` allows every address (no guard); a list of networks or
            addresses allows those on top of the public internet; ``False`` (default)
            allows only public addresses.
        resolve: The DNS lookup (default: the event loop's ``getaddrinfo``); tests pass
            a fake one.

    Raises:
        ConfigError: An entry of ``allow_private`` is not a network or an address.
    """

    __slots__ = ("allow_all", "key", "networks", "refused", "resolver")

    def __init__(self, allow_private: bool | Iterable[str] = False, *, resolve: Resolve | None = None) -> None:
        self.allow_all = allow_private is True
        nets: list[IPNetwork] = []
        if not isinstance(allow_private, bool):
            if isinstance(allow_private, str):
                allow_private = [allow_private]
            for entry in allow_private:
                try:
                    nets.append(ipaddress.ip_network(str(entry), strict=False))
                except ValueError:
                    raise ConfigError(f"allow_private: {entry!r} is not an IP network or address") from None
        self.networks: tuple[IPNetwork, ...] = tuple(nets)
        self.resolver: Resolve = resolve or _system_resolve
        self.key = (self.allow_all, self.networks, self.resolver)
        """Guards with equal keys may share a connection pool."""
        self.refused = 0
        """Connections refused so far."""

    def _allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.networks)

    def check_ip(self, address: str, host: str) -> None:
        """Raise :class:`~flowcat.errors.OutboundAddressError` if ``address`` (an answer for ``host``) is refused."""
        if self.allow_all:
            return
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        why = address_refusal(ip)
        if why is not None and not self._allowed(ip) and not self._allowed(_embedded_v4(ip)):
            self.refused += 1
            raise OutboundAddressError(
                f"outbound connection to {host!r} refused: {address} is {why} "
                "(allow it with allow_private=True or a list of allowed networks)"
            )

    def check_url(self, url: str) -> None:
        """Check ``url``'s scheme and, when its host is an IP literal, the address.

        Raises:
            ConfigError: Not an http(s)/ws(s) URL with a host.
            OutboundAddressError: The literal address is refused.
        """
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            raise ConfigError("outbound URL is malformed") from None
        if parts.scheme.lower() not in _SCHEMES or not host:
            raise ConfigError(f"outbound URL must be http(s):// or ws(s):// with a host, not {parts.scheme!r}://")
        literal = _ip_literal(host)
        if literal is not None:
            self.check_ip(str(literal), host)

    async def resolve(self, host: str, port: int) -> list[str]:
        """The host's addresses, every one vetted (a literal is checked, not looked up).

        Raises:
            OutboundAddressError: Any answer is refused, or there is none.
        """
        literal = _ip_literal(host)
        if literal is not None:
            self.check_ip(str(literal), host)
            return [str(literal)]
        answers = list(await self.resolver(host, port))
        if not answers:
            raise OutboundAddressError(f"outbound connection to {host!r} refused: no address")
        for address in answers:
            self.check_ip(address, host)
        return answers

    # ------------------------------------------------------------ adapters

    def aiohttp_resolver(self) -> Any:
        """An ``aiohttp`` resolver that returns only vetted addresses."""
        from aiohttp.abc import AbstractResolver, ResolveResult

        guard = self

        class _GuardedResolver(AbstractResolver):
            async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
                out: list[ResolveResult] = []
                for address in await guard.resolve(host, port):
                    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
                    if family in (socket.AF_UNSPEC, fam):
                        out.append(ResolveResult(hostname=host, host=address, port=port, family=fam,
                                                 proto=0, flags=socket.AI_NUMERICHOST))
                if not out:
                    raise OSError(f"no address of family {family} for {host!r}")
                return out

            async def close(self) -> None:
                return None

        return _GuardedResolver()

    def aiohttp_middleware(self) -> Any:
        """An ``aiohttp`` client middleware that checks IP-literal hosts on every request
        and redirect hop (aiohttp does not call the resolver for those)."""
        guard = self

        async def vet_literal(request: Any, handler: Any) -> Any:
            host = request.url.raw_host or ""
            if _ip_literal(host) is not None:
                guard.check_ip(str(_ip_literal(host)), host)
            return await handler(request)

        return vet_literal

    def httpx_transport(self) -> Any:
        """An ``httpx2`` transport whose connections go only to vetted addresses.

        Raises:
            ConfigError: The installed httpx2 cannot be pinned (its pool changed shape).
        """
        import httpcore2
        import httpx2
        from httpcore2._backends.auto import AutoBackend

        guard = self

        class _GuardedBackend(httpcore2.AsyncNetworkBackend):
            def __init__(self) -> None:
                self._inner = AutoBackend()

            async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                                  local_address: str | None = None, socket_options: Any = None) -> Any:
                last: Exception | None = None
                for address in await guard.resolve(host, port):
                    try:
                        return await self._inner.connect_tcp(address, port, timeout=timeout,
                                                             local_address=local_address,
                                                             socket_options=socket_options)
                    except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                        last = exc
                raise last or OutboundAddressError(f"outbound connection to {host!r}: no address")

            async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                          socket_options: Any = None) -> Any:
                raise OutboundAddressError("outbound connection to a unix socket refused")

            async def sleep(self, seconds: float) -> None:
                await self._inner.sleep(seconds)

        transport = httpx2.AsyncHTTPTransport(trust_env=False)
        pool = getattr(transport, "_pool", None)
        if not isinstance(pool, httpcore2.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
            raise ConfigError("the installed httpx2 cannot pin outbound addresses")
        pool._network_backend = _GuardedBackend()
        return transport


AllowPrivate = bool | Sequence[str] | OutboundGuard
"""What the clients' ``allow_private`` takes: a flag, allowed networks, or a guard."""


def outbound_guard(allow_private: AllowPrivate) -> OutboundGuard:
    """The guard for a client's ``allow_private`` argument."""
    if isinstance(allow_private, OutboundGuard):
        return allow_private
    return OutboundGuard(allow_private)
