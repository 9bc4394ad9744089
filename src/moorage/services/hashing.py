"""Hashers whose state can be saved in the database and resumed by any worker.

New sessions hash with OpenSSL's libcrypto (services/sha_libcrypto.py), which releases the GIL
while it hashes, so receiving a body overlaps with hashing it. States saved by earlier releases
with ``rehashes`` (uploads in flight across an upgrade) still resume, with ``rehashes``: the
two are told apart by the libcrypto format's tag and length (a ``rehashes`` state is its fixed
104 or 208 bytes, with no tag)."""

from __future__ import annotations

import functools
from typing import Protocol

import rehashes

from moorage.services import sha_libcrypto
from moorage.services.sha_libcrypto import Libcrypto, LibcryptoUnavailable

__all__ = ["LibcryptoUnavailable", "ResumableHasher", "check", "new_hasher", "resume_hasher"]


class ResumableHasher(Protocol):
    def update(self, data: bytes) -> None: ...

    def finalize(self) -> str: ...

    def serialize(self) -> bytes: ...


_REHASHES = {"sha256": rehashes.PySha256, "sha512": rehashes.PySha512}


@functools.cache
def _libcrypto() -> Libcrypto:
    return sha_libcrypto.load()


def check() -> None:
    """Load libcrypto now: raises LibcryptoUnavailable, naming why, if it cannot be used.
    No fallback to ``rehashes`` for new sessions: a node that fell back would save states the
    other nodes read, but could not resume theirs, and would quietly hash at half the speed."""
    _libcrypto()


def new_hasher(algorithm: str) -> ResumableHasher:
    return _libcrypto().new(algorithm)


def resume_hasher(algorithm: str, state: bytes) -> ResumableHasher:
    if state.startswith(sha_libcrypto.TAG):
        return _libcrypto().resume(algorithm, state)
    hasher: ResumableHasher = _REHASHES[algorithm].deserialize(state)
    return hasher
