"""``moorage events list | redeliver``: the webhook outbox, its failures, and retrying them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from moorage.cli.metadata import _config_option, open_metadata
from moorage.events.port import EventRecord


def _when(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.group("events")
def events() -> None:
    """Events sent to webhook endpoints (docs/operations.md#events-and-webhooks)."""


def _as_json(event: EventRecord) -> dict[str, object]:
    return {
        "id": event.id,
        "type": event.type,
        "repository": event.repository,
        "time": event.created_at,
        "deliveries": [
            {
                "endpoint": d.endpoint,
                "state": d.state,
                "attempts": d.attempts,
                "last_error": d.last_error,
                "updated_at": d.updated_at,
            }
            for d in event.deliveries
        ],
    }


@events.command("list")
@click.option("--failed", is_flag=True, help="Only events whose delivery gave up.")
@click.option("--limit", default=100, show_default=True, help="The newest this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@_config_option
def list_events(failed: bool, limit: int, as_json: bool, config_file: Path | None) -> None:
    """The newest events, each with its deliveries' state per endpoint."""
    from moorage.metadata.outbox import SqlEventStore

    with open_metadata(config_file) as (_, metadata):
        listed = SqlEventStore(metadata).list(failed, limit)
    if as_json:
        click.echo(json.dumps([_as_json(e) for e in listed], indent=2))
        return
    for event in listed:
        click.echo(f"{event.id}  {_when(event.created_at)}  {event.type}  {event.repository}")
        for d in event.deliveries:
            error = f"  {d.last_error}" if d.last_error else ""
            click.echo(f"    {d.endpoint}  {d.state}  attempts={d.attempts}{error}")


@events.command("redeliver")
@click.argument("event_id", required=False)
@click.option("--failed", is_flag=True, help="Every delivery that gave up.")
@_config_option
def redeliver(event_id: str | None, failed: bool, config_file: Path | None) -> None:
    """Send event EVENT_ID again to its endpoints (or, with --failed, every delivery that gave
    up), from a first attempt. The running server's worker sends them within a second."""
    from moorage.metadata.outbox import SqlEventStore

    if (event_id is None) == (not failed):
        raise click.UsageError("give an event id or --failed (not both)")
    with open_metadata(config_file) as (_, metadata):
        count = SqlEventStore(metadata).redeliver(event_id)
    if event_id is not None and count == 0:
        raise click.ClickException(f"no deliveries of event {event_id}")
    click.echo(f"{count} deliveries queued again")
