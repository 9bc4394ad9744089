"""The log's two formats, and where Moorage's records go.

Every record under the ``moorage`` logger is one line: a static lower-case message, with its
values in fields (``extra=``). ``text`` is for a terminal (``key=value``, quoted when needed);
``json`` is one object per line for a collector. A traceback is part of the record's line
(JSON: the ``traceback`` field; text: the lines that follow), never of a response.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Literal

# What every LogRecord has; anything else on a record was given in ``extra=`` and is a field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}
_LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "notset": logging.DEBUG,  # "no threshold": everything we log
}
# Characters that would make a text value ambiguous (or break the line) unless quoted.
_NEEDS_QUOTES = frozenset(' "=\\\n\r\t')


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The record's ``extra=`` values, in the order they were given; None values left out."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and value is not None
    }


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if not text or any(char in _NEEDS_QUOTES for char in text):
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    """``2026-12-06T00:14:50.123Z info request request_id=... status=200 ...``"""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname.lower(), record.getMessage()]
        parts.extend(f"{key}={_text_value(value)}" for key, value in fields_of(record).items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """``{"time": ..., "level": "info", "logger": ..., "message": "request", ...fields}``"""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        document.update(fields_of(record))
        if record.exc_info:
            document["traceback"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str, separators=(",", ":"))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at each record, not the one it was made with (a
    test's capture, or a program that redirects it, would leave a closed stream behind). Its
    class also marks the handler this module installed, so configuring again replaces it."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass  # StreamHandler.__init__ assigns one; sys.stderr is always used instead


def configure_logging(level: str, format: Literal["text", "json"]) -> None:
    """Send the ``moorage`` loggers' records at ``level`` and above to stderr, one per line.
    Idempotent: each app (and each test) that calls it replaces the previous set-up."""
    logger = logging.getLogger("moorage")
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(_LEVELS[level])
    # Records still propagate: granian configures only its own loggers, so the root has no
    # handler under `moorage serve` and nothing is written twice, while a host program's (or
    # pytest's) root handlers still see them.
