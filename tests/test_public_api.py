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
