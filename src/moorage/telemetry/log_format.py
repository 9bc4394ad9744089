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
from collections.abc import Callable, Mapping
from typing import Any, Literal

Fields = Mapping[str, Any]

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
    """The record's ``extra=`` values, in the order they were given."""
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD}


# The formatted second, kept while it lasts (strftime is the dearest part of a short line),
# and the millisecond endings, made once.
_second: tuple[int, str] = (-1, "")
_MILLISECONDS = tuple(f".{ms:03d}Z" for ms in range(1000))


def timestamp(created: float) -> str:
    """``2026-12-06T00:14:50.123Z`` (UTC, milliseconds) for a Unix time."""
    global _second
    whole = int(created)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return _second[1] + _MILLISECONDS[int((created - whole) * 1000)]


# A JSON string literal, quotes included, non-ASCII escaped (what json.dumps writes; C code).
json_string: Callable[[str], str] = json.encoder.encode_basestring_ascii


def text_string(text: str) -> str:
    """``text`` as a text line's value: as it is, unless quoting is needed to keep it one value
    (a space, a quote, ``=``, a backslash, a line break or nothing at all)."""
    if text and _NEEDS_QUOTES.isdisjoint(text):
        return text
    return json_string(text)


def _text_value(value: Any) -> str:
    return text_string(value if isinstance(value, str) else str(value))


def text_line(created: float, level: str, logger: str, message: str, fields: Fields) -> str:
    """``2026-12-06T00:14:50.123Z info request request_id=... status=200 ...`` (None values
    left out; the logger's name too: the message says what it is)."""
    pairs = [f"{key}={_text_value(value)}" for key, value in fields.items() if value is not None]
    head = f"{timestamp(created)} {level} {message}"
    return f"{head} {' '.join(pairs)}" if pairs else head


def json_line(created: float, level: str, logger: str, message: str, fields: Fields) -> str:
    """``{"time": ..., "level": "info", "logger": ..., "message": "request", ...fields}``"""
    document: dict[str, Any] = {
        "time": timestamp(created),
        "level": level,
        "logger": logger,
        "message": message,
    }
    document.update((key, value) for key, value in fields.items() if value is not None)
    return json.dumps(document, default=str, separators=(",", ":"))


LineFormat = Callable[[float, str, str, str, Fields], str]
LINE_FORMATS: dict[str, LineFormat] = {"text": text_line, "json": json_line}


class LineFormatter(logging.Formatter):
    """A logging Formatter for either line format; a traceback goes into the line (JSON: the
    ``traceback`` field) or, in text, on the lines after it."""

    def __init__(self, format: str) -> None:
        super().__init__()
        self._line = LINE_FORMATS[format]
        self._json = format == "json"

    def format(self, record: logging.LogRecord) -> str:
        fields = fields_of(record)
        traceback = self.formatException(record.exc_info) if record.exc_info else None
        if traceback is not None and self._json:
            fields["traceback"] = traceback
        level = record.levelname.lower()
        line = self._line(record.created, level, record.name, record.getMessage(), fields)
        return line if traceback is None or self._json else f"{line}\n{traceback}"


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
    handler.setFormatter(LineFormatter(format))
    logger.addHandler(handler)
    logger.setLevel(_LEVELS[level])
    # Records still propagate: granian configures only its own loggers, so the root has no
    # handler under `moorage serve` and nothing is written twice, while a host program's (or
    # pytest's) root handlers still see them.
