"""How numbers and times read on a page: sizes in human units, dates relative to now with the
exact time kept for a tooltip. Pure functions, registered as template filters."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from moorage.units import human_bytes

# (seconds in the unit, its name); the first whose count is at least 1 is used.
_SPANS = (
    (365 * 86400, "year"),
    (30 * 86400, "month"),
    (86400, "day"),
    (3600, "hour"),
    (60, "minute"),
)


def human_size(size: int) -> str:
    """Sizes on pages: decimal units, as podman and docker show image sizes."""
    return human_bytes(size, decimal=True)


def exact_time(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_time(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def relative_time(timestamp: float | None, now: float | None = None) -> str:
    """``3 hours ago``; ``just now`` under a minute; a time ahead of ``now`` reads as now."""
    if timestamp is None:
        return "never"
    elapsed = max(0.0, (time.time() if now is None else now) - timestamp)
    for seconds, name in _SPANS:
        count = int(elapsed // seconds)
        if count >= 1:
            return f"{count} {name}{'s' if count != 1 else ''} ago"
    return "just now"


def short_digest(digest: str) -> str:
    """``sha256:0123456789ab`` - enough to tell digests apart on a page."""
    algorithm, _, hex_part = digest.partition(":")
    return f"{algorithm}:{hex_part[:12]}" if hex_part else digest[:19]


def percent(fraction: float | None) -> str:
    """``0.423`` -> ``42%``, rounded down so that ``100%`` means at the limit, not nearly;
    usage past a lowered quota shows as such (``130%``)."""
    if fraction is None:
        return ""
    return f"{math.floor(fraction * 100)}%"
