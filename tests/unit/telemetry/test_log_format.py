"""The two line formats: values that could break a text line are quoted; JSON is one object;
a traceback stays in the record's line (JSON) or follows it (text)."""

from __future__ import annotations

import json
import logging
import sys

from moorage.telemetry.log_format import LineFormatter, json_line, text_line, timestamp

FIELDS = {"user": "a b", "status": 200, "empty": "", "quote": 'x"y', "none": None, "nl": "a\nb"}


def test_text_quotes_what_would_be_ambiguous_and_drops_none() -> None:
    line = text_line(0.5, "info", "moorage.request", "request", FIELDS)
    assert line == (
        '1970-01-01T00:00:00.500Z info request user="a b" status=200 empty="" '
        'quote="x\\"y" nl="a\\nb"'
    )
    assert "\n" not in line


def test_json_is_one_object_with_the_fields() -> None:
    line = json_line(1.0, "warning", "moorage.api", "storage unavailable", FIELDS)
    assert "\n" not in line
    document = json.loads(line)
    assert document["time"] == "1970-01-01T00:00:01.000Z"
    assert (document["level"], document["logger"], document["message"]) == (
        "warning", "moorage.api", "storage unavailable",
    )  # fmt: skip
    assert document["nl"] == "a\nb" and "none" not in document


def test_timestamps_are_utc_milliseconds() -> None:
    assert timestamp(1_765_000_000.1234) == "2025-12-06T05:46:40.123Z"


def make_record() -> logging.LogRecord:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("moorage.api").makeRecord(
            "moorage.api", logging.ERROR, __file__, 1, "unhandled error", (), None,
            extra={"request_id": "abc"},
        )  # fmt: skip
        record.exc_info = sys.exc_info()
        return record


def test_a_traceback_stays_with_its_record() -> None:
    text = LineFormatter("text").format(make_record()).splitlines()
    assert text[0].endswith("error unhandled error request_id=abc")
    assert text[-1] == "ValueError: boom"
    document = json.loads(LineFormatter("json").format(make_record()))
    assert document["request_id"] == "abc"
    assert document["traceback"].endswith("ValueError: boom")
