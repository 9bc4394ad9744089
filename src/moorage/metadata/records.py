"""Plain value objects that cross the MetadataStore port."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class BlobRecord:
    """A stored blob: its size and, if the blob store kept it in place, its location."""

    size: int
    location: str | None = None


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    """A stored manifest: its exact bytes and what the registry learned from them."""

    digest: str
    media_type: str
    payload: bytes
    artifact_type: str | None = None
    subject: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.payload)


@dataclass(frozen=True, slots=True)
class ManifestReferences:
    """What a manifest points at; kept so garbage collection is a query."""

    blobs: tuple[str, ...] = ()
    manifests: tuple[str, ...] = ()
    # Of ``blobs``, those with ``urls`` (foreign, non-distributable layers): referenced but
    # served from elsewhere, so the registry need not have them.
    foreign_blobs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReferrerRecord:
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str]


# The offset of an ended session's row: kept (until the upload expiry) so that its id, which
# still carries a valid signature (services/upload_ids.py), is not taken for a new session.
ENDED_OFFSET = -1


@dataclass(frozen=True, slots=True)
class UploadSession:
    """An upload in progress. ``hash_state`` is the serialised hasher after ``offset`` bytes.
    ``appends``: the claims whose appends were recorded (a store that keeps appends apart
    reads only theirs); None for a session begun before they were recorded (all count)."""

    id: str
    repository: str
    algorithm: str
    offset: int
    hash_state: bytes
    created_at: float
    updated_at: float
    appends: tuple[str, ...] | None = ()

    @property
    def ended(self) -> bool:
        """Completed, cancelled or discarded: the id answers BLOB_UPLOAD_UNKNOWN."""
        return self.offset == ENDED_OFFSET


@dataclass(frozen=True, slots=True)
class Inventory:
    """How much the registry holds: counts of rows, and the bytes of every stored blob."""

    repositories: int
    manifests: int
    tags: int
    upload_sessions: int
    blob_bytes: int


@dataclass(frozen=True, slots=True)
class Beat:
    """A serving process's row (services/liveness.py): its last beat and the start of its
    unbroken run of beats (database clock), and whether it shut down cleanly."""

    last: float
    since: float
    stopped: bool


@dataclass(frozen=True, slots=True)
class Sighting:
    """What the database says, at one instant (``now``, its own clock), about a holder and
    about the process judging it."""

    now: float
    holder: Beat | None
    judge: Beat | None
