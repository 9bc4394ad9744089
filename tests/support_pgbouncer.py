"""Debian's PgBouncer in transaction pooling mode in front of the throwaway PostgreSQL
(tests/support_pg.py), on a free loopback port. Few server connections, so that consecutive
transactions of one client land on different server connections, as they do in production."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support_pg import USER, PostgresServer, _as_server_user
from tests.support_s3 import free_port

INSTALL_HINT = "the PgBouncer test needs it: apt-get install pgbouncer (./scripts/test does)"


@dataclass(frozen=True)
class PgBouncer:
    host: str
    port: int
    log: Path

    def url(self, database: str) -> str:
        """The URL of ``database`` (a database of the PostgreSQL server) through PgBouncer."""
        return f"postgresql+psycopg://{USER}@{self.host}:{self.port}/{database}"


@contextlib.contextmanager
def pgbouncer(postgres: PostgresServer, server_connections: int = 4) -> Iterator[PgBouncer]:
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if binary is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="moorage-pgbouncer-") as tmp:
        root = Path(tmp)
        (root / "userlist.txt").write_text(f'"{USER}" ""\n')
        log = root / "pgbouncer.log"
        (root / "pgbouncer.ini").write_text(
            f"""[databases]
* = host={postgres.host} port={postgres.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {root / "userlist.txt"}
pool_mode = transaction
default_pool_size = {server_connections}
max_client_conn = 500
logfile = {log}
pidfile = {root / "pgbouncer.pid"}
"""
        )
        if os.geteuid() == 0:
            for path in (root, *root.iterdir()):
                shutil.chown(path, "postgres")
        # PgBouncer refuses to run as root; as the postgres account then, like the server.
        process = subprocess.Popen(
            _as_server_user([binary, str(root / "pgbouncer.ini")]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_for_port(port, process, log)
            yield PgBouncer("127.0.0.1", port, log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            logged = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"pgbouncer exited ({process.returncode}): {stderr}\n{logged}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"pgbouncer did not listen on {port} within 15 s")
