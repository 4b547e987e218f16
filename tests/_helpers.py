"""Small processors shared by runtime tests, the rules for a test's missing dependencies, and a
self-signed TLS certificate for 127.0.0.1 (:func:`self_signed_cert`).

A missing test dependency (an extra's package, a model wheel) skips its tests on a developer's machine but fails
the run under ``CI=true``: CI must not pass by quietly running fewer tests. :func:`require` and :func:`missing`
apply that rule; conftest.py turns any other skip under CI into a failure too, unless it is declared an expected
absence with :func:`expected` (e.g. ``audioop`` on Python >= 3.13), which every environment may lack.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib
import ipaddress
import os
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

from flowcat import FrameDirection, FrameProcessor
from flowcat.frames import Frame, TextFrame


class Passthrough(FrameProcessor):
    """Passes every frame on."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class Blocking(FrameProcessor):
    """Awaits ``release`` when it sees TextFrame("block") — a processor that does I/O inline."""

    def __init__(self) -> None:
        super().__init__(name="blocking")
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.cancelled = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TextFrame) and frame.text == "block":
            self.entered.set()
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        await self.push_frame(frame, direction)


def texts(frames: list[Frame]) -> list[str]:
    """The texts of the TextFrames among ``frames``."""
    return [f.text for f in frames if isinstance(f, TextFrame)]


EXPECTED = "expected absence: "
"""Prefix of the skip reasons that CI accepts (see :func:`expected`)."""


def strict() -> bool:
    """True under CI (``CI=true``): a missing test dependency fails instead of skipping."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def expected(reason: str) -> str:
    """The skip reason for an absence that is expected in some environments (CI accepts it). Use it as
    ``pytest.mark.skipif(cond, reason=expected("..."))`` or ``pytest.skip(expected("..."))``."""
    return EXPECTED + reason


def missing(what: str) -> NoReturn:
    """A test dependency is not installed: skip (module-level too) locally, fail the run under CI=true."""
    msg = f"test dependency missing: {what} (./scripts/test installs every test dependency)"
    if strict():
        pytest.fail(f"{msg}; CI=true, so this fails instead of skipping", pytrace=False)
    pytest.skip(msg, allow_module_level=True)


def require(module: str) -> ModuleType:
    """Import a test dependency: like ``pytest.importorskip``, but a failure under CI=true (see :func:`missing`)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        error = exc
    missing(f"{module} ({error})")


def conformance_params(targets: dict[str, object]) -> list[object]:
    """``pytest.param(target, scenario)`` for every scenario of every ``"kind:name"`` target.

    A provider test module sets ``CONFORMANCE = {"llm:groq": ConformanceTarget(...), ...}`` and
    parametrizes ``test_conformance(target, scenario)`` with this; ``test_providers_registry.py``
    checks that every registered provider has such a run.
    """
    from flowcat.testing.conformance import scenarios

    params = []
    for key, target in targets.items():
        for s in scenarios(key.partition(":")[0]):  # type: ignore[arg-type]
            params.append(pytest.param(target, s, id=f"{key}-{s}"))
    return params


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A fresh self-signed certificate for 127.0.0.1 (IP SAN, a CA: it can be its own trust root)
    and its key, PEM files ``cert.pem`` and ``key.pem`` in ``directory``."""
    require("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file
