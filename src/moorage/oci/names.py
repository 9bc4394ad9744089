"""Repository names and tags, with the distribution spec's grammars."""

from __future__ import annotations

import re

from moorage.errors import ErrorCode, RegistryError

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")

# Clients cap "host/name" at 255 characters; the name alone can never be longer.
MAX_NAME_LENGTH = 255


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and bool(_NAME.fullmatch(name))


def parse_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise NAME_INVALID (400)."""
    if len(name) > MAX_NAME_LENGTH:
        raise RegistryError(
            ErrorCode.NAME_INVALID,
            f"repository name longer than {MAX_NAME_LENGTH} characters",
            {"length": len(name)},
        )
    if not _NAME.fullmatch(name):
        raise RegistryError(
            ErrorCode.NAME_INVALID,
            "repository name must match [a-z0-9]+((.|_|__|-+)[a-z0-9]+)*(/...)*",
            {"name": name},
        )
    return name


def is_valid_tag(tag: str) -> bool:
    return bool(_TAG.fullmatch(tag))


def parse_tag(tag: str) -> str:
    """Return ``tag`` if it is valid, else raise MANIFEST_INVALID (400): TAG_INVALID is
    Docker's, not one of the distribution spec's error codes."""
    if not is_valid_tag(tag):
        raise RegistryError(
            ErrorCode.MANIFEST_INVALID,
            "tag must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}",
            {"tag": tag},
        )
    return tag
