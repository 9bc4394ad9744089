"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None
# True only if code written for the previous revision runs correctly on this schema (expand
# only: new tables, nullable columns, indexes; nothing it reads or writes removed or renamed).
# Nodes still on that code then keep running during a rolling upgrade (docs/deploy/upgrade.md).
COMPATIBLE_WITH_PREVIOUS = False


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
