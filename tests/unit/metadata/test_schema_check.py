"""A node runs only on a schema it knows: older ones are upgraded as ``database.migrate``
allows, newer ones are refused unless marked compatible (expand-only), on SQLite and
PostgreSQL. A newer Moorage is simulated by a copy of the migrations with revisions added."""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, inspect

from moorage.metadata.migrate import (
    MigrateMode,
    SchemaMismatch,
    alembic_config,
    check_schema,
    schema_state,
    upgrade,
)
from moorage.metadata.sql import make_engine
from tests.support_migrations import HEAD, NEWER, OLDER, newer_moorage
from tests.support_pg import PostgresServer


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with contextlib.ExitStack() as stack:
        if request.param == "postgres":
            url = stack.enter_context(request.getfixturevalue("postgres").fresh_database())
        else:
            url = f"sqlite:///{tmp_path / 'm.db'}"
        engine = make_engine(url)
        stack.callback(engine.dispose)
        yield engine


def test_our_own_schema_passes_in_every_mode(engine: Engine) -> None:
    upgrade(engine)
    for mode in ("auto", "create", "never"):
        check_schema(engine, mode)


@pytest.mark.parametrize("mode", ["auto", "create"])
def test_an_empty_database_is_created_unless_never(engine: Engine, mode: MigrateMode) -> None:
    check_schema(engine, mode)
    assert schema_state(engine).current == HEAD


def test_never_refuses_an_empty_database_and_says_what_to_run(engine: Engine) -> None:
    with pytest.raises(SchemaMismatch, match=rf"needs schema revision {HEAD}.*moorage db upgrade"):
        check_schema(engine, "never")
    assert schema_state(engine).current is None


@pytest.mark.parametrize("mode", ["create", "never"])
def test_an_older_schema_is_refused_naming_both_revisions(
    engine: Engine, mode: MigrateMode
) -> None:
    upgrade(engine, OLDER)
    with pytest.raises(SchemaMismatch) as info:
        check_schema(engine, mode)
    message = str(info.value)
    assert f"at revision {OLDER}" in message
    assert f"needs {HEAD}" in message
    assert "moorage db upgrade" in message
    assert schema_state(engine).current == OLDER  # untouched


def test_auto_upgrades_an_older_schema(engine: Engine) -> None:
    upgrade(engine, OLDER)
    check_schema(engine, "auto")
    assert schema_state(engine).current == HEAD


@pytest.mark.parametrize("mode", ["auto", "create", "never"])
def test_a_newer_schema_is_refused_in_every_mode(
    engine: Engine, tmp_path: Path, mode: MigrateMode
) -> None:
    upgrade(engine, script_location=newer_moorage(tmp_path, False))
    with pytest.raises(SchemaMismatch) as info:
        check_schema(engine, mode)
    message = str(info.value)
    assert f"revision {NEWER[0]}, which this Moorage does not know" in message
    assert f"its newest is {HEAD}" in message
    assert f"needs code at revision {NEWER[0]}" in message
    assert schema_state(engine).current == NEWER[0]  # never downgraded


def test_a_newer_schema_marked_compatible_is_accepted(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    upgrade(engine, script_location=newer_moorage(tmp_path, True, True))
    with caplog.at_level(logging.WARNING, "moorage"):
        check_schema(engine, "never")
    assert "newer than this moorage, and compatible" in caplog.text
    assert schema_state(engine).current == NEWER[1]


def test_one_incompatible_revision_in_between_is_enough_to_refuse(
    engine: Engine, tmp_path: Path
) -> None:
    # The second is expand-only, but the first is not: code at HEAD cannot run on it.
    upgrade(engine, script_location=newer_moorage(tmp_path, False, True))
    with pytest.raises(SchemaMismatch, match=f"needs code at revision {NEWER[0]} or later"):
        check_schema(engine, "auto")


def test_the_newer_code_itself_runs_on_its_schema(engine: Engine, tmp_path: Path) -> None:
    newer = newer_moorage(tmp_path, False)
    check_schema(engine, "create", newer)
    check_schema(engine, "never", newer)
    assert f"t_{NEWER[0]}" in inspect(engine).get_table_names()


def test_a_downgrade_then_upgrade_keeps_the_record_right(engine: Engine, tmp_path: Path) -> None:
    newer = newer_moorage(tmp_path, True)
    upgrade(engine, script_location=newer)
    command.downgrade(alembic_config(engine, newer), HEAD)
    upgrade(engine, OLDER)  # a no-op: alembic never goes down on upgrade
    check_schema(engine, "never")


def _start_node(url: str) -> str | None:
    """One node's start-up, in a process of its own (Alembic's context is process-global)."""
    engine = make_engine(url)
    try:
        check_schema(engine, "create")
        return schema_state(engine).current
    finally:
        engine.dispose()


def test_nodes_starting_together_on_an_empty_database_create_it_once(
    postgres: PostgresServer,
) -> None:
    spawn = multiprocessing.get_context("spawn")
    with (
        postgres.fresh_database() as url,
        concurrent.futures.ProcessPoolExecutor(4, mp_context=spawn) as nodes,
    ):
        assert list(nodes.map(_start_node, [url] * 4)) == [HEAD] * 4
