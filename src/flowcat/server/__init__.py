"""The flowcat server: health, admission, raw and carrier media WebSockets, answer webhooks, workers.

``flowcat serve`` runs :func:`supervise` (N SO_REUSEPORT workers); each worker
serves :func:`create_app` (and, with ``--audiosocket-port``, :func:`serve_audiosocket`
for Asterisk AudioSocket calls over TCP). :func:`serve_sip` answers SIP calls itself (UDP, RTP)
under the same app and admission (not wired to ``flowcat serve`` yet). Every accepted call runs the real flowcat pipeline:
transport input → serializer → the user pipeline (``--app module:function``) →
serializer → transport output.
"""

from ._admission import Admission, default_capacity
from ._app import ServerConfig, ServerState, create_app, drain
from ._apps import AppFactory, CallInfo, EchoProcessor, PassThrough, after_output, default_app, load_app
from ._audiosocket_server import serve_audiosocket
from ._carriers import CarrierError, Opened, carrier_names, get_carrier
from ._session import run_call
from ._sip_server import serve_sip
from ._supervisor import RestartBackoff, supervise
from ._workers import ServeOptions, run_worker

__all__ = [
    "Admission",
    "AppFactory",
    "CallInfo",
    "CarrierError",
    "EchoProcessor",
    "Opened",
    "PassThrough",
    "RestartBackoff",
    "ServeOptions",
    "ServerConfig",
    "ServerState",
    "after_output",
    "carrier_names",
    "create_app",
    "default_app",
    "default_capacity",
    "drain",
    "get_carrier",
    "load_app",
    "run_call",
    "run_worker",
    "serve_audiosocket",
    "serve_sip",
    "supervise",
]
