"""``moorage audit``: who did what (docs/operations.md#audit-trail)."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from moorage.cli.metadata import _config_option, open_metadata
from moorage.config import parse_duration


def _since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    """A duration back from now (``24h``, ``7d``) or an ISO 8601 date or time (UTC unless it
    says otherwise)."""
    if value is None:
        return None
    try:
        return time.time() - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("give a duration (24h, 7d) or a date (2026-12-01)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@click.command("audit")
@click.option("--user", help="Only what this user did (a failed login: the name tried).")
@click.option("--repo", "repository", help="Only this repository.")
@click.option("--since", callback=_since, help="From this long ago (24h, 7d) or this date.")
@click.option("--limit", default=1000, show_default=True, help="The newest this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_config_option
def audit(
    user: str | None,
    repository: str | None,
    since: float | None,
    limit: int,
    as_json: bool,
    config_file: Path | None,
) -> None:
    """The audit trail, oldest first: pushes, deletes, tokens, failed logins, refusals."""
    from moorage.metadata.audit_sql import SqlAuditLog

    with open_metadata(config_file) as (_, metadata):
        entries = SqlAuditLog(metadata).query(user, repository, since, limit)
    for entry in entries:
        if as_json:
            click.echo(json.dumps(dataclasses.asdict(entry), separators=(",", ":")))
            continue
        when = datetime.fromtimestamp(entry.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        fields = [
            when,
            entry.action,
            entry.outcome,
            f"user={entry.user or '-'}",
            f"client={entry.client or '-'}",
        ]
        if entry.repository:
            fields.append(f"repository={entry.repository}")
        if entry.reference:
            fields.append(f"reference={entry.reference}")
        if entry.status is not None:
            fields.append(f"status={entry.status}")
        if entry.count > 1:
            fields.append(f"count={entry.count}")
        if entry.request_id:
            fields.append(f"request_id={entry.request_id}")
        click.echo(" ".join(fields))
