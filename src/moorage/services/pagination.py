"""Page sizes for tags, catalog and referrers: bounded, never an unbounded allocation."""

from __future__ import annotations

from dataclasses import dataclass

from moorage.errors import ErrorCode, RegistryError
from moorage.oci.numbers import parse_decimal


@dataclass(frozen=True, slots=True)
class PageLimits:
    default: int
    maximum: int

    def resolve(self, requested: str | None) -> int:
        """The page size for a raw ``n`` query value; 400 PAGINATION_NUMBER_INVALID if bad."""
        if requested is None or requested == "":
            return min(self.default, self.maximum)
        n = parse_decimal(requested, max_digits=9)
        if n is None:
            raise RegistryError(
                ErrorCode.PAGINATION_NUMBER_INVALID,
                f"n must be an integer between 0 and {self.maximum}",
                {"n": requested[:32]},
            )
        if n > self.maximum:
            raise RegistryError(
                ErrorCode.PAGINATION_NUMBER_INVALID,
                f"n must not exceed {self.maximum}",
                {"n": n, "maximum": self.maximum},
            )
        return n


@dataclass(frozen=True, slots=True)
class Page:
    items: list[str]
    # The cursor for the next page (its ``last``), or None when this page is the end.
    next_last: str | None


def page_of(rows: list[str], n: int) -> Page:
    """Cut a result fetched with ``limit=n+1`` into a page and the next cursor."""
    if len(rows) > n:
        items = rows[:n]
        return Page(items, items[-1] if items else None)
    return Page(rows, None)
