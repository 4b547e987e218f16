"""The public surface is explicit and locked."""

from __future__ import annotations

import importlib

import pytest

import flowcat

EXPECTED_TOP = [
    "BaseObserver",
    "FrameDirection",
    "FrameProcessor",
    "FramePushed",
    "ParallelPipeline",
    "Pipeline",
    "PipelineParams",
    "PipelineRunner",
    "PipelineTask",
    "__version__",
]


def test_top_level_all_is_locked() -> None:
    assert flowcat.__all__ == EXPECTED_TOP


@pytest.mark.parametrize(
    "module",
    [
        "flowcat",
        "flowcat.frames",
        "flowcat.runtime",
        "flowcat.testing",
        "flowcat.errors",
        "flowcat.transports",
    ],
)
def test_all_is_sorted_and_complete(module: str) -> None:
    mod = importlib.import_module(module)
    names = mod.__all__
    assert names == sorted(names, key=lambda n: (n.startswith("_"), n)) or names == sorted(names)
    for name in names:
        assert hasattr(mod, name), f"{module}.__all__ names missing {name}"
    public = {
        n for n in vars(mod) if not n.startswith("_") and not isinstance(getattr(mod, n), type(importlib))
    }
    public -= {"annotations"}
    extra = public - set(names)
    assert not extra, f"{module} exposes names not in __all__: {sorted(extra)}"


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
