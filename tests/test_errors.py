"""One error hierarchy: every error class lives in flowcat.errors, and configuration or
state mistakes raise its classes (which still derive from the builtin a caller may catch)."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

import flowcat
import flowcat.errors as errors
from flowcat.errors import (
    BenchError,
    CarrierError,
    ConfigError,
    FlowcatError,
    InferenceError,
    JWTError,
    PipelineStateError,
    ProcessorError,
    ProtocolError,
    SFVError,
    SignatureError,
    TransportError,
)

SRC = Path(flowcat.__file__).parent

_BUILTIN_EXC = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}
_FLOWCAT_EXC = {n for n in errors.__all__ if isinstance(getattr(errors, n), type)}

# Bare builtin raises left on purpose: argument checks of pure encoders/format limits
# (a wrong value passed by the caller, not configuration or state).
ALLOWED_BARE_RAISES = {
    ("audio/_wav.py", "ValueError"): 2,  # data beyond the WAV format's 4 GiB; unsupported sample width
    ("audio/dtmf/_telephone_event.py", "ValueError"): 1,  # build_telephone_event: a field out of range
    ("transports/_audiosocket_protocol.py", "ValueError"): 1,  # encode_message: kind/length beyond the header
}


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def exception_classes_outside_errors(root: Path) -> list[str]:
    """Classes in ``root`` (but not errors.py) that derive from an exception class by name."""
    known = _BUILTIN_EXC | _FLOWCAT_EXC
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {_base_name(b) for b in node.bases}
                if bases & known or any(b.endswith(("Error", "Exception")) for b in bases):
                    found.append(f"{rel}:{node.name}")
    return found


def bare_builtin_raises(root: Path) -> dict[tuple[str, str], int]:
    """``raise ValueError(...)``-style raises of builtins, counted per file and class."""
    counts: dict[tuple[str, str], int] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                name = _base_name(exc)
                if name in {"ValueError", "RuntimeError", "TypeError", "KeyError", "Exception"}:
                    counts[(rel, name)] = counts.get((rel, name), 0) + 1
    return counts


def test_every_error_class_lives_in_errors_py() -> None:
    assert exception_classes_outside_errors(SRC) == []


def test_the_error_class_check_sees_a_stray_class(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text(
        "from flowcat.errors import TransportError\n"
        "class A(TransportError): ...\nclass B(ValueError): ...\nclass C(object): ...\n"
    )
    assert exception_classes_outside_errors(tmp_path) == ["mod.py:A", "mod.py:B"]


def test_no_bare_builtin_raises_beyond_the_listed_ones() -> None:
    assert bare_builtin_raises(SRC) == ALLOWED_BARE_RAISES


def test_hierarchy_keeps_the_builtins_callers_catch() -> None:
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, FlowcatError)
    assert issubclass(PipelineStateError, RuntimeError) and issubclass(PipelineStateError, FlowcatError)
    assert issubclass(InferenceError, RuntimeError) and issubclass(InferenceError, ProcessorError)
    assert issubclass(BenchError, RuntimeError) and issubclass(BenchError, FlowcatError)
    assert issubclass(CarrierError, TransportError)
    assert issubclass(SFVError, ProtocolError) and issubclass(SFVError, ValueError)
    assert issubclass(JWTError, SignatureError) and issubclass(JWTError, ValueError)


def test_reexported_error_classes_are_the_same_objects() -> None:
    from flowcat.serializers._jwt import JWTError as J
    from flowcat.serializers._sfv import SFVError as S
    from flowcat.server import CarrierError as C

    assert (J, S, C) == (JWTError, SFVError, CarrierError)


def test_configuration_mistakes_raise_config_error() -> None:
    from flowcat.audio import AudioChunker, StreamResampler
    from flowcat.audio.vad import VADParams
    from flowcat.runtime import FrameProcessor, ParallelPipeline
    from flowcat.serializers.telnyx import TelnyxFrameSerializer
    from flowcat.turns import MinWordsUserTurnStartStrategy

    cases = [
        lambda: AudioChunker(8000, chunk_ms=0),
        lambda: StreamResampler(0, 8000),
        lambda: VADParams(confidence=2.0),
        lambda: ParallelPipeline(),
        lambda: FrameProcessor().add_event_handler("on_no_such_event", print),
        lambda: TelnyxFrameSerializer(l16_byte_order="middle"),
        lambda: MinWordsUserTurnStartStrategy(0),
    ]
    for make in cases:
        with pytest.raises(ConfigError):
            make()


def test_state_mistakes_raise_pipeline_state_error() -> None:
    from flowcat.audio.vad import EnergyVADAnalyzer

    with pytest.raises(PipelineStateError, match="set_sample_rate"):
        EnergyVADAnalyzer().analyze_audio_sync(b"\x00\x00" * 160)


def test_app_factory_returning_non_processors_is_a_config_error() -> None:
    from flowcat.serializers import CallInfo
    from flowcat.server import PassThrough
    from flowcat.server._app import ServerConfig
    from flowcat.server._calls import user_processors

    cfg = ServerConfig(app=lambda call: [PassThrough(), "not a processor"])
    with pytest.raises(ConfigError, match="must return processors"):
        user_processors(cfg, CallInfo(carrier="raw"))
