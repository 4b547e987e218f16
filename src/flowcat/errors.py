"""The flowcat error hierarchy, classified by how a caller should handle it.

::

    FlowcatError
    ├── ConfigError                 bad configuration (file, parameter, environment); a ValueError
    ├── MissingExtraError           an optional extra is not installed (also an ImportError)
    ├── PipelineStateError          an operation not allowed in the object's current state
    │                               (task finished, analyzer closed, no sample rate yet); a RuntimeError
    ├── PipelineTimeoutError        a bounded wait ran out (carries what and the budget)
    ├── ProcessorError              a processor failed while handling a frame
    │   └── InferenceError          a local model (smart-turn, VAD) failed to run; a RuntimeError
    ├── TransportError              a transport failed (socket closed, handshake refused)
    │   ├── CarrierError            a carrier's handshake could not be completed
    │   ├── ProtocolError           a peer sent something malformed (carries the raw input)
    │   │   └── SFVError            a malformed RFC 8941 structured field; a ValueError
    │   └── SignatureError          a request's signature or token is missing, malformed or wrong
    │       └── JWTError            a malformed, mis-signed or expired JWT; a ValueError
    ├── CapacityError               admission refused: the worker is at capacity
    │   └── InferenceOverloadError  the shared local-inference pool's queue is full
    │                               (also a ServiceError, not retryable)
    ├── BenchError                  a benchmark's helper process failed; a RuntimeError
    ├── CallLeftovers               a finished call left objects in reference cycles or tasks
    │                               running (flowcat.testing's check); an AssertionError
    └── ServiceError(retryable)     a provider call failed
        ├── ServiceConnectionError  could not connect (retryable)
        │   └── OutboundAddressError  the URL's address is private/loopback/... (SSRF guard; not retryable)
        ├── ServiceTimeout          the provider did not answer in time (retryable)
        ├── ServiceStatusError      the provider answered with an error status;
        │   │                       4xx is not retryable except 408, 429 and 499
        │   ├── ServiceAuthError    401/403: the key is missing, wrong or not allowed
        │   └── ServiceRateLimitError  429 (retryable; carries ``retry_after``)
        └── ServiceProtocolError    the provider sent something malformed (not retryable)

Classes marked "a ValueError"/"a RuntimeError" also derive from that builtin, so
code that caught the builtin before keeps working. Every error class in flowcat
lives here (a test checks it); other modules re-export them where they are used.

Vendor exceptions are translated into these at the service boundary and chained
with ``raise ... from exc``. Bad *input* from a peer (a malformed carrier message,
packet) is not raised to the caller at all: it is logged, rate-limited, and
survived (see :mod:`flowcat._ratelimit`).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BenchError",
    "CallLeftovers",
    "CapacityError",
    "CarrierError",
    "ConfigError",
    "FlowcatError",
    "InferenceError",
    "InferenceOverloadError",
    "JWTError",
    "LLMContextConversionError",
    "MissingExtraError",
    "OutboundAddressError",
    "PipelineStateError",
    "PipelineTimeoutError",
    "ProcessorError",
    "ProtocolError",
    "SDPError",
    "SFVError",
    "SIPAuthError",
    "SIPCallError",
    "SIPParseError",
    "SIPRefusal",
    "ServiceAuthError",
    "ServiceConnectionError",
    "ServiceError",
    "ServiceProtocolError",
    "ServiceRateLimitError",
    "ServiceStatusError",
    "ServiceTimeout",
    "SignatureError",
    "TransportError",
    "require_extra",
]


class FlowcatError(Exception):
    """Base of every error flowcat raises on purpose."""


class ConfigError(FlowcatError, ValueError):
    """Invalid configuration: the message names the setting and the value received."""


class MissingExtraError(FlowcatError, ImportError):
    """An optional dependency is missing; the message gives the install command."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(f"{feature} requires the '{extra}' extra: pip install 'flowcat[{extra}]'")
        self.feature = feature
        self.extra = extra


class PipelineStateError(FlowcatError, RuntimeError):
    """An operation that the pipeline, task or processor cannot do in its current state."""


class PipelineTimeoutError(FlowcatError):
    """A bounded wait ran out.

    Attributes:
        what: What was being waited for.
        timeout: The budget in seconds.
    """

    def __init__(self, what: str, timeout: float) -> None:
        super().__init__(f"{what} did not finish within {timeout:g} s")
        self.what = what
        self.timeout = timeout


class ProcessorError(FlowcatError):
    """A processor raised while handling a frame."""


class InferenceError(ProcessorError, RuntimeError):
    """A local model (smart-turn, VAD) failed to run; the cause was logged where it happened."""


class TransportError(FlowcatError):
    """A transport failed."""


class CarrierError(TransportError):
    """The carrier's handshake could not be completed."""


