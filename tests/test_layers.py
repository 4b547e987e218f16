"""The layering is enforced: import-linter checks every import statement against the contract in
pyproject.toml, and an AST scan checks what import-linter cannot see, the ``importlib.import_module``
and ``__import__`` calls with a literal flowcat module name, against the same layer order."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import flowcat

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
SRC = Path(flowcat.__file__).resolve().parent


def contract_layers() -> list[list[str]]:
    """The layers of the contract, top first; each a list of independent packages."""
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["id"] == "layers"]
    return [[name.strip() for name in layer.split("|")] for layer in contract["layers"]]


def _layer_of(module: str, layers: list[list[str]]) -> tuple[int, str] | None:
    """(depth from the bottom, package) of the layer holding ``module``; None for the root package."""
    for i, layer in enumerate(reversed(layers)):
        for pkg in layer:
            if module == pkg or module.startswith(pkg + "."):
                return i, pkg
    return None


def _literal_target(call: ast.Call, importer: str, is_package: bool) -> str | None:
    """The module a dynamic import call names, when its name is a literal (or starts with one)."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name not in ("import_module", "__import__") or not call.args:
        return None
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        text = arg.value
    elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        # f"flowcat.serializers.{name}": the literal head names the package at least.
        head = str(arg.values[0].value)
        text = head.rsplit(".", 1)[0] if "." in head else head
        if head.startswith(".") and head.strip(".") == "":
            text = head  # f".{name}": relative to the importer's package
    else:
        return None
    if text.startswith("."):
        if name != "import_module":
            return None
        package = importer if is_package else importer.rsplit(".", 1)[0]
        dots = len(text) - len(text.lstrip("."))
        base = package.rsplit(".", dots - 1)[0] if dots > 1 else package
        rest = text.lstrip(".")
        text = f"{base}.{rest}" if rest else base
    return text if text == "flowcat" or text.startswith("flowcat.") else None


def string_imports(root: Path, package: str = "flowcat") -> list[tuple[str, str, int]]:
    """(importer, target, line) for each dynamic import of a literal flowcat module under ``root``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = [package, *rel.parts]
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        importer = ".".join(parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                target = _literal_target(node, importer, is_package)
                if target is not None:
                    found.append((importer, target, node.lineno))
    return found


def layer_violations(imports: list[tuple[str, str, int]], layers: list[list[str]]) -> list[str]:
    """The imports that reach up the layers, or across to an independent package of the same layer."""
    bad = []
    for importer, target, line in imports:
        src, dst = _layer_of(importer, layers), _layer_of(target, layers)
        if src is None:  # the root package sits above every layer
            continue
        if dst is None:  # importing the root package pulls in flowcat.runtime
            dst = _layer_of("flowcat.runtime", layers)
            assert dst is not None
        if dst[0] > src[0] or (dst[0] == src[0] and dst[1] != src[1]):
            bad.append(f"{importer}:{line} imports {target}")
    return bad


def _lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))"
    )
    env = None
    if pythonpath is not None:
        import os

        env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [sys.executable, "-c", code, str(PYPROJECT)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ------------------------------------------------------------------------------- the contract


def test_contract_covers_every_package() -> None:
    named = {pkg for layer in contract_layers() for pkg in layer}
    present = {
        f"flowcat.{p.name}" if p.is_dir() else f"flowcat.{p.stem}"
        for p in SRC.iterdir()
        if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.name != "__init__.py")
    }
    assert present == named


def test_layer_order_is_the_documented_one() -> None:
    assert contract_layers() == [
        ["flowcat.cli"],
        ["flowcat.bench", "flowcat.testing"],
        ["flowcat.server"],
        ["flowcat.config"],
        ["flowcat.agent"],
        ["flowcat.services"],
        ["flowcat.transports"],
        ["flowcat.serializers"],
        ["flowcat.turns"],
        ["flowcat.audio"],
        ["flowcat.runtime"],
        ["flowcat.frames"],
        ["flowcat._ratelimit"],
        ["flowcat.errors"],
    ]


def test_import_statements_keep_the_layers() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_dynamic_imports_keep_the_layers() -> None:
    imports = string_imports(SRC)
    # The scan sees the real dynamic imports (it is not vacuous).
    assert ("flowcat.server._carrier_adapters", "flowcat.serializers", 40) in imports
    assert any(i == "flowcat.cli._bench" and t == "flowcat.bench" for i, t, _ in imports)
    assert layer_violations(imports, contract_layers()) == []


# ------------------------------------------------------------------------ proof it catches


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("frames/_x.py", 'import importlib\nimportlib.import_module("flowcat.server")\n', "flowcat.server"),
        ("services/_x.py", '__import__("flowcat.agent._brain")\n', "flowcat.agent._brain"),
        (
            "audio/_x.py",
            'from importlib import import_module\nimport_module(f"flowcat.turns.{n}")\n',
            "flowcat.turns",
        ),
        (
            "serializers/_x.py",
            'import importlib\nimportlib.import_module("flowcat.transports")\n',
            "flowcat.transports",
        ),
        ("bench/_x.py", 'import importlib\nimportlib.import_module("flowcat.testing")\n', "flowcat.testing"),
        ("errors.py", 'import importlib\nimportlib.import_module("flowcat")\n', "flowcat"),
        (
            "runtime/_x.py",
            'import importlib\nimportlib.import_module("..audio", __package__)\n',
            "flowcat.audio",
        ),
    ],
)
def test_dynamic_import_violation_is_detected(
    tmp_path: Path, module: str, source: str, expected: str
) -> None:
    path = tmp_path / module
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    imports = string_imports(tmp_path)
    assert [t for _, t, _ in imports] == [expected]
    assert len(layer_violations(imports, contract_layers())) == 1


def test_allowed_dynamic_imports_pass(tmp_path: Path) -> None:
    (tmp_path / "server").mkdir()
    (tmp_path / "server" / "_x.py").write_text(
        'import importlib\nimportlib.import_module("flowcat.serializers.twilio")\n'
        'importlib.import_module("flowcat.server._apps")\nimportlib.import_module(name)\n'
    )
    imports = string_imports(tmp_path)
    assert [t for _, t, _ in imports] == ["flowcat.serializers.twilio", "flowcat.server._apps"]
    assert layer_violations(imports, contract_layers()) == []


@pytest.mark.slow
def test_import_linter_catches_a_static_violation(tmp_path: Path) -> None:
    """A copy of the package with one upward import (frames → server) breaks the contract."""
    copy = tmp_path / "flowcat"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "frames" / "_bad.py").write_text(
        "def f():\n    from ..server import CallInfo\n    return CallInfo\n"
    )
    result = _lint_imports(tmp_path, pythonpath=tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "flowcat.frames._bad -> flowcat.server" in result.stdout, (
        result.stdout
    )
