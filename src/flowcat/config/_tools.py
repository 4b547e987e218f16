"""Tools named in a configuration: direct functions loaded by ``module:function`` or
``file.py:function`` (a file relative to the configuration file)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._schema import ToolConfig

__all__ = ["load_tool", "register_tools"]


def _module(where: str, base_dir: Path) -> Any:
    if where.endswith(".py"):
        path = Path(where)
        path = path if path.is_absolute() else base_dir / path
        if not path.is_file():
            raise ConfigError(f"no tool file at {path}")
        digest = hashlib.sha1(str(path.resolve()).encode(), usedforsecurity=False).hexdigest()[:12]
        name = f"flowcat_config_tools_{path.stem}_{digest}"
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ConfigError(f"cannot load {path} as a Python module")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                sys.modules.pop(name, None)
                raise ConfigError(f"{path}: importing it failed: {exc!r}") from None
        return module
    try:
        return importlib.import_module(where)
    except ImportError as exc:
        raise ConfigError(f"cannot import {where!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a broken module: say so, do not crash the check
        raise ConfigError(f"importing {where!r} failed: {exc!r}") from None


def load_tool(tool: ToolConfig, base_dir: Path) -> Callable[..., Any]:
    """The direct function ``tool`` names, checked (async, describable).

    Raises:
        ConfigError: Not ``where:function``, not found, not an async function, or its
            signature cannot be described as a tool.
    """
    from ..services import function_schema

    where, sep, attr = tool.function.rpartition(":")
    if not sep or not where or not attr:
        raise ConfigError(f"tool {tool.function!r}: expected 'package.module:function' or 'file.py:function'")
    fn = getattr(_module(where, base_dir), attr, None)
    if fn is None:
        raise ConfigError(f"tool {tool.function!r}: {where} has no {attr!r}")
    if not inspect.iscoroutinefunction(fn):
        raise ConfigError(
            f"tool {tool.function!r}: must be an async function 'async def {attr}(params, ...)'"
        )
    function_schema(fn, tool.name)  # raises ConfigError when the signature cannot be described
    return fn  # type: ignore[no-any-return]


def register_tools(service: Any, tools: list[ToolConfig], base_dir: Path) -> None:
    """Register ``tools`` on an LLM (or realtime) service as direct functions."""
    for tool in tools:
        service.register_direct_function(
            load_tool(tool, base_dir),
            name=tool.name,
            cancel_on_interruption=tool.cancel_on_interruption,
            timeout_secs=tool.timeout_secs,
        )
