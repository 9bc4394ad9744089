"""Moorage behind PgBouncer in transaction pooling mode (docs/configuration.md#pgbouncer):
with ``database.pgbouncer: true`` the conformance suite passes through it, two workers
sharing four server connections, so that consecutive transactions of one worker run on
different server connections."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from moorage.metadata.sql import make_engine
from tests.e2e.support import REPO_ROOT, RegistryServer
from tests.support_pg import PostgresServer
from tests.support_pgbouncer import PgBouncer, pgbouncer

pytestmark = pytest.mark.e2e


@pytest.fixture
def bouncer(postgres: PostgresServer) -> Iterator[PgBouncer]:
    with pgbouncer(postgres) as running:
        yield running


def test_the_conformance_suite_passes_through_pgbouncer(
    postgres: PostgresServer, bouncer: PgBouncer, tmp_path: Path
) -> None:
    with postgres.fresh_database() as direct_url:
        database = direct_url.rsplit("/", 1)[1]
        env = {
            "MOORAGE_DATABASE__URL": bouncer.url(database),
            "MOORAGE_DATABASE__PGBOUNCER": "true",
            "MOORAGE_GC__INTERVAL": "2s",  # the collector's leases and row locks go through too
        }
        with RegistryServer(
            "moorage", tmp_path / "node", extra_args=["--workers", "2"], env=env
        ) as node:
            suite = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "tests/conformance",
                ],
                cwd=REPO_ROOT,
                env={**os.environ, "CONFORMANCE_URL": node.url},
                capture_output=True,
                text=True,
                timeout=600,
            )
            log = node.log_tail(60)
        assert suite.returncode == 0, f"{suite.stdout[-6000:]}\n{suite.stderr[-2000:]}\n{log}"
        assert " passed" in suite.stdout
        assert "Traceback" not in (tmp_path / "node" / "registry.log").read_text()


@pytest.mark.parametrize("behind_pgbouncer", [True, False])
def test_prepared_statements_are_what_transaction_pooling_breaks(
    postgres: PostgresServer, behind_pgbouncer: bool
) -> None:
    """Why the setting exists: psycopg prepares a statement on the server after 5 runs, and
    with one server connection shared by two clients the second prepares a name the server
    connection already holds. Without ``pgbouncer`` that fails; with it, it never happens."""
    with pgbouncer(postgres, server_connections=1) as bouncer:
        engine = make_engine(bouncer.url("postgres"), pgbouncer=behind_pgbouncer)
        try:
            first, second = engine.connect(), engine.connect()

            def run_often(connection: Connection) -> None:
                for _ in range(8):
                    connection.execute(text("SELECT 1 + :n"), {"n": 1})
                    connection.commit()

            run_often(first)
            if behind_pgbouncer:
                run_often(second)
            else:
                with pytest.raises(DBAPIError, match="prepared statement"):
                    run_often(second)
            first.close()
            second.close()
        finally:
            engine.dispose()
