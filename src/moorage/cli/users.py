"""``moorage user add | passwd | remove | list``: edit the htpasswd file the registry reads.

The registry notices the changed file on its next request; no restart is needed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from moorage.auth import htpasswd
from moorage.auth.usernames import validate_username
from moorage.cli.metadata import load_cli_settings
from moorage.config import CONFIG_FILE_VARIABLE

_F = TypeVar("_F", bound=Callable[..., Any])


def _file_options(command: _F) -> _F:
    """``--htpasswd`` and ``--config``, shared by every subcommand."""
    command = click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path, dir_okay=False),
        help=f"YAML config whose auth.htpasswd names the file (default: ${CONFIG_FILE_VARIABLE}).",
    )(command)
    return click.option(
        "--htpasswd",
        "htpasswd_file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="The htpasswd file (default: auth.htpasswd from the configuration).",
    )(command)


def _htpasswd_path(htpasswd_file: Path | None, config_file: Path | None) -> Path:
    if htpasswd_file is not None:
        return htpasswd_file
    settings = load_cli_settings(config_file)
    if settings.auth.htpasswd is None:
        raise click.ClickException(
            "no htpasswd file: pass --htpasswd FILE, or set auth.htpasswd in the configuration "
            f"(--config FILE or ${CONFIG_FILE_VARIABLE}, or MOORAGE_AUTH__HTPASSWD)"
        )
    return settings.auth.htpasswd


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
    else:
        password = str(
            click.prompt(
                "Password", hide_input=True, confirmation_prompt="Repeat password", err=True
            )
        )
    try:
        htpasswd.validate_new_password(password)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    return password


def _run(action: Callable[[], None]) -> None:
    """Turn the library's refusals into one-line errors instead of tracebacks."""
    try:
        action()
    except htpasswd.UserExistsError as error:
        raise click.ClickException(f"{error}; use `moorage user passwd` to change it") from None
    except (ValueError, htpasswd.HtpasswdFileError) as error:
        raise click.ClickException(str(error)) from None


def _check_username(user: str) -> None:
    try:
        validate_username(user)
    except ValueError as error:
        raise click.ClickException(str(error)) from None


def _users(path: Path) -> list[str]:
    users: list[str] = []
    _run(lambda: users.extend(htpasswd.list_users(path)))
    return users


_password_stdin = click.option(
    "--password-stdin", is_flag=True, help="Read the password from one line of standard input."
)


@click.group("user")
def user() -> None:
    """Manage the users of the htpasswd file (new passwords are bcrypt)."""


@user.command("add")
@click.argument("username")
@_password_stdin
@_file_options
def add(
    username: str, password_stdin: bool, htpasswd_file: Path | None, config_file: Path | None
) -> None:
    """Add USERNAME; creates the file (mode 0600) if it does not exist."""
    path = _htpasswd_path(htpasswd_file, config_file)
    _check_username(username)
    # Refuse before asking for a password that would be thrown away.
    if path.exists() and username in _users(path):
        raise click.ClickException(
            f"user {username!r} already exists in {path}; use `moorage user passwd` to change it"
        )
    password = _read_password(password_stdin)
    _run(lambda: htpasswd.add_user(path, username, password))
    click.echo(f"added user {username} to {path}", err=True)


@user.command("passwd")
@click.argument("username")
@_password_stdin
@_file_options
def passwd(
    username: str, password_stdin: bool, htpasswd_file: Path | None, config_file: Path | None
) -> None:
    """Set a new password for USERNAME."""
    path = _htpasswd_path(htpasswd_file, config_file)
    _check_username(username)
    if username not in _users(path):
        raise click.ClickException(f"user {username!r} is not in {path}")
    password = _read_password(password_stdin)
    _run(lambda: htpasswd.set_password(path, username, password))
    click.echo(f"changed the password of {username} in {path}", err=True)


@user.command("remove")
@click.argument("username")
@_file_options
def remove(username: str, htpasswd_file: Path | None, config_file: Path | None) -> None:
    """Remove USERNAME."""
    path = _htpasswd_path(htpasswd_file, config_file)
    _run(lambda: htpasswd.remove_user(path, username))
    click.echo(f"removed user {username} from {path}", err=True)


@user.command("list")
@_file_options
def list_(htpasswd_file: Path | None, config_file: Path | None) -> None:
    """Print each user, one per line."""
    path = _htpasswd_path(htpasswd_file, config_file)
    for name in _users(path):
        click.echo(name)
