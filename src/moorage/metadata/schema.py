"""The database schema (SQLAlchemy Core), one definition for SQLite and PostgreSQL.

Alembic migrations in ``migrations/versions`` create and evolve exactly these tables.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

DIGEST = String(200)

repositories = Table(
    "repositories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

blobs = Table(
    "blobs",
    metadata,
    Column("digest", DIGEST, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    # Set when the blob store published the bytes in place (BlobStore.commit_upload); NULL
    # when they are at the digest's own place.
    Column("location", Text),
)

repository_blobs = Table(
    "repository_blobs",
    metadata,
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("digest", DIGEST, ForeignKey("blobs.digest"), primary_key=True),
    Column("created_at", Float, nullable=False),
)

manifests = Table(
    "manifests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False
    ),
    Column("digest", DIGEST, nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("artifact_type", String(255)),
    Column("subject_digest", DIGEST),
    Column("annotations", Text),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("repository_id", "digest", name="uq_manifests_repository_digest"),
    Index("ix_manifests_subject", "repository_id", "subject_digest"),
)

# Manifest -> blob and manifest -> child manifest edges: garbage collection's reference graph.
manifest_blobs = Table(
    "manifest_blobs",
    metadata,
    Column(
        "manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("digest", DIGEST, primary_key=True),
)

manifest_children = Table(
    "manifest_children",
    metadata,
    Column(
        "manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("child_digest", DIGEST, primary_key=True),
)

tags = Table(
    "tags",
    metadata,
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("name", String(128), primary_key=True),
    Column("manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"), nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_tags_manifest", "manifest_id"),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("repository", String(255), nullable=False),
    Column("algorithm", String(16), nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("hash_state", LargeBinary, nullable=False),
    Column("lease_until", Float),
    # The process holding the lease (services/lease_holders.py), so that a dead holder's lease
    # can be taken over before its deadline.
    Column("lease_holder", String(255)),
    # The claims whose appends were recorded, space-separated (NULL: a session begun before
    # 0007): a store that keeps each append apart reads only these (storage/segments.py).
    Column("appends", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_uploads_updated_at", "updated_at"),
)

# --- garbage collection (docs/gc.md) -------------------------------------------------------
# Reverse lookups the collector makes for every candidate: who still links, references or
# contains this digest.
Index("ix_repository_blobs_digest", repository_blobs.c.digest)
Index("ix_manifest_blobs_digest", manifest_blobs.c.digest)
Index("ix_manifest_children_child", manifest_children.c.child_digest)

# The review queue: something that may have lost its last reference. Written in the same
# transaction as the change that may have made it garbage; the collector re-checks each one
# under row locks once it is due. ``kind`` is "manifest" or "link" (a repository's link to a
# blob; repository_id set) or "blob" (repository_id 0). ``touched_at`` is the last event that
# could have told a client the thing exists (its link, upload, mount, a HEAD): the grace runs
# from there, and is applied by the collector, so `moorage gc --grace` can change it.
gc_reviews = Table(
    "gc_reviews",
    metadata,
    Column("kind", String(8), primary_key=True),
    Column("repository_id", Integer, primary_key=True),
    Column("digest", DIGEST, primary_key=True),
    Column("touched_at", Float, nullable=False),
)

# Objects in the blob store that no blob row knows, as the last full sweep found them; each is
# deleted once it has stayed unknown for the grace period. ``place`` is the location, or ""
# for the digest's own place (a primary key column cannot be NULL).
gc_orphans = Table(
    "gc_orphans",
    metadata,
    Column("digest", DIGEST, primary_key=True),
    Column("place", String(1024), primary_key=True),
    Column("seen_at", Float, nullable=False),
)

# Named leases so that one holder at a time runs a background job across worker processes and
# nodes (the collector; later webhook delivery and upload expiry). ``until`` is when an
# unrenewed lease may be taken over.
# One row per serving process (services/liveness.py): its last beat and the start of its
# unbroken run of beats, by the database's clock, and whether it shut down cleanly.
process_beats = Table(
    "process_beats",
    metadata,
    Column("process", String(255), primary_key=True),
    Column("last_beat", Float, nullable=False),
    Column("since", Float, nullable=False),
    Column("stopped", Boolean, nullable=False),
)

job_leases = Table(
    "job_leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("until", Float, nullable=False),
)

# Beside alembic_version, and like it kept by metadata/migrate.py rather than by a revision: the
# schema's revision and the oldest revision whose code still runs on it (each migration since
# then says COMPATIBLE_WITH_PREVIOUS), so an older node can tell a newer schema it may use from
# one it must refuse. One row.
schema_compat = Table(
    "moorage_schema",
    metadata,
    Column("revision", String(64), primary_key=True),
    Column("oldest_code_revision", String(64), nullable=False),
)

# The events outbox (docs/operations.md#events-and-webhooks): one row per event, written in the
# transaction of the change it reports, so an event exists if and only if its change committed.
# ``body`` is the CloudEvent exactly as every endpoint receives it (a redelivery sends the same
# bytes and id). ``dispatched`` is 0 until the delivery worker has made its deliveries below.
events = Table(
    "events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("repository", String(255), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    Column("dispatched", Integer, nullable=False),
)
Index("ix_events_dispatched", events.c.dispatched, events.c.seq)

# One row per event and endpoint that wants it (``endpoint`` is the endpoint's name): each
# endpoint has its own retries, so one that is down never holds the others back. ``state`` is
# "pending" (due at ``next_at``), "delivered" or "failed" (gave up; `moorage events redeliver`).
event_deliveries = Table(
    "event_deliveries",
    metadata,
    Column("event_seq", Integer, primary_key=True),
    Column("endpoint", String(255), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_at", Float, nullable=False),
    Column("last_error", String(255), nullable=True),
    Column("updated_at", Float, nullable=False),
)
Index(
    "ix_event_deliveries_due",
    event_deliveries.c.endpoint,
    event_deliveries.c.state,
    event_deliveries.c.next_at,
)

# The audit trail: who did what (a change, or a refusal). ``count`` > 1 is a run of identical
# refusals (same action, user, client, repository) coalesced into one row; see moorage.audit.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("action", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("user", String(255), nullable=True),
    Column("client", String(64), nullable=True),
    Column("repository", String(255), nullable=True),
    Column("reference", String(255), nullable=True),
    Column("status", Integer, nullable=True),
    Column("request_id", String(128), nullable=True),
    Column("count", Integer, nullable=False),
)
Index("ix_audit_log_at", audit_log.c.at)
