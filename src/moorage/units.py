"""Byte counts as people read them. Pure, no I/O."""

from __future__ import annotations

_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_DECIMAL = ("B", "KB", "MB", "GB", "TB", "PB")


def human_bytes(size: int, *, decimal: bool = False) -> str:
    """``1536`` -> ``1.5 KiB`` (binary units, for operators' output), or with ``decimal``
    ``1.5 KB`` (as podman and docker show image sizes); one decimal, exact below 1 unit."""
    units, step = (_DECIMAL, 1000) if decimal else (_BINARY, 1024)
    value = float(size)
    for unit in units:
        if value < step or unit == units[-1]:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= step
    raise AssertionError("unreachable")
