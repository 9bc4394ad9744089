"""Hashers whose state can be saved in the database and resumed by any worker."""

from __future__ import annotations

from typing import Protocol

import rehashes


class ResumableHasher(Protocol):
    def update(self, data: bytes) -> None: ...

    def finalize(self) -> str: ...

    def serialize(self) -> bytes: ...


_HASHERS = {"sha256": rehashes.PySha256, "sha512": rehashes.PySha512}


def new_hasher(algorithm: str) -> ResumableHasher:
    hasher: ResumableHasher = _HASHERS[algorithm]()
    return hasher


def resume_hasher(algorithm: str, state: bytes) -> ResumableHasher:
    hasher: ResumableHasher = _HASHERS[algorithm].deserialize(state)
    return hasher
