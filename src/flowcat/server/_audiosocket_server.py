"""AudioSocket calls: one flowcat pipeline per Asterisk AudioSocket TCP connection.

:func:`serve_audiosocket` listens on a TCP port. Asterisk connects to it with
``AudioSocket(uuid,host:port)`` in the dialplan, or ``Dial(AudioSocket/host:port/uuid)``;
see https://docs.asterisk.org/Configuration/Channel-Drivers/AudioSocket/. Each
connection is one call, run by the WebSocket server's machinery:

* **Admission** is the worker's :class:`~flowcat.server.ServerState`, shared with
  its WebSocket calls. Over capacity, or while draining, the connection is
  accepted, sent a hang-up (0x00) at once and closed, and the refusal is counted
  and logged.
* **Handshake:** the call's UUID must be the first message, within
  ``handshake_timeout`` seconds. It becomes ``CallInfo.call_id``, with carrier
  ``"audiosocket"``.
* **The call:** the app factory's processors run between the
  :class:`~flowcat.transports.AudioSocketTransport`'s input and output, with the
  worker's pipeline rates and idle timeout, in
  :func:`~flowcat.server._session.serve_call`. Its slot is released when the call ends.
* **Wire format:** per call. Bot audio goes back in the kind (slin rate) of the
  caller's latest audio; ``sample_rate`` is used until the first audio message,
  and ``out_rate``, when set, overrides both for every call of the server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from .._ratelimit import RateLimitedLog
from ..runtime import PipelineParams
from ..transports import AudioSocketListener, AudioSocketParams, AudioSocketTransport, TransportParams
from ._apps import AppFactory, CallInfo, default_app
from ._calls import track, user_processors
from ._session import CallSocket, serve_call
from ._state import ServerConfig, ServerState

__all__ = ["AudioSocketCall", "serve_audiosocket"]

logger = logging.getLogger("flowcat.server")

_REFUSAL = RateLimitedLog(logger, first=10, every=100)
_TRANSPORT_FIELDS = tuple(f.name for f in dataclasses.fields(TransportParams))


class AudioSocketCall(CallSocket):
    """An AudioSocket connection as the server's :class:`CallSocket`.

    Args:
        listener: The connection (its UUID already received).
        sample_rate: Wire rate (Hz) of bot audio until the caller's first audio.
        out_rate: Wire rate (Hz) of all bot audio; None: follow the caller's audio.
    """

    def __init__(
        self, listener: AudioSocketListener, sample_rate: int = 8000, out_rate: int | None = None
    ) -> None:
        self.listener = listener
        self.sample_rate = sample_rate
        self.out_rate = out_rate

    @property
    def closed(self) -> bool:
        return not self.listener.is_open

    async def receive(self) -> str | bytes | None:
        return None  # AudioSocket has no carrier handshake beyond the UUID

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.listener.send(message)

    async def close(self, code: int = 1000) -> None:
        self.listener.hang_up()

    def transport(self, params: Any) -> AudioSocketTransport:
        opts = {name: getattr(params, name) for name in _TRANSPORT_FIELDS}
        aparams = AudioSocketParams(
            **opts,
            sample_rate=self.sample_rate,
            out_rate=self.out_rate,
            end_on_disconnect=bool(getattr(params, "end_on_disconnect", False)),
        )
        return AudioSocketTransport(self.listener, aparams)


async def audiosocket_call(
    state: ServerState,
    listener: AudioSocketListener,
    *,
    sample_rate: int = 8000,
    out_rate: int | None = None,
    handshake_timeout: float = 10.0,
) -> None:
    """One admitted AudioSocket call: the UUID, then the pipeline until the call ends."""
    try:
        call_id = await asyncio.wait_for(listener.wait_uuid(), handshake_timeout)
    except TimeoutError:
        logger.warning(
            "audiosocket: no UUID from %s within %g s; hanging up", listener.peer, handshake_timeout
        )
        listener.hang_up()
        return
    if call_id is None or listener.disconnected or listener.remote_hangup:
        return
    cfg = state.config
    call = CallInfo(carrier="audiosocket", call_id=call_id, remote=listener.peer)
    await serve_call(
        AudioSocketCall(listener, sample_rate, out_rate),
        None,
        user_processors(cfg, call),
        params=PipelineParams(
            audio_in_sample_rate=cfg.audio_in_sample_rate,
            audio_out_sample_rate=cfg.audio_out_sample_rate,
        ),
        idle_timeout_secs=cfg.idle_timeout_secs,
    )


class _CallListener(AudioSocketListener):
    """A connection of :func:`serve_audiosocket`: admitted (its call task started) or refused."""

    def __init__(
        self,
        state: ServerState,
        sample_rate: int,
        out_rate: int | None,
        handshake_timeout: float,
        max_payload: int,
    ) -> None:
        super().__init__(max_payload)
        self.state = state
        self.sample_rate = sample_rate
        self.out_rate = out_rate
        self.handshake_timeout = handshake_timeout

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        adm = self.state.admission
        if not adm.try_admit():
            n = adm.rejected
            _REFUSAL(
                n,
                "audiosocket: refused the call from %s (%s, %d of %d calls; %d refused so far); hanging up",
                self.peer,
                "draining" if adm.draining else "at capacity",
                adm.active,
                adm.capacity,
                n,
            )
            self.hang_up()
            return
        asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        try:
            await track(
                self.state,
                audiosocket_call(
                    self.state,
                    self,
                    sample_rate=self.sample_rate,
                    out_rate=self.out_rate,
                    handshake_timeout=self.handshake_timeout,
                ),
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("audiosocket call from %s (%s) failed", self.peer, self.call_id)
        finally:
            self.hang_up()  # nothing to do when the call closed the connection itself


async def serve_audiosocket(
    host: str,
    port: int,
    app_factory: AppFactory | None = None,
    *,
    state: ServerState | None = None,
    sample_rate: int = 8000,
    out_rate: int | None = None,
    handshake_timeout: float = 10.0,
    max_payload: int = 16384,
    **kwargs: Any,
) -> asyncio.Server:
    """Serve AudioSocket calls on ``host:port``, one pipeline per TCP connection.

    Args:
        host: Bind address.
        port: TCP port (0: an ephemeral one; read it from the returned server).
        app_factory: ``CallInfo → processors``, as for ``flowcat serve --app``. Used
            only without ``state``; the default is the echo app.
        state: The worker state to share (admission, app, pipeline rates, idle
            timeout). Without it, a state of its own with ``app_factory`` is made.
        sample_rate: Wire rate (Hz) of bot audio until a call's first caller audio
            arrives: 8000 (kind 0x10, what the ``AudioSocket()`` dialplan application
            uses) or another slin rate. After it, bot audio follows the kind of the
            caller's audio, call by call.
        out_rate: Wire rate (Hz) of all bot audio on every call, whatever the caller
            sends; it takes precedence over the caller's kind and ``sample_rate``.
            None (the default): follow each call's caller audio.
        handshake_timeout: Seconds the peer has to send its UUID.
        max_payload: Longest accepted message payload; a longer header hangs up.
        kwargs: Passed to ``loop.create_server`` (``reuse_port``, ``backlog``, ``sock``).

    Returns:
        The listening server. Closing it stops accepting; calls in progress go on.
    """
    if state is None:
        state = ServerState(ServerConfig(app=app_factory or default_app))
    # Fails early on a rate AudioSocket has no kind for.
    AudioSocketParams(sample_rate=sample_rate, out_rate=out_rate)
    loop = asyncio.get_running_loop()
    st = state
    server = await loop.create_server(
        lambda: _CallListener(st, sample_rate, out_rate, handshake_timeout, max_payload),
        host,
        port,
        **kwargs,
    )
    return server
