"""Apply Alembic migrations, and check that the database's schema is one this code runs on.

A node of a cluster must never run on a schema it does not know (docs/deploy/upgrade.md):

- an **older** schema is upgraded when ``database.migrate`` allows it (``auto``; ``create``
  only creates the schema in an empty database), else start-up stops naming both revisions and
  ``moorage db upgrade``;
- a **newer** schema (a revision this code does not have: a newer Moorage upgraded it) stops
  start-up, unless every revision since this code's own was marked compatible with the code
  before it (``COMPATIBLE_WITH_PREVIOUS = True`` in the migration module: expand-only).

The newer code cannot tell the older one which revisions it may skip over, so each upgrade
records, beside ``alembic_version``, the oldest revision whose code still runs on the schema
(``schema.schema_compat``, table ``moorage_schema``). It is kept by this module, not by a
revision, because it is derived from the revisions themselves, as ``alembic_version`` is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, select, text

from moorage.metadata.schema import schema_compat

log = logging.getLogger("moorage")

MIGRATIONS = Path(__file__).parent / "migrations"

#: ``auto``: upgrade an older schema at start; ``create``: only create the schema in an empty
#: database; ``never``: always leave the schema to ``moorage db upgrade``.
MigrateMode = Literal["auto", "create", "never"]

# Migrations on PostgreSQL take turns on this transaction-scoped advisory lock (a number that
# names nothing else), so nodes starting together on an empty database do not both create it.
_MIGRATION_LOCK_KEY = 0x6D6F6F72  # "moor"


class SchemaMismatch(Exception):
    """The database's schema is not one this code may run on; the message says what to do."""


def alembic_config(engine: Engine, script_location: Path = MIGRATIONS) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["engine"] = engine
    return config


def lock_for_migration(connection: Connection) -> None:
    """Called by the migration environment inside its transaction, before it reads the
    schema's revision: concurrent migrations on PostgreSQL run one after the other."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})


def upgrade(engine: Engine, revision: str = "head", script_location: Path = MIGRATIONS) -> None:
    """Bring the database schema up to ``revision``; a no-op when it is already there."""
    config = alembic_config(engine, script_location)
    command.upgrade(config, revision)
    script = ScriptDirectory.from_config(config)
    with engine.begin() as connection:
        lock_for_migration(connection)
        current = database_revision(connection)
        if current is None:
            return
        schema_compat.create(connection, checkfirst=True)
        connection.execute(schema_compat.delete())
        connection.execute(
            schema_compat.insert().values(
                revision=current, oldest_code_revision=oldest_compatible(script, current)
            )
        )


def oldest_compatible(script: ScriptDirectory, revision: str) -> str:
    """The oldest revision whose code runs on the schema at ``revision``: walk back while each
    revision says ``COMPATIBLE_WITH_PREVIOUS``."""
    current = script.get_revision(revision)
    while current is not None and getattr(current.module, "COMPATIBLE_WITH_PREVIOUS", False):
        previous = current.down_revision
        if not isinstance(previous, str):  # the first revision, or a merge: stop here
            break
        current = script.get_revision(previous)
    assert current is not None
    return current.revision


def database_revision(connection: Connection) -> str | None:
    """The schema's revision (``alembic_version``), or None for an empty database."""
    return MigrationContext.configure(connection).get_current_revision()


def _recorded_oldest(connection: Connection, revision: str) -> str | None:
    if not connection.dialect.has_table(connection, schema_compat.name):
        return None
    return connection.execute(
        select(schema_compat.c.oldest_code_revision).where(schema_compat.c.revision == revision)
    ).scalar_one_or_none()


@dataclass(frozen=True)
class SchemaState:
    """Where the database's schema is, against what this code knows."""

    current: str | None  # the database's revision; None: an empty database
    head: str  # this code's newest revision
    known: frozenset[str]  # every revision this code has

    @property
    def newer(self) -> bool:
        """The schema is at a revision this code does not have: a newer Moorage upgraded it."""
        return self.current is not None and self.current not in self.known


def schema_state(engine: Engine, script_location: Path = MIGRATIONS) -> SchemaState:
    script = ScriptDirectory.from_config(alembic_config(engine, script_location))
    head = script.get_current_head()
    assert head is not None  # the migrations are linear
    with engine.connect() as connection:
        current = database_revision(connection)
    return SchemaState(current, head, frozenset(r.revision for r in script.walk_revisions()))


def check_schema(engine: Engine, mode: MigrateMode, script_location: Path = MIGRATIONS) -> None:
    """Make sure this code may run on the database, upgrading it if ``mode`` allows.

    Raises :class:`SchemaMismatch` (naming both revisions and what to run) for an older schema
    that ``mode`` does not let it upgrade, and for a newer schema not marked compatible.
    """
    state = schema_state(engine, script_location)
    current, head = state.current, state.head
    if current == head:
        return
    if current is None:
        if mode == "never":
            raise SchemaMismatch(
                f"the database is empty and this Moorage needs schema revision {head}: run "
                "`moorage db upgrade` (with the same configuration) first, or set "
                "database.migrate: create"
            )
        upgrade(engine, script_location=script_location)
        return
    if not state.newer:
        if mode != "auto":
            raise SchemaMismatch(
                f"the database schema is at revision {current} and this Moorage needs {head}: "
                "run `moorage db upgrade` (with the same configuration) once, then start the "
                "nodes; or set database.migrate: auto to upgrade at start"
            )
        upgrade(engine, script_location=script_location)
        return
    with engine.connect() as connection:
        oldest = _recorded_oldest(connection, current)
    if oldest is not None and oldest in state.known:
        # A newer Moorage upgraded with expand-only revisions back to ours: the roll goes on.
        log.warning(
            "database schema is newer than this moorage, and compatible with it",
            extra={"schema_revision": current, "code_revision": head, "oldest_code": oldest},
        )
        return
    raise SchemaMismatch(newer_schema_message(state, oldest))


def newer_schema_message(state: SchemaState, oldest: str | None = None) -> str:
    return (
        f"the database schema is at revision {state.current}, which this Moorage does not know "
        f"(its newest is {state.head}): a newer Moorage upgraded it"
        + (f" and needs code at revision {oldest} or later" if oldest else "")
        + ". Run that newer version; a schema is never downgraded"
    )
