"""The public surface is explicit and locked."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import flowcat

LOCK = Path(__file__).parent / "fixtures" / "public_api.txt"


def _read_lock(path: Path) -> dict[str, list[str]]:
    """The committed public surface: ``[module]`` headers, each followed by its ``__all__`` in order."""
    lock: dict[str, list[str]] = {}
    names: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            names = lock.setdefault(line[1:-1], [])
        else:
            names.append(line)
    return lock


EXPECTED = _read_lock(LOCK)


def _public_modules() -> list[str]:
    names = ["flowcat"]
    for info in pkgutil.walk_packages(flowcat.__path__, "flowcat."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return sorted(names)


def test_every_public_module_is_locked() -> None:
    assert _public_modules() == sorted(EXPECTED)


def test_the_lock_covers_the_layers() -> None:
    packages = {"flowcat", "flowcat.frames", "flowcat.runtime", "flowcat.audio", "flowcat.audio.vad"}
    packages |= {"flowcat.audio.dtmf", "flowcat.turns", "flowcat.serializers", "flowcat.transports"}
    packages |= {"flowcat.server", "flowcat.testing", "flowcat.bench", "flowcat.services", "flowcat.agent"}
    packages |= {"flowcat.config", "flowcat.errors", "flowcat.cli"}
    assert packages <= set(EXPECTED)


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_all_is_locked_and_resolves(module: str) -> None:
    mod = importlib.import_module(module)
    names = list(mod.__all__)
    assert names == EXPECTED[module]
    assert names == sorted(names), f"{module}.__all__ is not sorted"
    for name in names:
        assert hasattr(mod, name), f"{module}.__all__ names missing {name}"
    if hasattr(mod, "__path__"):  # a package exposes exactly its __all__
        public = {
            n for n in vars(mod) if not n.startswith("_") and not isinstance(getattr(mod, n), type(importlib))
        }
        public -= {"annotations"}
        extra = public - set(names)
        assert not extra, f"{module} exposes names not in __all__: {sorted(extra)}"


def test_one_call_info_class() -> None:
    import ast

    import flowcat.serializers
    import flowcat.server

    assert flowcat.server.CallInfo is flowcat.serializers.CallInfo
    root = Path(flowcat.__file__).parent
    defs = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef) and node.name == "CallInfo"
    ]
    assert defs == ["serializers/_call.py"]


def test_audiosocket_names_are_public() -> None:
    import flowcat.server
    import flowcat.transports

    names = {
        "AudioSocketInputTransport",
        "AudioSocketListener",
        "AudioSocketOutputTransport",
        "AudioSocketParams",
        "AudioSocketParser",
        "AudioSocketTransport",
    }
    assert names <= set(flowcat.transports.__all__)
    assert "serve_audiosocket" in flowcat.server.__all__
    assert callable(flowcat.server.serve_audiosocket)


def test_carrier_auth_errors_are_in_the_hierarchy() -> None:
    from flowcat.errors import FlowcatError, ProtocolError, SignatureError, TransportError
    from flowcat.serializers._jwt import JWTError, verify_hs256
    from flowcat.serializers._sfv import SFVError, parse_dictionary

    assert issubclass(SignatureError, TransportError)
    with pytest.raises(SignatureError):
        verify_hs256("not-a-token", b"k")
    with pytest.raises(JWTError):
        verify_hs256("a.b.c", b"k")
    with pytest.raises(ProtocolError) as exc_info:
        parse_dictionary('sig1=("@authority"')
    assert isinstance(exc_info.value, SFVError) and isinstance(exc_info.value, FlowcatError)


def test_service_errors_are_in_the_hierarchy() -> None:
    from flowcat.errors import (
        ServiceAuthError,
        ServiceError,
        ServiceProtocolError,
        ServiceRateLimitError,
        ServiceStatusError,
    )

    assert issubclass(ServiceAuthError, ServiceStatusError) and not ServiceAuthError("x", 401).retryable
    rl = ServiceRateLimitError("x", retry_after=2.0)
    assert rl.retryable and rl.retry_after == 2.0 and rl.status_code == 429
    assert issubclass(ServiceProtocolError, ServiceError) and not ServiceProtocolError("x").retryable


def test_generic_serializers_live_with_the_carriers_and_keep_their_transport_names() -> None:
    import flowcat.serializers as s
    import flowcat.transports as t

    assert {"FastSerializer", "ProtobufFrameSerializer", "RawPCMSerializer", "Serializer"} <= set(s.__all__)
    assert t.RawPCMSerializer is s.RawPCMSerializer
    assert t.ProtobufFrameSerializer is s.ProtobufFrameSerializer
    assert s.RawPCMSerializer.__module__ == "flowcat.serializers.raw_pcm"
    assert s.ProtobufFrameSerializer.__module__ == "flowcat.serializers.protobuf"
