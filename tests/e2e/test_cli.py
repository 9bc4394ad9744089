"""The moorage command line as an operator uses it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.support import RegistryServer, moorage_executable, registry_kind

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [moorage_executable(), *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_config_check_accepts_the_documented_example() -> None:
    result = run("config", "check", str(ROOT / "docs" / "examples" / "moorage.yaml"))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_config_check_names_every_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen:\n  port: seventy\nlimits:\n  page_size_max: 0\n  typo: 1\n")
    result = run("config", "check", str(bad))
    assert result.returncode != 0
    for key in ("listen.port", "limits.page_size_max", "limits.typo"):
        assert key in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run("config", "check", str(tmp_path / "nope.yaml"))
    assert result.returncode != 0
    assert "cannot read config file" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"storage:\n  data_dir: {tmp_path / 'data'}\n")
    (tmp_path / "data").mkdir()
    result = run("db", "upgrade", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "moorage.db").exists()


def test_second_server_on_a_taken_port_is_refused(tmp_path: Path) -> None:
    if registry_kind() != "moorage":
        pytest.fail("this test is about moorage serve; unset E2E_REGISTRY_CMD")
    first = RegistryServer("moorage", tmp_path / "first")
    first.start()
    try:
        result = run("serve", "--port", str(first.port), "--data-dir", str(tmp_path / "second"))
        assert result.returncode != 0
        assert "cannot listen on" in result.stderr
        assert "Address already in use" in result.stderr
    finally:
        first.stop()


def test_open_network_without_auth_is_refused(tmp_path: Path) -> None:
    result = run("serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path / "d"))
    assert result.returncode != 0
    assert "refusing to serve 0.0.0.0 with no authentication" in result.stderr
    assert "--htpasswd" in result.stderr
    assert not (tmp_path / "d").exists()


def test_loopback_without_auth_says_so_at_start(tmp_path: Path) -> None:
    server = RegistryServer("moorage", tmp_path / "reg")
    server.start()
    try:
        assert "no authentication configured; serving loopback only" in server.log_path.read_text()
    finally:
        server.stop()


def test_open_network_needs_the_explicit_flag(tmp_path: Path) -> None:
    # The last --host wins: the server binds every interface, the probe uses loopback.
    flags = ["--host", "0.0.0.0", "--allow-anonymous-network"]
    server = RegistryServer("moorage", tmp_path / "reg", extra_args=flags)
    server.start()
    try:
        assert "WARNING: serving 0.0.0.0 with no authentication" in server.log_path.read_text()
    finally:
        server.stop()


def test_config_check_validates_the_policy_and_htpasswd_files(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - repositories: ['*']\n    users: [a]\n    actions: [pull, fly]\n")
    config = tmp_path / "moorage.yaml"
    config.write_text(f"auth:\n  htpasswd: {tmp_path / 'missing'}\n  policy_file: {policy}\n")
    result = run("config", "check", str(config))
    assert result.returncode != 0
    assert "rules.0.actions.1" in result.stderr
    assert "htpasswd" in result.stderr and "missing" in result.stderr


def test_serve_with_a_missing_htpasswd_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run("serve", "--port", "0", "--htpasswd", str(tmp_path / "nope"))
    assert result.returncode != 0
    assert "auth.htpasswd" in result.stderr and "nope" in result.stderr
    assert "Traceback" not in result.stderr
