"""Where a blob's bytes are when the store kept them in place (see moorage.storage.port).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL, for every existing row too: the blob is at its digest's own place.
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("location", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.drop_column("location")
