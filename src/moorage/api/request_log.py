"""The request log: one line per request (fields: docs/operations.md).

What it never holds: a header (Authorization included), a query string (a pre-signed URL's
signature, a token request's password) or a path (the route template and the validated
repository name stand for it).

The lines have the format of every other ``moorage`` record (:mod:`moorage.telemetry.log_format`)
but are built here, each with one f-string: the generic path (a LogRecord, the caller's frame,
a handler lock, a dict of fields, ``json.dumps``) cost more than the rest of a manifest GET.
Every text value a client can choose (user, repository, client address, method, request id)
is still escaped as the generic formats escape it, so none can add a field or a line; the
escaped forms of the values that repeat (routes, users, repositories, addresses) are cached.
Lines go out in batches (:mod:`moorage.telemetry.line_writer`). The level is checked once,
when the app is built.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from moorage.api.observe import RequestRecord
from moorage.telemetry.line_writer import LineWriter
from moorage.telemetry.log_format import json_string, text_string, timestamp

LOGGER = "moorage.request"
# Distinct values whose escaped form is kept (a few hundred users, repositories and addresses
# are common; past this the least recently seen are escaped again when they come back).
CACHED_VALUES = 4096


def enabled() -> bool:
    """Whether the configured level lets request lines through (they are info)."""
    return logging.getLogger(LOGGER).isEnabledFor(logging.INFO)


def _milliseconds(seconds: float) -> float:
    """To the microsecond (as ``round(seconds * 1000, 3)``, in half the time)."""
    return round(seconds * 1e6) / 1000


def _text_line(record: RequestRecord, value: Callable[[str], str]) -> str:
    client, user, repository, error = record.client, record.user, record.repository, record.error
    return (
        f"{timestamp(record.started)} info request request_id={text_string(record.request_id)}"
        f"{'' if client is None else ' client=' + value(client)}"
        f"{'' if user is None else ' user=' + value(user)}"
        f" method={value(record.method)} route={value(record.route)}"
        f"{'' if repository is None else ' repository=' + value(repository)}"
        f" status={record.status} bytes_in={record.bytes_in} bytes_out={record.bytes_out}"
        f" duration_ms={_milliseconds(record.seconds)}"
        f"{'' if error is None else ' error=' + value(error)}"
    )


# A JSON line's optional members, up to the value.
_CLIENT, _USER, _REPOSITORY, _ERROR = ',"client":', ',"user":', ',"repository":', ',"error":'


def _json_line(record: RequestRecord, value: Callable[[str], str]) -> str:
    client, user, repository, error = record.client, record.user, record.repository, record.error
    return (
        f'{{"time":"{timestamp(record.started)}","level":"info","logger":"{LOGGER}",'
        f'"message":"request","request_id":{json_string(record.request_id)}'
        f"{'' if client is None else _CLIENT + value(client)}"
        f"{'' if user is None else _USER + value(user)}"
        f',"method":{value(record.method)},"route":{value(record.route)}'
        f"{'' if repository is None else _REPOSITORY + value(repository)}"
        f',"status":{record.status},"bytes_in":{record.bytes_in},'
        f'"bytes_out":{record.bytes_out},"duration_ms":{_milliseconds(record.seconds)}'
        f"{'' if error is None else _ERROR + value(error)}}}"
    )


_LINES = {"text": (_text_line, text_string), "json": (_json_line, json_string)}


class RequestLog:
    """A recorder writing each request's line in ``format`` (``text`` or ``json``)."""

    def __init__(self, format: str) -> None:
        line, escape = _LINES[format]
        # The record's line (no newline). The cache is per log, so that a test's values do
        # not outlive it.
        self.line: Callable[[RequestRecord], str]
        self.line = functools.partial(line, value=functools.lru_cache(CACHED_VALUES)(escape))
        self._writer = LineWriter(self.line)

    def __call__(self, record: RequestRecord) -> None:
        self._writer.write(record)

    def flush(self) -> None:
        """Write the lines still gathered (at shutdown)."""
        self._writer.flush()
