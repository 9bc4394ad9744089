"""``moorage token``: create prints the secret once, list never does, revoke stops it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from moorage.auth.api_tokens import ApiTokenAuthenticator, ApiTokenStore, parse_expiry
from moorage.cli.tokens import token
from moorage.config import CONFIG_FILE_VARIABLE
from moorage.metadata.sql import make_engine


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(CONFIG_FILE_VARIABLE, raising=False)
    path = tmp_path / "moorage.yaml"
    path.write_text(f"storage:\n  data_dir: {tmp_path}\n")
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ApiTokenStore]:
    engine = make_engine(f"sqlite:///{tmp_path / 'moorage.db'}")
    yield ApiTokenStore(engine, cache_seconds=0)
    engine.dispose()


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(token, [*args, "--config", str(config)])


def create(config: Path, *extra: str) -> Result:
    return run(
        config, "create", "--user", "robot", "--scope", "repository:team/*:pull,push", *extra
    )


def test_create_prints_the_secret_once_and_it_works(config: Path, store: ApiTokenStore) -> None:
    result = create(config, "--expires", "30d", "--description", "release pipeline")
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert secret.startswith("moor_") and "\n" not in secret
    assert "cannot be shown again" in result.stderr
    identity = ApiTokenAuthenticator(store).authenticate_password("robot", secret)
    assert identity is not None and identity.name == "robot"
    [info] = store.list()
    assert info.description == "release pipeline"
    assert info.expires_at is not None
    expected = datetime.now(UTC) + timedelta(days=30)
    assert abs(info.expires_at - expected) < timedelta(minutes=1)


def test_list_shows_tokens_without_secrets(config: Path) -> None:
    secret = create(config, "--expires", "never").stdout.strip()
    run(config, "create", "--user", "other", "--scope", "registry:catalog:*")
    result = run(config, "list")
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    assert secret.split("_", 2)[2] not in result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["ID", "USER", "SCOPES", "EXPIRES", "STATUS", "DESCRIPTION"]
    assert "robot" in lines[1] and "repository:team/*:pull,push" in lines[1]
    assert "never" in lines[1] and "active" in lines[1]
    only = run(config, "list", "--user", "other").output.splitlines()
    assert len(only) == 2 and "other" in only[1]


def test_revoke(config: Path, store: ApiTokenStore) -> None:
    secret = create(config).stdout.strip()
    token_id = secret.split("_")[1]
    result = run(config, "revoke", token_id)
    assert result.exit_code == 0, result.output
    assert ApiTokenAuthenticator(store).authenticate_password("robot", secret) is None
    assert "revoked" in run(config, "list").output.splitlines()[1]
    again = run(config, "revoke", token_id)
    assert again.exit_code == 1 and "no active token" in again.output
    assert run(config, "revoke", "nope").exit_code == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scope", "repository:team/*:pull,admin"], "actions must be among"),
        (["--scope", "nonsense"], "is not type:name:actions"),
        (["--scope", "repository:x:pull", "--expires", "30"], "must be like 12h"),
        (["--scope", "repository:x:pull", "--expires", "0d"], "must be like 12h"),
        (["--scope", "repository:x:pull", "--expires", "forever"], "must be like 12h"),
    ],
)
def test_create_refuses_bad_input(
    config: Path, store: ApiTokenStore, args: list[str], message: str
) -> None:
    result = run(config, "create", "--user", "robot", *args)
    assert result.exit_code == 1
    assert message in result.output
    assert "moor_" not in result.output


def test_create_needs_a_user_and_a_scope(config: Path) -> None:
    assert run(config, "create", "--scope", "repository:x:pull").exit_code == 2
    assert run(config, "create", "--user", "robot").exit_code == 2


def test_a_bad_config_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("storag: {}\n")
    result = run(bad, "list")
    assert result.exit_code == 1
    assert "storag" in result.output


def test_an_unreachable_database_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CONFIG_FILE_VARIABLE, raising=False)
    path = tmp_path / "moorage.yaml"
    path.write_text(f"database:\n  url: sqlite:///{tmp_path}/missing/dir/moorage.db\n")
    result = run(path, "list")
    assert result.exit_code == 1
    assert "database sqlite:///" in result.output
    assert "Traceback" not in result.output


def test_parse_expiry() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_expiry("12h", now) == now + timedelta(hours=12)
    assert parse_expiry("30d", now) == now + timedelta(days=30)
    assert parse_expiry("2w", now) == now + timedelta(weeks=2)
    assert parse_expiry("never", now) is None
    for bad in ("", "1y", "-1d", "1.5d", "d", "12 h"):
        with pytest.raises(ValueError, match="must be like"):
            parse_expiry(bad, now)


def test_database_errors_never_show_the_password(tmp_path: Path) -> None:
    path = tmp_path / "moorage.yaml"
    path.write_text("database:\n  url: nosuchdb://robot:s3cr3t-pw@127.0.0.1:1/moorage\n")
    result = run(path, "list")
    assert result.exit_code == 1
    assert "database nosuchdb://robot:***@127.0.0.1:1/moorage" in result.output
    assert "s3cr3t-pw" not in result.output
