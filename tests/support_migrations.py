"""A newer Moorage's migrations, for tests of what an older node does with its schema."""

from __future__ import annotations

import shutil
from pathlib import Path

from alembic.script import ScriptDirectory

from moorage.metadata.migrate import MIGRATIONS

_SCRIPT = ScriptDirectory(str(MIGRATIONS))
#: This code's newest revision, and the one before it.
HEAD: str = _SCRIPT.get_current_head() or ""
OLDER: str = str(_SCRIPT.get_revision(HEAD).down_revision)
#: The revisions :func:`newer_moorage` adds, in order.
NEWER = [f"{int(HEAD) + n:04d}" for n in (1, 2)]


def newer_moorage(tmp_path: Path, *compatible: bool) -> Path:
    """The migrations of a newer Moorage: ours plus one revision per flag, each saying
    whether the code before it still runs on its schema."""
    location = tmp_path / "newer-migrations"
    shutil.copytree(MIGRATIONS, location, ignore=shutil.ignore_patterns("__pycache__"))
    previous = HEAD
    for number, flag in enumerate(compatible, start=int(HEAD) + 1):
        revision = f"{number:04d}"
        (location / "versions" / f"{revision}_test.py").write_text(
            f'''"""A test revision."""
import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{previous}"
branch_labels = None
depends_on = None
COMPATIBLE_WITH_PREVIOUS = {flag}


def upgrade() -> None:
    op.create_table("t_{revision}", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("t_{revision}")
'''
        )
        previous = revision
    return location
