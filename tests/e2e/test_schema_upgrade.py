"""`moorage serve` refuses a schema it does not know, and `moorage db upgrade` is the way on
(docs/deploy/upgrade.md)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from moorage.metadata.migrate import upgrade
from moorage.metadata.sql import make_engine
from tests.e2e.support import RegistryServer, free_port, moorage_executable
from tests.support_migrations import HEAD, NEWER, OLDER, newer_moorage
from tests.support_pg import PostgresServer

pytestmark = pytest.mark.e2e


def moorage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [moorage_executable(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def serve(data_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`moorage serve` expected to stop at start-up (a timeout here means it served)."""
    port = str(free_port())
    return moorage("serve", "--port", port, "--data-dir", str(data_dir), env=env)


def test_serve_refuses_a_newer_schema(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    engine = make_engine(f"sqlite:///{data / 'moorage.db'}")
    upgrade(engine, script_location=newer_moorage(tmp_path, False))
    engine.dispose()
    result = serve(data, {})
    assert result.returncode != 0
    assert (
        f"database: the database schema is at revision {NEWER[0]}, which this Moorage does not "
        f"know (its newest is {HEAD})" in result.stderr
    )
    assert "Traceback" not in result.stderr
    # db upgrade does not touch it either.
    upgraded = moorage("db", "upgrade", env={"MOORAGE_STORAGE__DATA_DIR": str(data)})
    assert upgraded.returncode != 0
    assert f"at revision {NEWER[0]}" in upgraded.stderr


def test_serve_on_postgres_refuses_an_older_schema_until_db_upgrade(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    with postgres.fresh_database() as url:
        engine = make_engine(url)
        upgrade(engine, OLDER)
        engine.dispose()
        env = {"MOORAGE_DATABASE__URL": url}
        refused = serve(tmp_path / "data", env)
        assert refused.returncode != 0
        assert (
            f"the database schema is at revision {OLDER} and this Moorage needs {HEAD}: run "
            "`moorage db upgrade`" in refused.stderr
        )
        assert "Traceback" not in refused.stderr

        upgraded = moorage("db", "upgrade", env=env)
        assert upgraded.returncode == 0, upgraded.stderr
        assert f"upgraded from revision {OLDER} to {HEAD}" in upgraded.stdout

        with RegistryServer("moorage", tmp_path / "node", env=env) as node:
            assert node.client().get("/v2/").status_code == 200
