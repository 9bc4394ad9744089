"""Content digests (``algorithm:encoded``) as the OCI image spec defines them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from moorage.errors import ErrorCode, RegistryError

# Registered algorithms and the exact shape of their encoded part (lowercase hex only).
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
DEFAULT_ALGORITHM = "sha256"

_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_HEX = re.compile(r"^[a-f0-9]+$")


@dataclass(frozen=True, slots=True)
class Digest:
    """A validated digest of a registered algorithm; ``str()`` gives its canonical form."""

    algorithm: str
    encoded: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``text``; raise DIGEST_INVALID (400) for anything the spec does not allow.

        Unknown algorithms are refused too: the registry cannot verify what it cannot compute.
        """
        if len(text) > 256 or not _GRAMMAR.fullmatch(text):
            raise RegistryError(ErrorCode.DIGEST_INVALID, "invalid digest format", {"digest": text})
        algorithm, encoded = text.split(":", 1)
        length = ALGORITHMS.get(algorithm)
        if length is None:
            raise RegistryError(
                ErrorCode.DIGEST_INVALID,
                f"unsupported digest algorithm {algorithm!r}",
                {"digest": text, "supported": sorted(ALGORITHMS)},
            )
        if len(encoded) != length or not _HEX.fullmatch(encoded):
            raise RegistryError(
                ErrorCode.DIGEST_INVALID,
                f"{algorithm} digest must be {length} lowercase hex characters",
                {"digest": text},
            )
        return cls(algorithm, encoded)

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str = DEFAULT_ALGORITHM) -> Digest:
        """The digest of ``data`` (for small, in-memory payloads such as manifests)."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())


def is_digest_like(reference: str) -> bool:
    """True when a manifest reference is meant as a digest rather than a tag (it has a colon)."""
    return ":" in reference


def check_algorithm(algorithm: str) -> str:
    """Validate a ``digest-algorithm`` query value."""
    if algorithm not in ALGORITHMS:
        raise RegistryError(
            ErrorCode.DIGEST_INVALID,
            f"unsupported digest algorithm {algorithm!r}",
            {"supported": sorted(ALGORITHMS)},
        )
    return algorithm
