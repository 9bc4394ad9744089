"""Non-negative decimal numbers as HTTP and the distribution spec write them: ASCII digits only.

``str.isdigit`` and ``int`` also accept Unicode digits ('²', '٣', full-width digits), spaces
and underscores, none of which is a number on the wire; a value that passed ``isdigit`` could
still make ``int`` raise. This is the one place such values are parsed.
"""

from __future__ import annotations

import re

_DECIMAL = re.compile(r"[0-9]+", re.ASCII)


def parse_decimal(text: str, max_digits: int = 19) -> int | None:
    """``text`` as a non-negative int, or None unless it is 1..``max_digits`` ASCII digits."""
    if len(text) > max_digits or not _DECIMAL.fullmatch(text):
        return None
    return int(text)
