"""API tokens for CI and robots (see moorage.auth.api_tokens): hashed secrets, never clear ones.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_index("ix_api_tokens_username", "api_tokens", ["username"])


def downgrade() -> None:
    op.drop_index("ix_api_tokens_username", "api_tokens")
    op.drop_table("api_tokens")
