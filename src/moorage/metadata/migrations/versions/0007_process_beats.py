"""Serving processes beat a row (a holder on another host can be presumed dead at once), and
upload sessions record which claims' appends count.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None
# Expand-only (a new table, a new nullable column): code of revision 0006 runs on this schema
# unchanged. An upload session that moves from a new node to an old one during the rolling
# upgrade is refused there (its segments have names the old code does not read) and the client
# starts that upload again: see docs/deploy/upgrade.md.
COMPATIBLE_WITH_PREVIOUS = True


def upgrade() -> None:
    op.create_table(
        "process_beats",
        sa.Column("process", sa.String(255), primary_key=True),
        sa.Column("last_beat", sa.Float, nullable=False),
        sa.Column("since", sa.Float, nullable=False),
        sa.Column("stopped", sa.Boolean, nullable=False),
    )
    # NULL for sessions in progress: they were written by code that named segments by their
    # offset alone, and every segment of theirs counts.
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("appends", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("appends")
    op.drop_table("process_beats")
