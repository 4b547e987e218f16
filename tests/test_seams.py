"""The hot-path seams between objects are public: no object reaches into another
module's private fields or replaces another object's methods.

Within one module, a transport and its own input/output classes share private
members (they are one unit); across modules only public, documented names are used.
The runtime package is one unit too (its processors, pipeline and scheduler share the
processor graph's fields on the per-frame path) and is not scanned here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "flowcat"
SCANNED = ("transports", "server", "serializers")
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}  # public by the namedtuple convention


def _defined_here(tree: ast.Module) -> set[str]:
    """Private names a module defines: methods, ``self._x`` / class attributes, slots."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
    return names


def _foreign_private_accesses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    mine = _defined_here(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        attr = node.attr
        if not attr.startswith("_") or attr.startswith("__") or attr in NAMEDTUPLE_API:
            continue
        v = node.value
        if isinstance(v, ast.Name) and v.id in ("self", "cls"):
            continue
        if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "super":
            continue
        if attr in mine:
            continue  # a private member of a class in this module (one unit)
        found.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("package", SCANNED)
def test_no_reaching_into_other_modules_private_fields(package: str) -> None:
    found = [hit for f in sorted((SRC / package).rglob("*.py")) for hit in _foreign_private_accesses(f)]
    assert not found, "private fields read or written across modules:\n" + "\n".join(found)


def test_the_scan_catches_what_it_is_for(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text(
        "def setup(out, inp, w):\n"
        "    out._write_chunk = w\n"
        "    if inp._fast:\n"
        "        inp._sched.submit_input(inp, None)\n"
    )
    hits = {h.split(": ", 1)[1] for h in _foreign_private_accesses_at(bad)}
    assert hits == {"out._write_chunk", "inp._fast", "inp._sched"}


def _foreign_private_accesses_at(path: Path) -> list[str]:
    global SRC
    old, SRC = SRC, path.parent
    try:
        return _foreign_private_accesses(path)
    finally:
        SRC = old


def test_no_method_is_replaced_on_an_instance_or_aliased_into_process_inline() -> None:
    from flowcat.transports import BaseOutputTransport

    # The output's inline entry is its own method, not another class's function.
    assert BaseOutputTransport.process_inline.__qualname__ == "BaseOutputTransport.process_inline"
    for f in sorted(SRC.rglob("*.py")):
        text = f.read_text()
        assert "process_inline = " not in text, f
        assert "._write_chunk = " not in text.replace("self._write_chunk = ", ""), f
