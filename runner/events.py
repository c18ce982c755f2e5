"""Structured log events: one per lifecycle transition, as ``key=value`` text or JSON lines.

Events carry ids, names, attempts, durations and error classes; never payload values.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def emit(logger: logging.Logger, level: int, action: str, **fields: Any) -> None:
    """Log one event: ``action=<action> k=v ...``; the fields travel on the record for JSON."""
    if not logger.isEnabledFor(level):
        return
    text = " ".join([f"action={action}", *(f"{k}={_text(v)}" for k, v in fields.items())])
    logger.log(level, text, extra={"runner_event": {"action": action, **fields}})


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    return repr(text) if (" " in text or not text) else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, action and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        event = getattr(record, "runner_event", None)
        if isinstance(event, dict):
            data.update(event)
        else:
            data["message"] = record.getMessage()
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure(fmt: str, level: str) -> None:
    """Log to stderr in ``console`` (human) or ``json`` format."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)  # libraries: warnings and errors only
    logging.getLogger("runner").setLevel(level.upper())
