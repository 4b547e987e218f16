"""Server logging: a call id on every line logged inside a call, and a JSON line format.

The call id lives in a :mod:`contextvars` variable set once when a call starts: the
call's tasks inherit it, and :class:`CallIdFilter` copies it onto each record as it is
logged (no per-frame work; a record costs one ``ContextVar.get``).
``--log-format json`` writes one JSON object per line (:class:`JsonFormatter`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import time
import uuid

__all__ = ["CallIdFilter", "JsonFormatter", "call_id", "configure_logging", "new_call_id"]

call_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("flowcat_call_id", default=None)
"""The id of the call whose code is running (None outside calls)."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(call_tag)s: %(message)s"


def new_call_id() -> str:
    """Set a fresh call id for the running context (the call's task and its children); returns it."""
    cid = uuid.uuid4().hex[:12]
    call_id.set(cid)
    return cid


class CallIdFilter(logging.Filter):
    """Adds ``call_id`` (and ``call_tag``: `` [call <id>]`` or empty) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        cid = call_id.get()
        record.call_id = cid
        record.call_tag = f" [call {cid}]" if cid else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, call_id (when in a call), pid, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": os.getpid(),
        }
        cid = getattr(record, "call_id", None)
        if cid:
            out["call_id"] = cid
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: int, fmt: str = "text") -> None:
    """Set up the root logger of a server process: ``fmt`` ``text`` or ``json``, call ids on
    (replaces ``logging.basicConfig``'s handler; handlers of others are left as they are)."""
    root = logging.getLogger()
    plain = [h for h in root.handlers if type(h) is logging.StreamHandler]  # basicConfig's
    if root.handlers and not plain:
        return  # the embedding program (or a test's log capture) owns logging: leave it alone
    for old in plain:
        root.removeHandler(old)
    handler = logging.StreamHandler()
    handler.addFilter(CallIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