class ProtocolError(TransportError):
    """A peer sent malformed or unexpected input.

    Attributes:
        raw: The offending input (truncated by whoever logs it).
    """

    def __init__(self, message: str, raw: object = None) -> None:
        super().__init__(message)
        self.raw = raw


class SIPParseError(ProtocolError, ValueError):
    """A SIP message could not be parsed (the message says why; ``raw`` holds the datagram)."""


class SIPCallError(TransportError):
    """An outbound SIP request (REGISTER, INVITE) failed.

    Attributes:
        status: The final response code (None: no answer, Timer B/F).
        reason: The reason phrase (or why there was no answer).
    """

    def __init__(self, message: str, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class SIPAuthError(SIPCallError):
    """Digest authentication failed: an unusable challenge, a rejected password (``403``,
    or a challenge repeated for the same credentials), or no credentials for a challenge.
    The password is never part of the message."""


class SIPRefusal(SIPCallError):
    """An inbound SIP request is refused with ``status`` (raised by a call factory, e.g. ``404``
    for a number no agent answers; ``headers`` are added to the response)."""

    def __init__(self, message: str, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, status, reason)
        self.headers = dict(headers or {})


class SDPError(ProtocolError, ValueError):
    """An SDP body could not be parsed or offers nothing this side can answer."""


class SignatureError(TransportError):
    """A carrier request's signature or token is missing, malformed, wrong or expired
    (the request is refused; the reason is logged, never the secret)."""


class SFVError(ProtocolError, ValueError):
    """A field value is not a valid RFC 8941 Structured Field (the message says where)."""


class JWTError(SignatureError, ValueError):
    """A token is malformed, not HS256, mis-signed or outside its validity window."""


class CapacityError(FlowcatError):
    """Admission refused because the worker is at its configured capacity."""


class BenchError(FlowcatError, RuntimeError):
    """A benchmark could not run: a helper process failed or never became ready."""


class CallLeftovers(FlowcatError, AssertionError):
    """A finished call left objects in reference cycles or tasks running
    (raised by :func:`flowcat.testing.assert_call_leaves_nothing`).

    Attributes:
        cycles: The owned objects found in, or only reachable from, reference cycles.
        tasks: The asyncio tasks started during the call and still running.
    """

    def __init__(self, message: str, cycles: list[Any], tasks: list[Any]) -> None:
        super().__init__(message)
        self.cycles = cycles
        self.tasks = tasks


class ServiceError(FlowcatError):
    """A provider call failed.

    Attributes:
        retryable: Whether retrying the same call may succeed.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class InferenceOverloadError(CapacityError, ServiceError):
    """The process's shared local-inference pool (offline STT/TTS) has its queue full: the
    work is refused at once instead of waiting behind an unbounded backlog. Not retryable
    (retrying at once would only add load); a service reports it as an ``ErrorFrame``."""

    def __init__(self, message: str) -> None:
        ServiceError.__init__(self, message, retryable=False)


class ServiceConnectionError(ServiceError):
    """Could not connect to the provider."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message, retryable=retryable)


class OutboundAddressError(ServiceConnectionError):
    """An outbound URL resolved to an address the SSRF guard refuses (private, loopback,
    link-local, CGNAT, multicast, unspecified ...) and the client was not allowed to reach it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class ServiceTimeout(ServiceError):
    """The provider did not answer in time."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message, retryable=retryable)


class ServiceStatusError(ServiceError):
    """The provider answered with an error status.

    4xx statuses are not retryable, except 408 (timeout), 429 (rate limit) and 499.
    """

    def __init__(self, message: str, status_code: int, body: object = None) -> None:
        retryable = status_code >= 500 or status_code in (408, 429, 499)
        super().__init__(f"{message} (status {status_code})", retryable=retryable)
        self.status_code = status_code
        self.body = body


class LLMContextConversionError(FlowcatError):
    """A context message could not be converted to a provider's request shape.

    The message names the offending message (its index and role) and the cause.
    """


def require_extra(module: str, feature: str, extra: str) -> object:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra.

    Args:
        module: Dotted module name to import.
        feature: Human name of what needs it (for the message).
        extra: The ``flowcat[...]`` extra that installs it.

    Returns:
        The imported module.

    Raises:
        MissingExtraError: The module is not installed.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(feature, extra) from None


class ServiceAuthError(ServiceStatusError):
    """The provider refused the credentials (401, 403). Never retried."""


class ServiceRateLimitError(ServiceStatusError):
    """The provider is rate limiting (429). Retryable after ``retry_after`` seconds if given."""

    def __init__(self, message: str, status_code: int = 429, body: object = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, status_code, body)
        self.retry_after = retry_after


class ServiceProtocolError(ServiceError):
    """The provider sent a payload that cannot be understood (not retryable by default)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable)
