"""Upload ids that carry their own session, so that starting an upload writes nothing.

``POST /v2/<name>/blobs/uploads/`` answers with an id that holds what a new session is: when it
was opened and with which digest algorithm, bound to the repository by an HMAC. The first PATCH
or PUT turns it into a database row (or, for a PUT that brings the whole blob, straight into the
blob and an ended-session marker in the same transaction). Until then there is nothing to lose
in a crash and nothing to expire: the id itself stops being accepted after the upload expiry.

Layout, 64 lower-case hex characters (the uploads table's id column, a file name, an S3 key)::

    32 random | 8 opening time (unix seconds) | 2 algorithm | 22 HMAC-SHA256 (88 bits)

The key is derived from the token signing key, which every worker and every node already shares,
so any of them accepts an id another one issued.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass

from moorage.oci.digest import ALGORITHMS
from moorage.randomness import random_hex

_KEY_CONTEXT = b"moorage upload session id v1"
_SIGNED = re.compile(r"([a-f0-9]{32})([a-f0-9]{8})([a-f0-9]{2})([a-f0-9]{22})")
_ALGORITHMS = sorted(ALGORITHMS)  # an algorithm's index is its place in this list


def derive_key(material: bytes) -> bytes:
    """A key for upload ids alone from ``material`` (the signing key's bytes)."""
    return hmac.new(_KEY_CONTEXT, material, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Opened:
    """What a signed id says about its session."""

    created_at: float
    algorithm: str


class UploadIds:
    def __init__(self, key: bytes | None = None) -> None:
        """``key``: None draws one for this process (tests, a single-process server)."""
        self._key = key if key is not None else os.urandom(32)

    def _mac(self, head: str, repository: str) -> str:
        message = f"{head}\0{repository}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:22]

    def issue(self, repository: str, algorithm: str, now: float) -> str:
        head = f"{random_hex(16)}{int(now) & 0xFFFFFFFF:08x}{_ALGORITHMS.index(algorithm):02x}"
        return head + self._mac(head, repository)

    def check(self, upload_id: str, repository: str) -> Opened | None:
        """The session ``upload_id`` opened in ``repository``; None if we did not issue it for
        that repository (a forged, altered or foreign id, or an id of the older random form)."""
        match = _SIGNED.fullmatch(upload_id)
        if match is None:
            return None
        head = upload_id[:42]
        if not hmac.compare_digest(match.group(4), self._mac(head, repository)):
            return None
        index = int(match.group(3), 16)
        if index >= len(_ALGORITHMS):
            return None
        return Opened(float(int(match.group(2), 16)), _ALGORITHMS[index])
