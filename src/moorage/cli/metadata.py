"""The configured metadata database for the CLI commands that read or change it, and the audit
entries those commands leave."""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy import Engine, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from moorage.audit.entry import OK, AuditEntry
from moorage.config import CONFIG_FILE_VARIABLE, ConfigError, Settings, load_settings
from moorage.metadata.sql import SqlMetadataStore

_F = TypeVar("_F", bound=Callable[..., Any])


def _config_option(command: _F) -> _F:
    return click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path, dir_okay=False),
        help=f"YAML config naming the database (default: ${CONFIG_FILE_VARIABLE}).",
    )(command)


def _database_error(url: str, error: SQLAlchemyError) -> str:
    # The URL without its password, and the driver's own words without our statement.
    try:
        where = make_url(url).render_as_string(hide_password=True)
    except SQLAlchemyError:
        where = "(unparsable URL)"
    reason = error.orig if isinstance(error, DBAPIError) else error
    return f"database {where}: {reason}"


def load_cli_settings(config_file: Path | None, data_dir: Path | None = None) -> Settings:
    """The settings a command runs with (``--data-dir`` over the file); a bad configuration is
    a one-line error naming the keys, not a traceback."""
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["storage"] = {"data_dir": data_dir.resolve()}
    try:
        return load_settings(config_file, **overrides)
    except ConfigError as error:
        raise click.ClickException(f"invalid configuration:\n{error}") from None


@contextmanager
def open_metadata(
    config_file: Path | None, data_dir: Path | None = None
) -> Iterator[tuple[Settings, SqlMetadataStore]]:
    """The settings and the metadata store on their database, on a schema this code runs on
    (upgraded as ``database.migrate`` allows). Changes made through it write their events as a
    running server's would."""
    from moorage.app import open_database
    from moorage.metadata.migrate import SchemaMismatch
    from moorage.metadata.outbox import OutboxWriter

    settings = load_cli_settings(config_file, data_dir)
    events = settings.events
    outbox = OutboxWriter(events.source) if events.recording else None
    engine: Engine | None = None
    try:
        engine = open_database(settings)
        yield settings, SqlMetadataStore(engine, outbox=outbox)
    except SchemaMismatch as error:
        raise click.ClickException(str(error)) from None
    except SQLAlchemyError as error:
        raise click.ClickException(_database_error(settings.database_url, error)) from None
    finally:
        if engine is not None:
            engine.dispose()


def operator() -> str:
    """Who runs this command, as the audit trail names them: ``cli:<login name>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name for this uid (a container)
        return "cli"


def audit_cli(
    store: SqlMetadataStore,
    settings: Settings,
    action: str,
    repository: str | None = None,
    reference: str | None = None,
) -> None:
    """Record a change made from the command line (no request, so no client or request id)."""
    if not settings.audit.enabled:
        return
    from moorage.metadata.audit_sql import SqlAuditLog

    entry = AuditEntry(
        at=time.time(),
        action=action,
        outcome=OK,
        user=operator(),
        repository=repository,
        reference=reference,
    )
    SqlAuditLog(store).write([entry])
