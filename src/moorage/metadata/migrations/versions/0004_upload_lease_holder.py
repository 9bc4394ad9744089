"""Upload leases name their holder, so a dead holder's lease is taken over at once.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for existing leases: their holder is unknown, so they run to their deadline.
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("lease_holder", sa.String(255)))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("lease_holder")
