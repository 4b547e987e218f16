"""SIP messages (RFC 3261 §7): parsing one datagram and writing one back.

:func:`parse_message` is strict about structure and lenient about spelling:

* header names are case-insensitive and the compact forms (``v``, ``f``, ``t``,
  ``i``, ``m``, ``l``, ``c``, ``k``, ``s``, …) are expanded to their full names;
* a line that starts with a space or tab continues the previous header (folding);
* CRLF or bare LF line ends, and leading CRLFs (keep-alives) are accepted;
* a header line with several comma-separated values (``Via``, ``Route``, …) and
  several lines of the same header are one list (:meth:`SIPMessage.get_all`);
* ``Content-Length`` larger than the body is an error (a truncated datagram);
  bytes after it are dropped (RFC 3261 §18.3);
* the datagram, the number of headers and each line have size limits.

Anything else wrong — no start line, a bad status code or version, a header without
a colon, a missing mandatory header (Via, From, To, Call-ID, CSeq), a bad CSeq —
raises :class:`~flowcat.errors.SIPParseError` and never another exception: the
caller logs it (rate-limited) and drops the datagram.
"""

from __future__ import annotations

import re

from ...errors import SIPParseError

__all__ = ["MAX_MESSAGE_BYTES", "SIPMessage", "parse_message", "split_commas"]

MAX_MESSAGE_BYTES = 65507
"""Largest datagram parsed (the largest UDP payload over IPv4)."""
_MAX_HEADERS = 128
_MAX_LINE = 8192

COMPACT = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}
_CANONICAL = {
    name.lower(): name
    for name in (
        *COMPACT.values(),
        "Accept",
        "Allow",
        "Authorization",
        "Call-Info",
        "CSeq",
        "Max-Forwards",
        "Min-Expires",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Record-Route",
        "Require",
        "Retry-After",
        "Route",
        "Server",
        "Unsupported",
        "User-Agent",
        "Warning",
        "WWW-Authenticate",
        "Expires",
        "Reason",
    )
}
_MULTI = frozenset(("via", "route", "record-route", "contact", "allow", "supported", "require"))
_MANDATORY = ("via", "from", "to", "call-id", "cseq")
_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_STATUS = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9])(?: (.*))?$", re.IGNORECASE)
_REQUEST = re.compile(r"^([A-Za-z0-9\-.!%*_+`'~]+) (\S+) SIP/2\.0$", re.IGNORECASE)


def canonical(name: str) -> str:
    """The full, conventionally spelled header name for ``name`` (compact forms expanded)."""
    low = name.lower()
    if len(low) == 1 and low in COMPACT:
        return COMPACT[low]
    return _CANONICAL.get(low, name)


def split_commas(value: str) -> list[str]:
    """Split a header value at top-level commas (not inside quotes or ``<...>``)."""
    if "," not in value:
        return [value.strip()] if value.strip() else []
    out: list[str] = []
    start = 0
    quoted = False
    angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == "," and not angle:
            part = value[start:i].strip()
            if part:
                out.append(part)
            start = i + 1
        i += 1
    part = value[start:].strip()
    if part:
        out.append(part)
    return out


class SIPMessage:
    """One SIP request (``method`` and ``uri`` set) or response (``status`` and ``reason`` set).

    Headers keep their order; names are stored in canonical spelling and looked up
    case-insensitively (compact forms too).
    """

    __slots__ = ("body", "headers", "method", "reason", "status", "uri")

    def __init__(
        self,
        *,
        method: str | None = None,
        uri: str | None = None,
        status: int | None = None,
        reason: str = "",
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        self.method = method
        self.uri = uri
        self.status = status
        self.reason = reason
        self.headers: list[tuple[str, str]] = headers if headers is not None else []
        self.body = body

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str) -> str | None:
        """The first value of header ``name`` (first list element for list headers), or None."""
        values = self.get_all(name)
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name``, in order (comma lists split for list headers)."""
        key = canonical(name).lower()
        out: list[str] = []
        for hname, value in self.headers:
            if hname.lower() == key:
                if key in _MULTI:
                    out.extend(split_commas(value))
                else:
                    out.append(value)
        return out

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` header by one with ``value`` (appended if absent)."""
        self.remove(name)
        self.headers.append((canonical(name), value))

    def add(self, name: str, value: str) -> None:
        self.headers.append((canonical(name), value))

    def remove(self, name: str) -> None:
        key = canonical(name).lower()
        self.headers = [(h, v) for h, v in self.headers if h.lower() != key]

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """(sequence number, method) of the CSeq header (validated by the parser)."""
        return parse_cseq(self.get("CSeq") or "")

    def encode(self) -> bytes:
        """The message as bytes; ``Content-Length`` is (re)written from the body."""
        if self.method is not None:
            lines = [f"{self.method} {self.uri} SIP/2.0"]
        else:
            lines = [f"SIP/2.0 {self.status} {self.reason}"]
        for name, value in self.headers:
            if name != "Content-Length":
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    def __repr__(self) -> str:
        first = f"{self.method} {self.uri}" if self.method else f"{self.status} {self.reason}"
        return f"<SIPMessage {first} Call-ID={self.call_id!r}>"


def parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 10 or not _TOKEN.match(parts[1]):
        raise SIPParseError(f"bad CSeq {value[:60]!r}", value)
    n = int(parts[0])
    if n >= 2**31:
        raise SIPParseError(f"CSeq number out of range: {n}", value)
    return n, parts[1].upper()


def parse_message(data: bytes, max_size: int = MAX_MESSAGE_BYTES) -> SIPMessage:
    """Parse one SIP message (one UDP datagram). Raises :class:`SIPParseError` if malformed."""
    if len(data) > max_size:
        raise SIPParseError(f"message of {len(data)} bytes exceeds the limit of {max_size}", data[:64])
    data = data.lstrip(b"\r\n")
    if not data:
        raise SIPParseError("empty message", data)
    sep = data.find(b"\r\n\r\n")
    if sep >= 0:
        head, body = data[:sep], data[sep + 4 :]
    else:
        sep = data.find(b"\n\n")
        if sep < 0:
            raise SIPParseError("no empty line after the headers", data[:64])
        head, body = data[:sep], data[sep + 2 :]
    text = head.decode("utf-8", errors="replace")
    lines = text.replace("\r\n", "\n").split("\n")
    msg = _start_line(lines[0].rstrip("\r"))
    headers: list[tuple[str, str]] = []
    for raw in lines[1:]:
        line = raw.rstrip("\r")
        if len(line) > _MAX_LINE:
            raise SIPParseError(f"header line longer than {_MAX_LINE} characters", line[:64])
        if line[:1] in (" ", "\t"):
            if not headers:
                raise SIPParseError("continuation line before any header", line[:64])
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        if not line:
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or not _TOKEN.match(name):
            raise SIPParseError(f"bad header line {line[:60]!r}", line)
        if len(headers) >= _MAX_HEADERS:
            raise SIPParseError(f"more than {_MAX_HEADERS} headers", data[:64])
        headers.append((canonical(name), value.strip()))
    msg.headers = headers
    present = {h.lower() for h, _ in headers}
    for need in _MANDATORY:
        if need not in present:
            raise SIPParseError(f"missing mandatory header {canonical(need)}", data[:64])
    cseq_n, cseq_method = msg.cseq  # validates
    if msg.method is not None and msg.method != cseq_method and msg.method != "ACK":
        raise SIPParseError(f"CSeq method {cseq_method} does not match {msg.method}", data[:64])
    if not msg.get("Via"):
        raise SIPParseError("empty Via", data[:64])
    length = msg.get("Content-Length")
    if length is not None:
        length = length.strip()
        if not length.isdigit() or len(length) > 7:
            raise SIPParseError(f"bad Content-Length {length[:20]!r}", length)
        n = int(length)
        if n > len(body):
            raise SIPParseError(f"Content-Length {n} but only {len(body)} body bytes (truncated)", data[:64])
        body = body[:n]
    msg.body = bytes(body)
    return msg


def _start_line(line: str) -> SIPMessage:
    if len(line) > _MAX_LINE:
        raise SIPParseError("start line too long", line[:64])
    if line[:4].upper() == "SIP/":
        m = _STATUS.match(line)
        if m is None:
            raise SIPParseError(f"bad status line {line[:60]!r}", line)
        return SIPMessage(status=int(m.group(1)), reason=(m.group(2) or "").strip())
    m = _REQUEST.match(line)
    if m is None:
        raise SIPParseError(f"bad request line {line[:60]!r}", line)
    uri = m.group(2)
    if ":" not in uri:
        raise SIPParseError(f"bad Request-URI {uri[:60]!r}", line)
    return SIPMessage(method=m.group(1).upper(), uri=uri)
