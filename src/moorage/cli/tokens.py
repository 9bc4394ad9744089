"""``moorage token create | list | revoke``: API tokens for CI and robots.

The tokens live in the metadata database named by the configuration, so a running registry sees
a new token at once and a revocation within its cache time (see docs/auth-policy.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from moorage.audit.entry import TOKEN_CREATE, TOKEN_REVOKE
from moorage.auth.access import ScopeError, parse_scopes
from moorage.auth.api_tokens import ApiTokenError, ApiTokenInfo, ApiTokenStore, parse_expiry
from moorage.cli.metadata import _config_option, audit_cli, open_metadata
from moorage.config import Settings
from moorage.metadata.sql import SqlMetadataStore

_F = TypeVar("_F", bound=Callable[..., Any])

DEFAULT_EXPIRY = "90d"


@contextmanager
def _store(config_file: Path | None) -> Iterator[tuple[Settings, SqlMetadataStore, ApiTokenStore]]:
    """The token store on the configured database, migrated to the current schema."""
    with open_metadata(config_file) as (settings, metadata):
        yield settings, metadata, ApiTokenStore(metadata.engine, cache_seconds=0)


def _when(moment: datetime | None, never: str) -> str:
    return never if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


@click.group("token")
def token() -> None:
    """API tokens for CI and robots (used as the password of their user)."""


@token.command("create")
@click.option("--user", required=True, help="The user the token logs in as.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="What the token is limited to, e.g. 'repository:team/*:pull,push' (repeatable).",
)
@click.option(
    "--expires",
    default=DEFAULT_EXPIRY,
    show_default=True,
    help="Lifetime: 12h, 30d, 8w, or never.",
)
@click.option("--description", default="", help="What the token is for.")
@_config_option
def create(
    user: str,
    scopes: Sequence[str],
    expires: str,
    description: str,
    config_file: Path | None,
) -> None:
    """Create a token and print its secret, once."""
    try:
        expires_at = parse_expiry(expires, datetime.now(UTC))
        accesses = parse_scopes(scopes)
    except (ValueError, ScopeError) as error:
        raise click.ClickException(str(error)) from None
    with _store(config_file) as (settings, metadata, store):
        try:
            info, secret = store.create(user, accesses, expires_at, description)
        except ApiTokenError as error:
            raise click.ClickException(str(error)) from None
        audit_cli(metadata, settings, TOKEN_CREATE, reference=info.id)
    # Only the secret goes to standard output, so `SECRET=$(moorage token create ...)` works.
    click.echo(
        f"created token {info.id} for {info.user}, expires {_when(info.expires_at, 'never')}",
        err=True,
    )
    click.echo(secret)
    click.echo("Store this secret now: it is not kept and cannot be shown again.", err=True)


def _status(info: ApiTokenInfo, now: datetime) -> str:
    if info.revoked_at is not None:
        return f"revoked {_when(info.revoked_at, '')}"
    return "active" if info.is_live(now) else "expired"


@token.command("list")
@click.option("--user", help="Only this user's tokens.")
@_config_option
def list_tokens(user: str | None, config_file: Path | None) -> None:
    """List tokens (never their secrets)."""
    with _store(config_file) as (_, _metadata, store):
        tokens = store.list(user)
    now = datetime.now(UTC)
    rows = [("ID", "USER", "SCOPES", "EXPIRES", "STATUS", "DESCRIPTION")]
    rows += [
        (
            info.id,
            info.user,
            " ".join(scope.scope() for scope in info.scopes),
            _when(info.expires_at, "never"),
            _status(info, now),
            info.description,
        )
        for info in tokens
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())


@token.command("revoke")
@click.argument("token_id")
@_config_option
def revoke(token_id: str, config_file: Path | None) -> None:
    """Revoke the token TOKEN_ID; it stops working at once (within 30 s on a running server)."""
    with _store(config_file) as (settings, metadata, store):
        revoked = store.revoke(token_id)
        if revoked:
            audit_cli(metadata, settings, TOKEN_REVOKE, reference=token_id)
    if not revoked:
        raise click.ClickException(f"no active token {token_id!r}")
    click.echo(f"revoked token {token_id}")
