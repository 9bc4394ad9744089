"""Which user names an htpasswd file can hold. Pure logic: the file writer, the CLI and the
cloud-init renderer all check names with it before anything is written."""

from __future__ import annotations

import unicodedata

MAX_USERNAME_LENGTH = 255


def validate_username(user: str) -> None:
    """Raise ValueError unless ``user`` can be written to (and read back from) the file."""
    if not user:
        raise ValueError("username must not be empty")
    if len(user) > MAX_USERNAME_LENGTH:
        raise ValueError(f"username must be at most {MAX_USERNAME_LENGTH} characters")
    if ":" in user:
        raise ValueError("username must not contain ':' (it separates the user from the hash)")
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in user):
        raise ValueError("username must not contain whitespace or control characters")
    if user.startswith("#"):
        raise ValueError("username must not start with '#' (the line would be a comment)")
