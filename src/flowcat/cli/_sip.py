"""``flowcat sip``: register at a registrar, dial a call, or answer calls — native SIP/RTP.

* ``flowcat sip register --registrar HOST:PORT --user U [--password-env VAR]``: register,
  print the outcome (granted expiry, or why it failed: exit 1), keep the binding
  ``--hold`` seconds (refreshed), then un-register.
* ``flowcat sip call sip:user@host:port [--app module:function | --echo] [--seconds N]``:
  place a call, run the app for it until either side hangs up (or ``--seconds``: then
  BYE); exit 1 when the call is not answered.
* ``flowcat sip answer --port P [--app … | --echo] [--calls N]``: answer calls (each one
  a pipeline of the app); with ``--calls`` exit once that many calls have ended. SIGTERM
  drains: new INVITEs and OPTIONS are answered ``503`` (a Kamailio dispatcher takes the
  instance out of rotation), the calls in progress finish (at most ``--drain-timeout``
  seconds), then it exits 0.

The password is read from the environment variable named by ``--password-env``
(default ``FLOWCAT_SIP_PASSWORD``), never from the command line, and never printed.
See docs/sip.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

__all__ = ["register"]


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _common(p: argparse.ArgumentParser, *, port: int = 0) -> None:
    p.add_argument("--host", default="127.0.0.1", help="SIP and RTP bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=port, help=f"SIP UDP port (default {port or 'ephemeral'})")
    p.add_argument("--public-address", default=None, help="address put in Contact/Via/SDP (default --host)")
    p.add_argument(
        "--rtp-ports", default="10000-20000", help="RTP port range START-END (default 10000-20000)"
    )


def _app_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--app", default=None, help="pipeline factory 'module:function' (CallInfo → processors)")
    g.add_argument("--echo", action="store_true", help="echo the other side's audio (the default)")
    p.add_argument("--sample-rate", type=int, default=None, help="pipeline sample rate in and out")


def _auth_args(p: argparse.ArgumentParser, *, user_required: bool) -> None:
    p.add_argument("--user", required=user_required, default=None if user_required else "flowcat",
                   help="user (address of record / caller id, and the digest username)")  # fmt: skip
    p.add_argument("--password-env", default="FLOWCAT_SIP_PASSWORD", metavar="VAR",
                   help="environment variable holding the password (default FLOWCAT_SIP_PASSWORD)")  # fmt: skip


def register(sub: Any) -> None:
    """Add the ``sip`` subcommand."""
    p = sub.add_parser("sip", help="native SIP: register, dial a call, answer calls")
    ssub = p.add_subparsers(dest="sip_command", metavar="ACTION", required=True)

    r = ssub.add_parser("register", help="register at a registrar (digest auth) and report the outcome")
    r.add_argument("--registrar", type=_hostport, required=True, metavar="HOST:PORT")
    r.add_argument("--domain", default=None, help="AOR domain (default: the registrar's host)")
    r.add_argument("--expires", type=int, default=3600, help="requested expiry, seconds")
    r.add_argument("--hold", type=float, default=0.0, help="stay registered this long before un-registering")
    _auth_args(r, user_required=True)
    _common(r)
    r.set_defaults(func=main)

    c = ssub.add_parser("call", help="dial a SIP URI and run the app for the call")
    c.add_argument("target", help="sip:user@host:port")
    c.add_argument(
        "--seconds", type=float, default=None, help="hang up after this long (default: when ended)"
    )
    c.add_argument(
        "--ring-timeout", type=float, default=None, help="give up (CANCEL) after ringing this long"
    )
    _auth_args(c, user_required=False)
    _app_args(c)
    _common(c)
    c.set_defaults(func=main)

    a = ssub.add_parser("answer", help="answer SIP calls with the app")
    a.add_argument(
        "--calls", type=int, default=None, help="exit after this many calls ended (default: never)"
    )
    a.add_argument(
        "--drain-timeout", type=float, default=300.0, help="on SIGTERM, seconds calls may take to end"
    )
    _app_args(a)
    _common(a, port=5060)
    a.set_defaults(func=main)


def _password(args: argparse.Namespace) -> str | None:
    return os.environ.get(args.password_env) or None


async def _server(args: argparse.Namespace) -> Any:
    from ..server import ServerConfig, ServerState, load_app, serve_sip

    start, _, end = args.rtp_ports.partition("-")
    kwargs: dict[str, Any] = {"rtp_ports": (int(start), int(end or start))}
    if args.public_address:
        kwargs["public_address"] = args.public_address
    cfg = ServerConfig(app=load_app(getattr(args, "app", None)))
    rate = getattr(args, "sample_rate", None)
    if rate:
        cfg.audio_in_sample_rate = cfg.audio_out_sample_rate = rate
    return await serve_sip(args.host, args.port, state=ServerState(cfg), **kwargs)


async def _register(args: argparse.Namespace) -> int:
    from ..errors import SIPCallError

    srv = await _server(args)
    try:
        reg = await srv.register(
            args.registrar, args.user, _password(args), domain=args.domain, expires=args.expires
        )
    except SIPCallError as exc:
        print(f"flowcat sip register: failed: {exc}", file=sys.stderr)
        await srv.stop()
        return 1
    print(f"registered {reg.aor} at {args.registrar[0]}:{args.registrar[1]} for {reg.granted}s", flush=True)
    try:
        if args.hold > 0:
            await asyncio.sleep(args.hold)  # the binding is refreshed meanwhile
    finally:
        await srv.stop()  # un-REGISTER
    print("unregistered", flush=True)
    return 0


async def _call(args: argparse.Namespace) -> int:
    from ..errors import SIPCallError

    srv = await _server(args)
    try:
        call = srv.outbound_call(args.target, from_user=args.user, password=_password(args))
        connect = asyncio.ensure_future(call.connect())
        try:
            await asyncio.wait_for(asyncio.shield(connect), args.ring_timeout)
        except TimeoutError:
            call.cancel()
            try:
                await connect
            except SIPCallError:
                pass
            print(f"flowcat sip call: not answered within {args.ring_timeout}s (cancelled)", file=sys.stderr)
            return 1
        except SIPCallError as exc:
            print(f"flowcat sip call: failed: {exc}", file=sys.stderr)
            return 1
        print(f"answered {args.target} ({call.negotiated.codec})", flush=True)
        try:
            await asyncio.wait_for(call.ended.wait(), args.seconds)
        except TimeoutError:
            await call.hangup()
            await asyncio.wait_for(call.ended.wait(), 10)
        print(f"ended ({call.end_reason or 'hung up'})", flush=True)
        return 0
    finally:
        await srv.stop()


async def _answer(args: argparse.Namespace) -> int:
    import signal

    srv = await _server(args)
    print(f"listening on {args.host}:{srv.port}", flush=True)
    loop = asyncio.get_running_loop()
    term = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, term.set)
    try:
        waits = [asyncio.ensure_future(term.wait())]
        if args.calls is not None:
            waits.append(asyncio.ensure_future(srv.wait_ended(args.calls)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if term.is_set():
            srv.drain()
            print(f"draining: {srv.active_calls} call(s) in progress", flush=True)
            try:
                await asyncio.wait_for(srv.wait_calls_ended(), args.drain_timeout)
            except TimeoutError:
                print(f"drain timeout: hanging up {srv.active_calls} call(s)", flush=True)
        print(f"{srv.calls_answered} call(s) answered", flush=True)
        return 0
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await srv.stop()


def main(args: argparse.Namespace) -> int:
    from ..errors import ConfigError

    run = {"register": _register, "call": _call, "answer": _answer}[args.sip_command]
    try:
        return asyncio.run(run(args))
    except ConfigError as exc:
        print(f"flowcat sip: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
