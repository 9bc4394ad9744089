"""Garbage collection: the review queue, orphan sightings, job leases, reverse-lookup indexes.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_repository_blobs_digest", "repository_blobs", ["digest"])
    op.create_index("ix_manifest_blobs_digest", "manifest_blobs", ["digest"])
    op.create_index("ix_manifest_children_child", "manifest_children", ["child_digest"])
    # Existing registries start with an empty queue: the collector's first full sweep finds
    # whatever is already unreferenced (GcStore.enqueue_unreferenced).
    op.create_table(
        "gc_reviews",
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("repository_id", sa.Integer, primary_key=True),
        sa.Column("digest", sa.String(200), primary_key=True),
        sa.Column("touched_at", sa.Float, nullable=False),
    )
    op.create_table(
        "gc_orphans",
        sa.Column("digest", sa.String(200), primary_key=True),
        sa.Column("place", sa.String(1024), primary_key=True),
        sa.Column("seen_at", sa.Float, nullable=False),
    )
    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("until", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_leases")
    op.drop_table("gc_orphans")
    op.drop_table("gc_reviews")
    op.drop_index("ix_manifest_children_child", "manifest_children")
    op.drop_index("ix_manifest_blobs_digest", "manifest_blobs")
    op.drop_index("ix_repository_blobs_digest", "repository_blobs")
