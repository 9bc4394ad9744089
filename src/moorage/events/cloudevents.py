"""The events Moorage emits, as CloudEvents 1.0 in the structured JSON mode.

Pure: the outbox builds the body once, in the change's transaction, and every delivery (and
redelivery) of it sends those exact bytes, so a receiver can deduplicate on ``id``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

CONTENT_TYPE = "application/cloudevents+json"

MANIFEST_PUSHED = "dev.moorage.manifest.pushed"
MANIFEST_DELETED = "dev.moorage.manifest.deleted"
TAG_DELETED = "dev.moorage.tag.deleted"
REPOSITORY_DELETED = "dev.moorage.repository.deleted"
MANIFEST_PULLED = "dev.moorage.manifest.pulled"

TYPES = (MANIFEST_PUSHED, MANIFEST_DELETED, TAG_DELETED, REPOSITORY_DELETED, MANIFEST_PULLED)


def timestamp(moment: float) -> str:
    """RFC 3339 in UTC with milliseconds, as CloudEvents' ``time`` wants it."""
    return (
        datetime.fromtimestamp(moment, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def envelope(
    event_id: str,
    event_type: str,
    source: str,
    subject: str,
    moment: float,
    data: dict[str, Any],
) -> str:
    """The JSON body of one event: the CloudEvents context attributes, then ``data``."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": event_type,
            "subject": subject,
            "time": timestamp(moment),
            "datacontenttype": "application/json",
            "data": data,
        },
        separators=(",", ":"),
    )
