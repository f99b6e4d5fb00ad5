"""Log lines for operators: one per lifecycle event, as text or JSON lines."""

from __future__ import annotations

import json
import logging
import os
import time


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, pid, message (and exc when present)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": os.getpid(),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    """``2026-12-01 22:18:08,123+0900 INFO [pid] logger: message``: local time with its UTC
    offset (a line read in another zone, or beside JSON lines in UTC, is unambiguous)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return super().formatTime(record, datefmt) + time.strftime("%z", self.converter(record.created))


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Send heirloom's logs to stderr in ``fmt`` (``text`` or ``json``), replacing handlers."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def writes_json() -> bool:
    """Whether stderr carries JSON log lines (``--log-format json``): then a command's fatal
    error must be one too, or the log collector cannot read why the daemon did not start."""
    return any(isinstance(handler.formatter, JsonFormatter) for handler in logging.getLogger().handlers)
