"""``moorage user``: what an operator types, and what the registry and Apache then accept."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from moorage.auth.htpasswd import HtpasswdAuthenticator
from moorage.auth.identity import Identity, Via
from moorage.cli.users import user
from tests.unit.auth.test_htpasswd import make_entry, tool_verifies


@pytest.fixture(autouse=True)
def no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOORAGE_CONFIG", raising=False)
    monkeypatch.delenv("MOORAGE_AUTH__HTPASSWD", raising=False)


def run(*args: str | Path, input: str | None = None) -> Result:
    return CliRunner().invoke(user, [str(a) for a in args], input=input)


def test_add_passwd_remove_list_round_trip(tmp_path: Path) -> None:
    file = tmp_path / "htpasswd"
    assert (
        run("add", "alice", "--password-stdin", "--htpasswd", file, input="pw-a\n").exit_code == 0
    )
    assert run("add", "bob", "--password-stdin", "--htpasswd", file, input="pw-b\n").exit_code == 0
    assert file.stat().st_mode & 0o777 == 0o600
    listed = run("list", "--htpasswd", file)
    assert listed.exit_code == 0
    assert listed.stdout.splitlines() == ["alice", "bob"]
    assert tool_verifies(file, "alice", "pw-a")
    assert tool_verifies(file, "bob", "pw-b")

    result = run("passwd", "alice", "--password-stdin", "--htpasswd", file, input="pw-a2\r\n")
    assert result.exit_code == 0, result.output
    assert tool_verifies(file, "alice", "pw-a2")
    assert not tool_verifies(file, "alice", "pw-a")

    assert run("remove", "bob", "--htpasswd", file).exit_code == 0
    assert run("list", "--htpasswd", file).stdout.splitlines() == ["alice"]
    assert not tool_verifies(file, "bob", "pw-b")


def test_a_running_registry_sees_cli_changes(tmp_path: Path) -> None:
    file = tmp_path / "htpasswd"
    run("add", "alice", "--password-stdin", "--htpasswd", file, input="one\n")
    auth = HtpasswdAuthenticator(file)
    assert auth.authenticate_password("alice", "one") == Identity("alice", Via.PASSWORD)
    run("passwd", "alice", "--password-stdin", "--htpasswd", file, input="two\n")
    assert auth.authenticate_password("alice", "one") is None
    assert auth.authenticate_password("alice", "two") == Identity("alice", Via.PASSWORD)


def test_the_prompt_asks_twice_and_hides_the_password(tmp_path: Path) -> None:
    file = tmp_path / "htpasswd"
    result = run("add", "alice", "--htpasswd", file, input="s3cret\ns3cret\n")
    assert result.exit_code == 0, result.output
    assert "Repeat password" in result.output
    assert "s3cret" not in result.output
    assert tool_verifies(file, "alice", "s3cret")


def test_a_mistyped_confirmation_writes_nothing(tmp_path: Path) -> None:
    file = tmp_path / "htpasswd"
    result = run("add", "alice", "--htpasswd", file, input="s3cret\ns3cert\n")
    assert result.exit_code != 0
    assert "do not match" in result.output
    assert not file.exists()


def test_add_refuses_an_existing_user_before_asking(tmp_path: Path) -> None:
    file = tmp_path / "htpasswd"
    make_entry(file, "alice", "pw", "-B")
    before = file.read_bytes()
    result = run("add", "alice", "--htpasswd", file)
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert "moorage user passwd" in result.output
    assert "Password" not in result.output
    assert file.read_bytes() == before


def test_passwd_and_remove_refuse_an_unknown_user(tmp_path: Path) -> None:
    file = tmp_path / "htpasswd"
    make_entry(file, "alice", "pw")
    before = file.read_bytes()
    for args in (["passwd", "bob", "--password-stdin"], ["remove", "bob"]):
        result = run(*args, "--htpasswd", file, input="pw\n")
        assert result.exit_code == 1
        assert "'bob' is not in" in result.output
        assert "Traceback" not in result.output
    assert file.read_bytes() == before


def test_passwd_on_a_missing_file_is_an_error(tmp_path: Path) -> None:
    result = run(
        "passwd", "alice", "--password-stdin", "--htpasswd", tmp_path / "nope", input="x\n"
    )
    assert result.exit_code == 1
    assert "does not exist" in result.output


@pytest.mark.parametrize(
    ("username", "stdin", "message"),
    [
        ("a:b", "pw\n", "must not contain ':'"),
        ("a b", "pw\n", "whitespace"),
        ("alice", "\n", "must not be empty"),
        ("alice", "", "must not be empty"),
        ("alice", "x" * 73 + "\n", "72 bytes"),
    ],
)
def test_bad_input_is_refused(tmp_path: Path, username: str, stdin: str, message: str) -> None:
    file = tmp_path / "htpasswd"
    result = run("add", username, "--password-stdin", "--htpasswd", file, input=stdin)
    assert result.exit_code == 1
    assert message in result.output
    assert not file.exists()


def test_the_file_comes_from_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "from-config"
    config = tmp_path / "moorage.yaml"
    config.write_text(f"auth:\n  htpasswd: {file}\n")
    assert run("add", "alice", "--password-stdin", "--config", config, input="pw\n").exit_code == 0
    assert tool_verifies(file, "alice", "pw")

    monkeypatch.setenv("MOORAGE_CONFIG", str(config))
    assert run("list").stdout.splitlines() == ["alice"]

    monkeypatch.delenv("MOORAGE_CONFIG")
    monkeypatch.setenv("MOORAGE_AUTH__HTPASSWD", str(file))
    assert run("list").stdout.splitlines() == ["alice"]

    # The flag wins over the configuration.
    other = tmp_path / "other"
    assert run("add", "bob", "--password-stdin", "--htpasswd", other, input="pw\n").exit_code == 0
    assert run("list", "--htpasswd", other).stdout.splitlines() == ["bob"]


def test_no_file_named_anywhere_is_a_clear_error(tmp_path: Path) -> None:
    result = run("add", "alice", "--password-stdin", input="pw\n")
    assert result.exit_code == 1
    assert "--htpasswd FILE" in result.output
    assert "auth.htpasswd" in result.output


def test_an_invalid_config_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "moorage.yaml"
    config.write_text("auth:\n  htpasswdd: x\n")
    result = run("list", "--config", config)
    assert result.exit_code == 1
    assert "auth.htpasswdd" in result.output
