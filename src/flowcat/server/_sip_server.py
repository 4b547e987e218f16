"""SIP calls under the worker's app and admission: :func:`serve_sip`.

A :class:`~flowcat.transports.sip.SIPServer` whose factory is the worker's: the
app factory (``CallInfo → processors``, as for ``flowcat serve --app``) is called
with the call's :class:`~flowcat.serializers.CallInfo` (carrier ``"sip"``, Call-ID,
From/To users), its processors run between the call's SIP input and output with
the worker's pipeline rates and idle timeout, and the call takes one slot of the
worker's :class:`~flowcat.server.ServerState` admission, shared with its WebSocket
and AudioSocket calls. Over capacity or while draining the INVITE is refused with
``503`` + ``Retry-After``; OPTIONS report the worker's calls and capacity.
"""

from __future__ import annotations

from typing import Any

from ..errors import CapacityError
from ..runtime import Pipeline, PipelineParams, PipelineTask
from ..transports.sip import SIPServer, SIPTransport
from ._app import ServerConfig, ServerState, user_processors
from ._apps import AppFactory, default_app, is_after_output

__all__ = ["serve_sip"]


def _factory(state: ServerState) -> Any:
    def build(transport: SIPTransport) -> PipelineTask:
        adm = state.admission
        if not adm.try_admit():
            raise CapacityError(
                f"{'draining' if adm.draining else 'at capacity'} ({adm.active} of {adm.capacity} calls)"
            )
        released = False

        async def release(_: SIPTransport) -> None:
            nonlocal released
            if not released:
                released = True
                adm.release()

        transport.add_event_handler("on_client_disconnected", release)
        try:
            cfg = state.config
            procs = user_processors(cfg, transport.call)
            head = [p for p in procs if not is_after_output(p)]
            tail = [p for p in procs if is_after_output(p)]
            return PipelineTask(
                Pipeline([transport.input(), *head, transport.output(), *tail]),
                params=PipelineParams(
                    audio_in_sample_rate=cfg.audio_in_sample_rate,
                    audio_out_sample_rate=cfg.audio_out_sample_rate,
                ),
                idle_timeout_secs=cfg.idle_timeout_secs,
            )
        except BaseException:
            adm.release()
            released = True
            raise

    return build


async def serve_sip(
    host: str,
    port: int,
    app_factory: AppFactory | None = None,
    *,
    state: ServerState | None = None,
    **kwargs: Any,
) -> SIPServer:
    """Answer SIP calls on ``host:port`` (UDP), one pipeline per call, and return the started server.

    Args:
        host: Bind address of the SIP and RTP sockets.
        port: SIP port (0: ephemeral; read ``server.port``).
        app_factory: ``CallInfo → processors``; used only without ``state`` (default: echo).
        state: The worker state to share (admission, app, pipeline rates, idle timeout).
        kwargs: Passed to :class:`~flowcat.transports.sip.SIPServer` (``public_address``,
            ``rtp_ports``, ``codecs``, ``ring_secs``, ``inband_dtmf``, ``timers``, …).
    """
    st = state if state is not None else ServerState(ServerConfig(app=app_factory or default_app))
    kwargs.setdefault("load", lambda: (st.admission.active, st.admission.capacity))
    server = SIPServer(_factory(st), host=host, port=port, **kwargs)
    await server.start()
    return server
